"""Automated interpretability: explanations of the chosen features with their simulation and
detection scores, the paper's comparison of the two models' shared features, tokens and cost."""

from __future__ import annotations

from typing import Any

from markupsafe import Markup

from analysis.results import AutointerpResult, FeatureDiffResult, FeatureInterpretation
from rlhf.rundir import RunDir
from study.report.section import Section


def context(run: RunDir, r: AutointerpResult, diff: FeatureDiffResult | None = None) -> dict[str, Any]:
    carded = {(h.hook, f) for h in diff.hooks for f in h.cards} if diff is not None else set()

    def feature(f: FeatureInterpretation) -> Markup | int:
        if f.model == "policy" and (f.hook, f.feature) in carded:  # its card is in the feature-diff section
            return Markup("<a href='#{}-{}'>{}</a>").format(f.hook, f.feature, f.feature)
        return f.feature

    def shown(x: Any) -> Any:
        return "-" if x is None else x

    rows = [(f.model, f.hook, feature(f), f.reason, f.explanation or "-", shown(f.simulation_score),
             shown(f.detection_score), {True: "yes", False: "no"}.get(f.related_to_objective, "-"),
             shown(f.explanation_utility), "; ".join(x.step for x in f.failures))
            for f in r.features]
    comparison = [(m, c.features, c.mean_explanation_utility, c.share_related_to_objective) for m, c in r.comparison.items()]
    u = r.usage
    cost = f"${r.cost_usd:.4f}" if r.cost_usd is not None else "no price for this model in [autointerp] prices"
    overview = [("features", len(r.features)), ("failed features", r.failed_features),
                ("mean simulation score", r.mean_simulation_score), ("mean detection score", r.mean_detection_score),
                ("requests (answered from the cache)", f"{u.requests} ({u.cached})"),
                ("requests sent by the last run", r.requests_sent_this_run),
                ("tokens in / out", f"{u.prompt_tokens} / {u.completion_tokens}"), ("estimated cost", cost)]
    summary = {"autointerp_mean_simulation_score": r.mean_simulation_score,
               "autointerp_mean_detection_score": r.mean_detection_score,
               "autointerp_tokens": u.prompt_tokens + u.completion_tokens, "autointerp_cost_usd": r.cost_usd}
    return {"r": r, "overview": overview, "comparison": comparison, "rows": rows, "summary": summary}


SECTION = Section(
    "autointerp", "Automated interpretability", "autointerp.html.j2", (AutointerpResult, FeatureDiffResult), context,
    labels={"autointerp_mean_simulation_score": "autointerp: mean simulation score",
            "autointerp_mean_detection_score": "autointerp: mean detection score",
            "autointerp_tokens": "autointerp: tokens used",
            "autointerp_cost_usd": "autointerp: estimated cost (USD)"},
)
