"""Base vs policy feature diffs: the three rankings per hook (of the features that fire on held-out
text; how many never do is shown), whether the diff tracks the reward, and a card per top feature (with the autointerp explanation where one exists). The cards also
make up ``report/feature_diff.html`` (``cards_page_body``)."""

from __future__ import annotations

from typing import Any

from markupsafe import Markup

from analysis.results import AutointerpResult, FeatureDiffResult, HookFeatureDiff
from rlhf.rundir import RunDir
from study.report.cards import feature_card
from study.report.page import render
from study.report.section import Section

RANKINGS = (("new", "new"), ("changed frequency", "changed"), ("writes utility", "writes_utility"))
TRACKING = ("diff_features_mean_abs_corr", "their_base_matches_mean_abs_corr", "all_policy_mean_abs_corr",
            "all_base_mean_abs_corr", "policy_max_abs_corr", "base_max_abs_corr")


def _feature_link(h: HookFeatureDiff, feature: int) -> Markup | int:
    if feature in h.cards:
        return Markup("<a href='#{}-{}'>{}</a>").format(h.hook, feature, feature)
    return feature


def cards(run: RunDir, diff: FeatureDiffResult, autointerp: AutointerpResult | None) -> list[dict[str, Any]]:
    """Every hook's cards, with the LLM's explanation of the feature where autointerp ran."""
    explained = autointerp.explained() if autointerp is not None else {}
    return [{"hook": h.hook, "set_aside": h.set_aside,
             "cards": [feature_card(h.hook, c, explained.get((h.hook, c.feature))) for c in h.cards.values()]}
            for h in diff.hooks]


def context(run: RunDir, diff: FeatureDiffResult, autointerp: AutointerpResult | None = None) -> dict[str, Any]:
    hooks = []
    for h in diff.hooks:
        rows = [(kind, _feature_link(h, c.feature), c.mcs, c.freq_policy, c.freq_base_match, c.utility_corr,
                 c.utility_corr_base_match, c.logit_alignment, " ".join(c.top_logit_tokens))
                for kind, key in RANKINGS for c in h.rankings()[key][:3]]
        hooks.append({"hook": h.hook, "size": h.size, "n_new": h.n_new, "n_features": h.n_features, "rows": rows,
                      "set_aside": h.set_aside})
    tracking = [(h.hook, *(getattr(h.reward_tracking, k) for k in TRACKING)) for h in diff.hooks]
    diffs = [h.reward_tracking.diff_features_mean_abs_corr for h in diff.hooks]
    bases = [h.reward_tracking.their_base_matches_mean_abs_corr for h in diff.hooks]
    summary = {"new_policy_features": ", ".join(f"{h.hook.split('.')[1]}: {h.n_new}" for h in diff.hooks),
               "diff_features_abs_valence_corr": sum(diffs) / len(diffs),
               "their_base_matches_abs_valence_corr": sum(bases) / len(bases)}
    return {"match_threshold": diff.match_threshold, "hooks": hooks, "tracking": tracking,
            "cards": cards(run, diff, autointerp), "summary": summary}


def cards_page_body(run: RunDir) -> Markup | None:
    """The body of ``report/feature_diff.html``: every feature card on one page."""
    diff = FeatureDiffResult.load_if_exists(run)
    if diff is None:
        return None
    return render("feature_diff_page.html.j2", root=str(run.root),
                  cards=cards(run, diff, AutointerpResult.load_if_exists(run)))


SECTION = Section(
    "feature_diff", "Base vs policy: feature diffs", "feature_diff.html.j2", (FeatureDiffResult, AutointerpResult), context,
    labels={"new_policy_features": "policy features without a base match, by layer",
            "diff_features_abs_valence_corr": "diff features: mean |corr.| with token valence",
            "their_base_matches_abs_valence_corr": "their base matches: mean |corr.| with token valence"},
)
