"""Model diffing against the known reward: every method's latents scored per layer and seed (with
the latents each set aside because they never fire on held-out text), crosscoder quality, and cards
for the crosscoder latents leaning furthest to the policy."""

from __future__ import annotations

from typing import Any

import numpy as np
from markupsafe import Markup

from analysis.diffing.registry import METHODS
from analysis.results import ModelDiffingResult, SeedStat, SpliceEffect, splice_score
from rlhf.rundir import RunDir
from study.report.cards import latent_card
from study.report.page import TEMPLATES, render
from study.report.section import Section

BREAKING_KL = 0.5  # nats/token: an ablation this far from the policy breaks the model; its reward change is no evidence
LEADING = splice_score(10, "recovered")  # the causal score the summary names the leaders by
LEADERS = f"diffing_leaders_by_{LEADING}"  # their key in summary.json
VERDICTS = ((LEADING, "share of G its top 10 directions recover"), ("precision", "precision of the high-utility vocabulary"),
            ("mean_abs_corr", "mean |r| with the current token's utility (its valence, for sentiment)"))


def pm(stat: SeedStat | None, signed: bool = False) -> str:
    """Mean ± spread over seeds (the spread only with more than one seed)."""
    if not stat:
        return "-"
    mean = f"{stat.mean:+.3f}" if signed else f"{stat.mean:.3f}"
    return mean + (f" ± {stat.std:.3f}" if stat.seeds > 1 else "")


def label(method: str) -> str:
    """A method's label in the registry; one the registry no longer holds (an older run's) shows its name."""
    return METHODS[method].label if method in METHODS else method


def leaderboard(stats: dict[str, SeedStat]) -> list[list[str]]:
    """Methods in tiers by one score, best first. A method starts a new tier only where its interval
    (mean ± spread over seeds) lies wholly below every interval in the tier above: methods whose
    intervals overlap are not ranked against each other, whatever their means say."""
    tiers: list[list[str]] = []
    floor = float("inf")  # the lowest lower bound in the current tier
    for name, stat in sorted(stats.items(), key=lambda kv: -kv[1].mean):
        if tiers and stat.mean + stat.std >= floor:
            tiers[-1].append(name)
            floor = min(floor, stat.mean - stat.std)
        else:
            tiers.append([name])
            floor = stat.mean - stat.std
    return tiers


def ablation_cell(change: SeedStat | None, kl: SeedStat | None) -> str:
    """The ablation's reward change, labelled as breaking the model where its KL is past ``BREAKING_KL``."""
    if change is None:
        return "-"
    return pm(change, signed=True) + (f" (breaks the model: KL {kl.mean:.2f})" if kl and kl.mean > BREAKING_KL else "")


def verdict(summary: dict[str, dict[str, SeedStat]], key: str) -> str:
    """Methods in tiers by ``key``: ">" only where the intervals separate, "≈" where they overlap."""
    tiers = leaderboard({m: v[key] for m, v in summary.items() if key in v})
    return " > ".join(" ≈ ".join(label(m) for m in tier) for tier in tiers)


def ordered(summary: dict[str, dict[str, SeedStat]]) -> list[tuple[str, dict[str, SeedStat]]]:
    """The methods in the registry's order (an older run's unregistered ones last), whatever order the JSON kept."""
    rank = {name: i for i, name in enumerate(METHODS)}
    return sorted(summary.items(), key=lambda kv: (rank.get(kv[0], len(rank)), kv[0]))


def _spliced(effect: SpliceEffect | None, k: int) -> str | float:
    """A per-layer splice cell: the share, with the number of directions where the method named fewer than k."""
    if effect is None:
        return "-"
    return effect.recovered if effect.directions == k else f"{effect.recovered:+.3f} ({effect.directions})"


def _mean(values: list[float]) -> str:
    return f"{sum(values) / len(values):+.3f}" if values else "-"


def context(run: RunDir, m: ModelDiffingResult) -> dict[str, Any]:
    summary = m.summary
    ks = sorted({k for layer in m.layers for k in layer.random_splice})
    rows = [(label(k), max(s.seeds for s in v.values()), pm(v.get("mean_abs_corr")), pm(v.get("precision")),
             pm(v.get("recall")), *(pm(v.get(splice_score(k, "recovered")), signed=True) for k in ks),
             *(pm(v.get(splice_score(k, "removed")), signed=True) for k in ks),
             ablation_cell(v.get("reward_change"), v.get("kl_per_token")))
            for k, v in ordered(summary)]
    floor = [_mean([layer.random_splice[k].recovered for layer in m.layers if k in layer.random_splice]) for k in ks]
    random_change = sum(layer.random_directions.reward_change for layer in m.layers) / len(m.layers)
    layers = [{
        "hook": layer.hook,
        "methods": [(label(name), r.seed, r.share_tracking_reward if r.share_tracking_reward is not None else "-",
                     r.precision, r.recall, *(_spliced(r.splice.get(k), k) for k in ks),
                     r.reward_change if r.reward_change is not None else "-",
                     r.kl_per_token if r.kl_per_token is not None else "-", r.set_aside if r.latents else "-")
                    for name, rs in layer.methods.items() for r in rs],
        "crosscoder": [(f"seed {s}", c.explained_variance["base"], c.explained_variance["policy"], c.l0, c.dead_fraction,
                        c.policy_leaning, c.policy_specific_after_scaling, c.difference_dictionary_explained_variance)
                       for s, c in layer.crosscoder.items()],
    } for layer in m.layers]
    # Summary verdicts name the first tier: the methods no other method is ahead of, given the spreads.
    by_corr = leaderboard({k: v["mean_abs_corr"] for k, v in summary.items() if "mean_abs_corr" in v})
    leaders = leaderboard({k: v[LEADING] for k, v in summary.items() if LEADING in v})
    return {
        "m": m, "rows": rows,
        "header": ("method", "seeds", "mean |r| with valence", "precision", "recall",
                   *(f"G recovered, top {k}" for k in ks), *(f"G removed, top {k}" for k in ks), "reward change when ablated"),
        "layer_header": ("method", "seed", "share tracking reward", "precision", "recall",
                         *(f"G recovered, top {k}" for k in ks), "reward change", "KL of the ablation",
                         "latents set aside (never fire)"), "floor": list(zip(ks, floor)), "random_change": f"{random_change:+.3f}",
        "unedited": f"{m.unedited_reward:.3f}", "gain": _stat(list(m.gain)) if m.gain else None,
        "verdicts": [(text, verdict(summary, key)) for key, text in VERDICTS if any(key in v for v in summary.values())],
        "key_text": [f"Model-diffing leaderboard, by {text}: {verdict(summary, key)}."
                     for key, text in VERDICTS if any(key in v for v in summary.values())],
        "layers": layers, "blocks": method_blocks(run, m), "breaking_kl": BREAKING_KL,
        "plot": ModelDiffingResult.figure(run, "scores"),
        "norm_plots": [(ModelDiffingResult.figure(run, "relative_norms", hook=layer.hook), f"relative norms, {layer.hook}")
                       for layer in m.layers if ModelDiffingResult.figure(run, "relative_norms", hook=layer.hook).exists()], "cards": [latent_card(layer.hook, c) for layer in m.layers for c in layer.cards],
        "cards_set_aside": [(layer.hook, layer.cards_set_aside) for layer in m.layers],
        "summary": ({"diffing_best_method_by_corr": " ≈ ".join(label(k) for k in by_corr[0])} if by_corr else {})
        | ({LEADERS: " ≈ ".join(label(k) for k in leaders[0])} if leaders else {}),
    }


def _stat(values: list[float]) -> SeedStat:
    return SeedStat(mean=float(np.mean(values)), std=float(np.std(values)), seeds=len(values))


def method_blocks(run: RunDir, m: ModelDiffingResult) -> list[Markup]:
    """Each method's own block: the template ``diffing/<name>.html.j2``, where there is one and the method
    kept numbers of its own, given its records at every hook and what its once-per-run step found."""
    kept = {name for layer in m.layers for name in layer.records} | set(m.per_run)
    blocks = []
    for name, _ in ordered(dict.fromkeys(kept, {})):
        template = f"diffing/{name}.html.j2"
        if not (TEMPLATES / template).exists():
            continue
        blocks.append(render(template, label=label(name), records={layer.hook: layer.records.get(name, ()) for layer in m.layers},
                             per_run=m.per_run.get(name), figure=lambda which: m.figure(run, which), pm=pm, stat=_stat,
                             breaking_kl=BREAKING_KL))
    return blocks


SECTION = Section(
    "model_diffing", "Model diffing against the known reward", "model_diffing.html.j2", (ModelDiffingResult,), context,
    labels={"diffing_best_method_by_corr": "model diffing: methods whose latents track the reward best "
                                           "(not separable from each other)",
            LEADERS: "model diffing: methods whose top 10 directions recover most of G "
                                                  "(not separable from each other)"},
)
