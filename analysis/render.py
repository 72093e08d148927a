"""The study report: one self-contained HTML page plus ``summary.json``.

It is assembled only from artifacts on disk (JSON, PNG), so it imports none of the
stages and can be rebuilt at any time. Images are inlined as data URIs and there are
no external scripts or styles: the page works offline and can be mailed around.
"""

from __future__ import annotations

import base64
import html
import json
import time
from pathlib import Path
from typing import Any

from rlhf.errors import UserError
from rlhf.rundir import RunDir, atomic_write_json, atomic_write_text, read_json

LOSS_BAR = 1.10  # held-out loss at most 10% above the entropy floor

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{margin-bottom:.2em} h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.6em 0} td,th{border:1px solid #ddd;padding:.25em .6em;text-align:left;font-size:.92em}
th{background:#f5f5f5} .num{text-align:right;font-variant-numeric:tabular-nums}
.pass{color:#0a7d24;font-weight:600} .fail{color:#b00020;font-weight:600} .muted{color:#777}
img{max-width:100%;border:1px solid #eee} code,pre{background:#f7f7f7;font-size:.85em}
pre{padding:.6em;overflow-x:auto} nav a{margin-right:1em}
"""


def _esc(x: Any) -> str:
    return html.escape(str(x))


def _fmt(x: Any) -> str:
    if isinstance(x, float):
        return f"{x:.4g}"
    return _esc(x)


def _table(rows: list[tuple[Any, ...]], header: tuple[str, ...] | None = None) -> str:
    head = "<tr>" + "".join(f"<th>{_esc(h)}</th>" for h in header) + "</tr>" if header else ""
    body = "".join(
        "<tr>" + "".join(
            f"<td class='num'>{_fmt(c)}</td>" if isinstance(c, (int, float)) and not isinstance(c, bool)
            else f"<td>{c if isinstance(c, _Html) else _esc(c)}</td>" for c in row
        ) + "</tr>"
        for row in rows
    )
    return f"<table>{head}{body}</table>"


class _Html(str):
    """Markup that the table must not escape."""


def _verdict(ok: bool) -> _Html:
    return _Html("<span class='pass'>PASS</span>" if ok else "<span class='fail'>FAIL</span>")


def _img(path: Path, alt: str) -> str:
    if not path.exists():
        return ""
    data = base64.b64encode(path.read_bytes()).decode()
    return f"<img alt='{_esc(alt)}' src='data:image/png;base64,{data}'>"


def _load(path: Path) -> Any | None:
    return read_json(path) if path.exists() else None


def _corpus_section(run_dir: RunDir) -> tuple[str, dict]:
    stats = _load(run_dir.corpus / "stats.json")
    if stats is None:
        return "", {}
    rows = [(name, s["reviews"], s["tokens"], s["positive_share"], s["entropy_floor"])
            for name, s in stats.items() if isinstance(s, dict)]
    samples = (run_dir.corpus / "test.txt").read_text(encoding="utf-8").splitlines()[:6]
    body = (
        f"<p>Vocabulary: {stats['vocabulary_size']} words. The entropy floor is the exact "
        "entropy of the generator per predicted token: no model can have a lower loss.</p>"
        + _table(rows, ("split", "reviews", "tokens", "positive share", "entropy floor (nats/token)"))
        + "<p>Sample reviews (test split):</p><pre>" + _esc("\n".join(samples)) + "</pre>"
    )
    return body, {"vocabulary_size": stats["vocabulary_size"], "entropy_floor": stats["test"]["entropy_floor"]}


def _pretrain_section(run_dir: RunDir) -> tuple[str, dict]:
    p = _load(run_dir.training / "pretrain.json")
    if p is None:
        return "", {}
    ok = p["loss_over_floor"] <= LOSS_BAR
    rows = [
        ("parameters", p["parameters"]), ("steps", p["steps"]),
        ("stopped at plateau", "yes" if p["stopped_early"] else "no (step limit)"),
        ("held-out loss (nats/token)", p["test_loss"]), ("entropy floor", p["entropy_floor"]),
        ("loss / floor", p["loss_over_floor"]), (f"within {LOSS_BAR - 1:.0%} of the floor", _verdict(ok)),
        ("resumed from a checkpoint", "yes" if p["resumed"] else "no"), ("seconds", p["seconds"]),
    ]
    body = _table(rows) + _img(run_dir.training / "pretrain.png", "pretraining loss curve")
    return body, {"base_test_loss": p["test_loss"], "loss_over_floor": p["loss_over_floor"], "loss_within_10pct": ok}


def _conversion_section(run_dir: RunDir) -> tuple[str, dict]:
    c = _load(run_dir.analysis / "conversion.json")
    if c is None:
        return "", {}
    rows = [(name, m["architecture"], m["n_layers"], m["d_model"], m["d_vocab"], m["max_abs_logit_diff"],
             _verdict(m["max_abs_logit_diff"] <= c["atol"])) for name, m in c["models"].items()]
    body = (f"<p>Each model is converted to a TransformerLens HookedTransformer; its logits must match "
            f"the Hugging Face model's within {c['atol']:.0e}.</p>"
            + _table(rows, ("model", "architecture", "layers", "d_model", "vocab", "max |logit diff|", "check")))
    return body, {"max_abs_logit_diff": max(m["max_abs_logit_diff"] for m in c["models"].values())}


def _valence_section(run_dir: RunDir) -> tuple[str, dict]:
    parts, summary = [], {}
    for path in sorted(run_dir.probes.glob("valence_*.json")):
        v = read_json(path)
        s, bars = v["summary"], v["bars"]
        model = v["model"]
        rows = [
            ("held-out words at the word", s["best_word_hook"], s["word_tau"], bars["word_tau"]),
            ("embedding only", "blocks.0.hook_resid_pre", s["embedding_tau"], "below the above"),
            ("held-out words at the last token", s["best_last_token_hook"], s["last_token_tau"], bars["last_token_tau"]),
            ("random-init model (null)", "best layer", s["random_init_word_tau"], "near 0"),
        ]
        per_layer = [(h, v["trained"]["word"][h]["kendall_tau"], v["trained"]["last_token"][h]["kendall_tau"],
                      v["random_init"]["word"][h]["kendall_tau"]) for h in v["trained"]["word"]]
        parts.append(
            f"<h3>{_esc(model)} model</h3><p>Ridge probe for VADER valence, fitted on "
            f"{v['trained']['n_train_words']} words and scored (Kendall tau) on "
            f"{v['trained']['n_held_out_words']} held-out words. Verdict: {_verdict(s['passes'])}</p>"
            + _table(rows, ("probe", "hook", "Kendall tau", "bar"))
            + _img(run_dir.probes / f"valence_{model}.png", "valence probe by layer")
            + "<details><summary>per layer</summary>"
            + _table(per_layer, ("hook", "tau at word", "tau at last token", "random init at word")) + "</details>"
        )
        summary.update({f"valence_{model}_{k}": s[k] for k in ("word_tau", "embedding_tau", "last_token_tau", "passes")})
    return "".join(parts), summary


def _stages_section(run_dir: RunDir) -> str:
    rows = []
    for path in sorted(run_dir.manifests.glob("*.json"), key=lambda p: p.stat().st_mtime):
        m = read_json(path)
        rows.append((m["stage"], m["seconds"], m["finished"], m["fingerprint"]))
    if not rows:
        return ""
    versions = read_json(sorted(run_dir.manifests.glob("*.json"))[0]).get("versions", {})
    return (_table(rows, ("stage", "seconds", "finished", "config fingerprint"))
            + "<p class='muted'>" + _esc(", ".join(f"{k} {v}" for k, v in versions.items())) + "</p>")


SECTIONS = (
    ("corpus", "Corpus: the sentiment model organism", _corpus_section),
    ("pretrain", "Base model pretraining", _pretrain_section),
    ("conversion", "Conversion to HookedTransformer", _conversion_section),
    ("valence", "Does the base model know sentiment?", _valence_section),
)


def build_report(run_dir: RunDir) -> Path:
    """Write ``report/index.html`` and ``report/summary.json`` from whatever artifacts exist."""
    if not run_dir.root.is_dir():
        raise UserError(f"run directory {run_dir.root} does not exist")
    config = _load(run_dir.root / "config.json") or {}
    summary: dict[str, Any] = {"study": config.get("name", run_dir.root.name), "built": time.strftime("%Y-%m-%d %H:%M:%S")}
    sections = []
    for anchor, title, render in SECTIONS:
        body, numbers = render(run_dir)
        if body:
            sections.append((anchor, title, body))
            summary.update(numbers)
    stages = _stages_section(run_dir)
    if stages:
        sections.append(("stages", "Stages", stages))
    headline = [(k, v) for k, v in summary.items() if k not in ("study", "built")]
    page = (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{_esc(summary['study'])}: RLHF interpretability report</title><style>{CSS}</style></head><body>"
        f"<h1>{_esc(summary['study'])}</h1><p class='muted'>Report built {summary['built']} from {_esc(run_dir.root)}</p>"
        "<nav>" + "".join(f"<a href='#{a}'>{_esc(t)}</a>" for a, t, _ in sections) + "</nav>"
        "<h2 id='summary'>Summary</h2>" + _table(headline, ("measure", "value"))
        + "".join(f"<h2 id='{a}'>{_esc(t)}</h2>{b}" for a, t, b in sections)
        + "<h2>Configuration</h2><details><summary>config.json</summary><pre>"
        + _esc(json.dumps(config, indent=2)) + "</pre></details></body></html>"
    )
    out = atomic_write_text(run_dir.report / "index.html", page)
    atomic_write_json(run_dir.report / "summary.json", summary)
    return out
