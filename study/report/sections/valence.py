"""Does the base model know sentiment? The valence probe of each model that has one."""

from __future__ import annotations

from typing import Any

from probes.results import ValenceProbeResult
from rlhf.rundir import RunDir
from study.report.checks import Check
from study.report.section import Section


def _model(run: RunDir, v: ValenceProbeResult) -> dict[str, Any]:
    s, bars = v.summary, v.bars
    rows = [
        ("held-out words at the word", s.best_word_hook, s.word_tau, bars.word_tau),
        ("embedding only", "blocks.0.hook_resid_pre", s.embedding_tau, "below the above"),
        ("held-out words at the last token", s.best_last_token_hook, s.last_token_tau, bars.last_token_tau),
        ("random-init model (null)", "best layer", s.random_init_word_tau, "near 0"),
    ]
    per_layer = [(h, v.trained.word[h].kendall_tau, v.trained.last_token[h].kendall_tau, v.random_init.word[h].kendall_tau)
                 for h in v.trained.word]
    return {"model": v.model, "n_train_words": v.trained.n_train_words, "n_held_out_words": v.trained.n_held_out_words,
            "passes": s.passes, "rows": rows, "per_layer": per_layer, "figure": ValenceProbeResult.figure(run, "layers", model=v.model)}


def context(run: RunDir) -> dict[str, Any] | None:
    results = ValenceProbeResult.all(run)  # every model's probe, by model name
    if not results:
        return None
    summary: dict[str, Any] = {}
    checks = []
    for v in results:
        s, group = v.summary, f"valence_{v.model}_passes"
        summary.update({f"valence_{v.model}_word_tau": s.word_tau, f"valence_{v.model}_embedding_tau": s.embedding_tau,
                        f"valence_{v.model}_last_token_tau": s.last_token_tau})
        checks += [Check(group, f"{v.model} knows valence: held-out words' tau at the word", s.word_tau, ">=",
                         v.bars.word_tau),
                   Check(group, f"{v.model} knows valence: tau at the word over the embedding's", s.word_tau, ">=",
                         s.embedding_tau),
                   Check(group, f"{v.model} knows valence: tau at the last token", s.last_token_tau, ">=",
                         v.bars.last_token_tau)]
    return {"models": [_model(run, v) for v in results], "checks": checks, "summary": summary}


SECTION = Section(
    "valence", "Does the base model know sentiment?", "valence.html.j2", (), context, stages=("valence_probe",),
    labels={"valence_base_word_tau": "base knows valence: tau at the word",
            "valence_base_embedding_tau": "base knows valence: tau of the embedding",
            "valence_base_last_token_tau": "base knows valence: tau at the last token",
            "valence_base_passes": "valence probe passes its bars"},
)
