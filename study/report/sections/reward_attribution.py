"""Where the reward lives: the exact reward gain, layer and component patching, weight swaps, and
which dictionaries' latents carry the gain when spliced, with a verdict computed from the numbers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from analysis.results import Curve, RewardAttributionResult, SiteFractions
from rlhf.rundir import RunDir
from rlhf.zoo import ORGANISMS
from study.report.section import Section

GOAL = 0.5  # the fraction of G a method's top 30 latents should carry, in both directions


def pm(values: Sequence[float]) -> str:
    """Mean ± standard deviation over seeds (the spread only with more than one)."""
    v = np.asarray(values, dtype=float)
    return f"{v.mean():+.3f}" + (f" ± {v.std():.3f}" if len(v) > 1 else "")


def reaches(values: Sequence[float], bar: float) -> str:
    """Whether the spread over seeds lies above the bar, below it, or straddles it."""
    v = np.asarray(values, dtype=float)
    if v.mean() - v.std() >= bar:
        return "yes"
    return "no" if v.mean() + v.std() < bar else "undecided (the spread straddles it)"


def at(curve: Curve, k: int, direction: str) -> tuple[float, ...] | None:
    return getattr(curve, direction)[curve.ks.index(k)] if k in curve.ks else None


def best_both_ways(r: RewardAttributionResult, k: int) -> tuple[Curve, list[float]] | None:
    """The ranking of a dictionary (not the random one) whose top k carry the most of G in both directions
    (the smaller of the recovered and removed shares, per seed, averaged), with those per-seed minima."""
    scored = []
    for c in r.curves:
        if c.ranking == "random" or k not in c.ks:
            continue
        both = [min(a, b) for a, b in zip(at(c, k, "recovered"), at(c, k, "removed"))]
        scored.append((float(np.mean(both)), c, both))
    if not scored:
        return None
    _, c, both = max(scored, key=lambda t: t[0])
    return c, both


def _best_site(rows: tuple[SiteFractions, ...], direction: str) -> SiteFractions:
    inside = [r for r in rows if r.component != "all"]
    return max(inside, key=lambda r: float(np.mean(getattr(r, direction))))


def verdict(r: RewardAttributionResult) -> list[str]:
    """The section's conclusions, each computed from the numbers it quotes."""
    gain = [g.gain for g in r.gain]
    lines = [f"The policy's exact reward gain is G = {pm(gain)} per completion (sampled: {pm([g.sampled_gain for g in r.gain])}); "
             f"{pm([g.utility_part for g in r.gain])} of it is what the chosen tokens earn and "
             f"{pm([g.ending_part for g in r.gain])} comes from ending less often "
             f"(P(end) per position {np.mean([g.eos_base for g in r.gain]):.3f} in the base, "
             f"{np.mean([g.eos_policy for g in r.gain]):.3f} in the policy)."]
    rec, rem = _best_site(r.patching, "recovered"), _best_site(r.patching, "removed")
    lines.append(f"Activation patching: {rec.site} recovers the most ({pm(rec.recovered)} of G into the base); "
                 f"{rem.site} removes the most ({pm(rem.removed)} of G from the policy).")
    blocks = [s for s in r.weight_swap if s.component == "block"]
    if blocks:
        best = max(blocks, key=lambda s: float(np.mean(s.recovered)))
        text = f"Weight swap: layer {best.layer}'s parameters carry the most ({pm(best.recovered)} recovered, {pm(best.removed)} removed)"
        if r.divergence_ranking:
            top = r.divergence_ranking[0]
            text += ("; it is also the most-diverged layer." if top == best.layer else
                     f"; the most-diverged layer is layer {top}, whose swap recovers "
                     f"{pm(next(s.recovered for s in blocks if s.layer == top))}.")
        lines.append(text)
    leader = best_both_ways(r, 30)
    if leader:
        c, both = leader
        text = (f"At k = 30 the best method is {c.method} at {c.hook}: {pm(at(c, 30, 'recovered'))} of G recovered, "
                f"{pm(at(c, 30, 'removed'))} removed. Does it carry at least half of G in both directions? "
                f"{reaches(both, GOAL)}.")
        chance = next((r for r in r.curves if (r.hook, r.dictionary, r.ranking) == (c.hook, c.dictionary, "random")
                       and 30 in r.ks), None)
        if chance is not None:
            text += (f" 30 random live latents of the same dictionary: {pm(at(chance, 30, 'recovered'))} recovered, "
                     f"{pm(at(chance, 30, 'removed'))} removed.")
        lines.append(text)
    else:
        lines.append("No dictionary has 30 live latents to splice: the k = 30 goal cannot be scored.")
    return lines


def _method_rows(r: RewardAttributionResult) -> list[tuple]:
    rows = []
    for c in sorted(r.curves, key=lambda c: (c.hook, c.dictionary, c.ranking)):
        cells = [c.hook, c.dictionary, c.ranking]
        for k in (10, 30):
            for direction in ("recovered", "removed"):
                values = at(c, k, direction)
                cells.append(pm(values) if values else "-")
        rows.append(tuple(cells))
    return rows


def _site_rows(rows: tuple[SiteFractions, ...]) -> list[tuple]:
    return [(s.site, pm(s.recovered), pm(s.removed)) for s in rows]


def context(run: RunDir, r: RewardAttributionResult) -> dict[str, Any]:
    gains = [(g.seed, g.expected_base, g.expected_policy, g.gain, g.utility_part, g.ending_part, g.eos_base, g.eos_policy,
              g.sampled_base, g.sampled_policy, g.sampled_gain, g.length_base, g.length_policy) for g in r.gain]
    summary: dict[str, Any] = {"reward_gain_exact": float(np.mean([g.gain for g in r.gain])),
                               "reward_gain_sampled": float(np.mean([g.sampled_gain for g in r.gain]))}
    return {
        "r": r, "conclusions": verdict(r), "gains": gains,
        "organism": ORGANISMS[r.organism].label if r.organism in ORGANISMS else r.organism,
        "gain_header": ("seed", "E base", "E policy", "G", "utility part", "ending part", "P(end) base", "P(end) policy",
                        "sampled base", "sampled policy", "sampled gain", "length base", "length policy"),
        "patching": _site_rows(r.patching), "weight_swap": _site_rows(r.weight_swap),
        "methods": _method_rows(r),
        "method_header": ("hook", "dictionary", "ranking", "k=10 recovered", "k=10 removed", "k=30 recovered", "k=30 removed"),
        "latents": [(t.hook, t.dictionary, t.latent, t.attribution, t.direct, t.recovered, t.removed) for t in r.top_latents],
        "dictionaries": [(d.hook, d.dictionary, d.latents, d.live, d.latents - d.live) for d in r.dictionaries],
        "writer": [(w.seed, w.kendall_tau, w.r2, w.untrained_tau, w.untrained_tau_std) for w in r.writer],
        "interventions": [(i.seed, i.reward_policy, i.reward_edited, i.reward_edited - i.reward_policy, i.kl_per_token)
                          for i in r.interventions],
        "key_figures": [(RewardAttributionResult.figure(run, "patching"), "activation patching: where the reward gain lives")],
        "heatmap": RewardAttributionResult.figure(run, "patching"), "curves": RewardAttributionResult.figure(run, "curves"),
        "summary": summary,
    }


SECTION = Section(
    "reward_attribution", "Where the reward lives", "reward_attribution.html.j2", (RewardAttributionResult,), context,
    labels={"reward_gain_exact": "reward gain G (exact, teacher-forced)",
            "reward_gain_sampled": "reward gain (sampled, same prompts)"},
)
