"""Assemble ``report/index.html`` and ``report/summary.json`` from the sections."""

from __future__ import annotations

import importlib
import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from markupsafe import Markup

from rlhf.errors import UserError
from rlhf.registry import load
from rlhf.rundir import RunDir, atomic_write_json, atomic_write_text, read_json
from study.report.checks import groups
from study.report.page import render
from study.report.section import Section
from study.stages import STAGES

# Section modules of study.report.sections, in page order.
ORDER = ("corpus", "pretrain", "policy", "dpo", "sft", "divergence", "dictionaries", "mmcs", "feature_diff",
         "model_diffing", "autointerp", "implicit_reward", "reward_attribution", "circuits", "hidden_context", "digits", "conversion", "valence", "stages")


def sections() -> list[Section]:
    """The built-in sections in page order, then those of stages registered beyond them (study.stages)."""
    built_in = [importlib.import_module(f"study.report.sections.{name}").SECTION for name in ORDER]
    return built_in + [load(stage.report) for stage in STAGES if stage.report]


def page(title: str, body: Markup) -> str:
    """A whole offline page; the circuitsvis bundle is inlined once, and only when a view needs it."""
    from study.report.cards import bundle_script

    scripts = bundle_script() if "CircuitsVis.render(" in body else Markup("")
    css = Markup((Path(__file__).parent / "report.css").read_text(encoding="utf-8"))
    return str(render("page.html.j2", title=title, css=css, scripts=scripts, body=body))


def build_report(run: RunDir, stale: Mapping[str, str] | None = None) -> Path:
    """Write ``report/index.html`` and ``report/summary.json`` from whatever results exist. The first
    screen holds every check against its bar, the sections built from ``stale`` stages (stage -> why,
    as ``study.pipeline.stale_stages`` finds them), and the figures that carry the story; the
    sections follow."""
    if not run.root.is_dir():
        raise UserError(f"run directory {run.root} does not exist")
    if not run.config_file.exists():
        raise UserError(f"{run.root} is not a study's run directory (no config.json); "
                        "start one with `python -m study run --config ...`")
    config = read_json(run.config_file)
    stale = dict(stale or {})
    summary: dict[str, Any] = {"study": config.get("name", run.root.name), "built": time.strftime("%Y-%m-%d %H:%M:%S")}
    shown, labels, checks, key_figures, key_text, stale_sections = [], {}, [], [], [], []
    for section in sections():
        rendered = section.render(run)
        if rendered is None:
            continue
        why = [f"{s}: {stale[s]}" for s in section.shows if s in stale]
        if why:
            stale_sections.append((Markup("<a href='#{}'>{}</a>").format(section.anchor, section.title), "; ".join(why)))
        shown.append({"anchor": section.anchor, "title": section.title, "body": rendered.body, "stale": why})
        summary.update(rendered.summary)
        checks += [(c, section.anchor) for c in rendered.checks]
        key_figures += rendered.key_figures
        key_text += [(section.anchor, line) for line in rendered.key_text]
        labels.update({k: (section.anchor, label) for k, label in section.labels.items()})
    verdicts = groups([c for c, _ in checks])
    summary.update(verdicts)
    summary["checks"] = [c.to_dict() | {"section": anchor} for c, anchor in checks]
    summary["stale_stages"] = stale
    headline = [(Markup("<a href='#{}'>{}</a>").format(*labels[k]) if k in labels else k, v)
                for k, v in summary.items() if k not in ("study", "built", "checks", "stale_stages")]
    body = render("index.html.j2", study=summary["study"], built=summary["built"], root=str(run.root), sections=shown,
                  headline=headline, config=json.dumps(config, indent=2), checks=[c for c, _ in checks],
                  failed=[c for c, _ in checks if not c.passes], stale=stale_sections, key_figures=key_figures,
                  key_text=key_text)
    out = atomic_write_text(run.report / "index.html", page(f"{summary['study']}: RLHF interpretability report", body))
    feature_diff_page(run)
    atomic_write_json(run.summary_file, summary)
    return out


def feature_diff_page(run: RunDir) -> Path | None:
    """``report/feature_diff.html``: every feature card on one offline page."""
    from study.report.sections.feature_diff import cards_page_body

    body = cards_page_body(run)
    if body is None:
        return None
    return atomic_write_text(run.report / "feature_diff.html", page(f"Feature diffs: {run.root.name}", body))

