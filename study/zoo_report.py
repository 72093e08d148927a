"""The zoo's page, ``runs/<zoo>/report/index.html``: per organism, its known answer beside what the study
found (the exact gain G, the policy's checks, the best patching site and its heat map, the share of G the best
dictionary's top latents carry), each as mean ± spread over the sampling seeds, a link to the organism's own
report, and the cross-organism leaderboards of the diffing methods, each scored at its best hook."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from markupsafe import Markup

from analysis.diffing.scoring import at_best_hook
from analysis.results import ModelDiffingResult, RewardAttributionResult, SeedStat, splice_score
from rlhf.results import PolicyResult
from rlhf.rundir import RunDir, atomic_write_text
from rlhf.zoo import ORGANISMS
from study.report.build import page
from study.report.checks import Check, policy_checks
from study.report.page import img, render
from study.report.sections.model_diffing import label, leaderboard
from study.report.sections.model_diffing import pm as stat_pm
from study.report.sections.reward_attribution import at, best_both_ways, pm

# The scores the zoo ranks methods by: the causal share of G (both ways) and the precision of named tokens.
RANKED = ((splice_score(10, "recovered"), "share of G its top 10 directions recover"),
          (splice_score(10, "removed"), "share of G taking its top 10 directions out removes"),
          (splice_score(30, "recovered"), "share of G its top 30 directions recover"),
          (splice_score(30, "removed"), "share of G taking its top 30 directions out removes"),
          ("precision", "precision of the tokens it names against the answer"),
          ("planted_cosine", "largest |cosine| of its top directions with the planted edit"),
          ("key_hit", "share of the answer's key tokens (the trigger word) among the tokens it names"))


# The scientific goal: the best method's top 10 directions carry this share of G both ways, and the
# tokens it names hit the answer with this precision.
GOAL_SHARE, GOAL_PRECISION = 0.5, 0.8


def both_ways(stats: dict[str, SeedStat], k: int = 10) -> float | None:
    """The smaller of the mean shares of G a method's top k directions recover and remove."""
    ways = [stats[splice_score(k, w)].mean for w in ("recovered", "removed") if splice_score(k, w) in stats]
    return min(ways) if len(ways) == 2 else None


def goal_verdict(diffing: dict[str, dict[str, SeedStat]]) -> str:
    """Whether the scientific goal is met, from the methods' scores at their best hooks, with the best of each."""
    shares = [v for stats in diffing.values() if (v := both_ways(stats)) is not None]
    precisions = [stats["precision"].mean for stats in diffing.values() if "precision" in stats]
    if not shares or not precisions:
        return ""
    met = max(shares) >= GOAL_SHARE and max(precisions) >= GOAL_PRECISION
    return (f"{'met' if met else 'not met'}: best top 10 both ways {max(shares):.2f} (goal {GOAL_SHARE}), "
            f"best precision {max(precisions):.2f} (goal {GOAL_PRECISION})")


@dataclass(frozen=True)
class OrganismRow:
    name: str
    label: str
    answer: str
    answer_tokens: tuple[str, ...]
    checks: tuple[Check, ...]
    raised: bool | None  # the policy's reward rose on held-out prompts (None: no policy yet)
    gain: str  # the exact G, mean ± spread over the sampling seeds ("" before reward attribution ran)
    best_site: str  # activation patching's site that carries most of G both ways: "site: recovered / removed"
    best_splices: tuple[str, ...]  # per k: the dictionary ranking whose top k carry most of G both ways
    diffing: dict[str, dict[str, SeedStat]]  # method -> score at its best hook -> mean and spread over dictionary seeds
    hooks: dict[str, str]  # method -> that hook
    # per method: its label, its best hook, and what it names there (first seed), each token with whether it is in the answer
    named: tuple[tuple[str, str, tuple[tuple[str, bool], ...]], ...]
    patching: Markup  # reward attribution's patching heat map, inlined ("" before it ran)
    report: str  # the organism's own report, relative to the zoo's page

    @property
    def verdict(self) -> str:
        """The scientific goal, met or not, computed from the methods' scores at their best hooks."""
        return goal_verdict(self.diffing)

    @property
    def flagged(self) -> bool:
        """Its policy did not raise its reward, or broke a bar."""
        return self.raised is False or not all(c.passes for c in self.checks)


def organism_row(root: Path, name: str) -> OrganismRow:
    run = RunDir(root / name)
    policy = PolicyResult.load(run) if PolicyResult.exists(run) else None
    attribution = RewardAttributionResult.load(run) if RewardAttributionResult.exists(run) else None
    answer = attribution.answer if attribution else None
    gain, best_site, splices = "", "", []
    if attribution:
        gain = pm([g.gain for g in attribution.gain])
        sites = [s for s in attribution.patching if s.component not in ("all", "unembed")]
        if sites:
            s = max(sites, key=lambda s: min(np.mean(s.recovered), np.mean(s.removed)))
            best_site = f"{s.site}: {pm(s.recovered)} / {pm(s.removed)}"
        for k in (10, 30):
            leader = best_both_ways(attribution, k)
            if leader:
                c, _ = leader
                splices.append(f"top {k}: {pm(at(c, k, 'recovered'))} / {pm(at(c, k, 'removed'))} "
                               f"({c.method} at {c.hook})")
    best, named = {}, ()
    if ModelDiffingResult.exists(run):
        diffing = ModelDiffingResult.load(run)
        best = at_best_hook(list(diffing.layers), list(diffing.summary))
        wanted = {t.lstrip("Ġ▁") for t in answer.tokens} if answer else set()
        rows = {layer.hook: layer.methods for layer in diffing.layers}
        named = tuple((label(m), hook, tuple((t, t.lstrip("Ġ▁") in wanted) for t in rows[hook][m][0].named))
                      for m, (hook, _) in best.items() if rows[hook][m][0].named)
    return OrganismRow(
        name=name, label=ORGANISMS[name].label if name in ORGANISMS else name,
        answer=answer.description if answer else "", answer_tokens=answer.tokens[:30] if answer else (),
        checks=tuple(policy_checks(policy)) if policy else (), raised=policy.reward_gain > 0 if policy else None,
        gain=gain, best_site=best_site, best_splices=tuple(splices), report=f"../{name}/report/index.html",
        diffing={m: stats for m, (_, stats) in best.items()}, hooks={m: hook for m, (hook, _) in best.items()},
        named=named,
        patching=img(RewardAttributionResult.figure(run, "patching"), f"{name}: activation patching"))


@dataclass(frozen=True)
class Board:
    """One score's cross-organism leaderboard: per method, per organism its mean ± spread and its tier
    (1 = best; methods whose intervals overlap share a tier), and on how many organisms it is in the top tier."""

    score: str
    description: str
    organisms: tuple[str, ...]
    rows: tuple[tuple[str, tuple[str, ...], int], ...]  # method label, cells per organism, organisms it leads


def board(rows: Sequence[OrganismRow], score: str, description: str) -> Board:
    tiers = {r.name: leaderboard({m: s[score] for m, s in r.diffing.items() if score in s}) for r in rows}
    methods = sorted({m for r in rows for m, s in r.diffing.items() if score in s})
    out = []
    for method in methods:
        cells, leads = [], 0
        for r in rows:
            tier = next((i + 1 for i, t in enumerate(tiers[r.name]) if method in t), None)
            stat = r.diffing.get(method, {}).get(score)
            cells.append(f"{stat_pm(stat)} at {r.hooks[method]} (tier {tier})" if stat and tier else "-")
            leads += tier == 1
        out.append((label(method), tuple(cells), leads))
    out.sort(key=lambda row: -row[2])
    return Board(score, description, tuple(r.name for r in rows), tuple(out))


def build_zoo_report(root: Path, organisms: Sequence[str]) -> Path:
    """Write ``<root>/report/index.html`` from whatever the organisms' runs hold."""
    rows = [organism_row(Path(root), name) for name in organisms]
    boards = [board(rows, score, text) for score, text in RANKED]
    body = Markup(render("zoo.html.j2", rows=rows, boards=[b for b in boards if b.rows]))
    out = RunDir(root).report / "index.html"  # the zoo's directory holds its page where a run holds its report
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, page("The zoo: planted objectives", body))
    return out
