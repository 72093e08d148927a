"""Sparse dictionaries: the activation cache and every SAE's held-out quality against its bars."""

from __future__ import annotations

from typing import Any

from analysis.dictionary_kinds import DICTIONARY_KINDS
from analysis.results import ActivationIndex, SAEIndex, SAEQualityResult
from rlhf.rundir import RunDir
from study.report.checks import Check
from study.report.page import verdict
from study.report.section import Section


def context(run: RunDir, q: SAEQualityResult, cache: ActivationIndex | None, index: SAEIndex | None) -> dict[str, Any]:
    cached = None
    if cache is not None:
        first = cache.model_names[0]
        cached = {"hooks": ", ".join(cache.all_hooks), "models": ", ".join(cache.model_names),
                  "train": cache.tokens(first, "train"), "val": cache.tokens(first, "val")}
    rows = [(r.model, r.hook if r.kind == "sae" else f"{r.hook} (transcoder, from ln2.hook_normalized)", r.size, r.d_sae, r.explained_variance, r.mse, r.l0, r.dead_fraction, r.lm_loss_recovered,
             r.splice_cost, verdict(r.passes)) for r in q.saes]
    worst = {"sae_explained_variance_min": min(r.explained_variance for r in q.saes),
             "sae_loss_recovered_min": min(r.lm_loss_recovered for r in q.saes),
             "sae_dead_fraction_max": max(r.dead_fraction for r in q.saes)}
    n = len(q.saes)
    # Each SAE must pass every bar: the worst SAE against each bar says the same (q.all_pass).
    checks = [Check("saes_pass", f"SAEs: explained variance, worst of {n}", worst["sae_explained_variance_min"], ">=",
                    q.bars.explained_variance),
              _loss_check(q),
              Check("saes_pass", f"SAEs: dead features, worst of {n}", worst["sae_dead_fraction_max"], "<=",
                    q.bars.dead_fraction)]
    return {"cached": cached, "kind": _kind(index) if index else None, "bars": q.bars, "rows": rows,
            "figure": SAEQualityResult.figure(run, "metrics"), "checks": checks, "summary": worst}


def _kind(index: SAEIndex) -> str:
    """The dictionaries' kind by its label, with the settings it reads: "ReLU SAE with an L1 penalty
    (standard, l1_coefficient 5)". A run may record a kind no longer registered: then its name alone."""
    kind = DICTIONARY_KINDS.get(index.architecture)
    if kind is None:
        return index.architecture
    settings = "".join(f", {name} {getattr(index.config, name):g}" for name in kind.reads)
    return f"{kind.label} ({index.architecture}{settings})"


def _loss_check(q: SAEQualityResult) -> Check:
    """The LM-loss bar: the ratio recovered, except for SAEs whose splice costs no more than the bar's
    floor in nats/token (the ratio is ill-conditioned where zeroing the hook costs little)."""
    floor = q.bars.splice_cost
    ratio_bound = [r for r in q.saes if r.splice_cost > floor]
    if not floor:
        return Check("saes_pass", f"SAEs: LM loss recovered, worst of {len(q.saes)}",
                     min(r.lm_loss_recovered for r in q.saes), ">=", q.bars.lm_loss_recovered)
    if not ratio_bound:
        return Check("saes_pass", f"SAEs: splicing costs at most {floor:g} nats/token, all {len(q.saes)}",
                     max(r.splice_cost for r in q.saes), "<=", floor)
    return Check("saes_pass", f"SAEs: LM loss recovered, worst of the {len(ratio_bound)} of {len(q.saes)} whose "
                 f"splice costs more than {floor:g} nats/token", min(r.lm_loss_recovered for r in ratio_bound), ">=",
                 q.bars.lm_loss_recovered)


SECTION = Section(
    "dictionaries", "Sparse dictionaries", "dictionaries.html.j2", (SAEQualityResult, ActivationIndex, SAEIndex),
    context,
    stages=("activations", "dictionaries", "sae_quality"),
    labels={"sae_explained_variance_min": "SAE explained variance (worst)",
            "sae_loss_recovered_min": "SAE LM loss recovered (worst)",
            "sae_dead_fraction_max": "SAE dead features (worst)", "saes_pass": "all SAEs pass their bars"},
)
