"""The zoo's page, ``runs/<zoo>/report/index.html``: per organism, its known answer beside what the study
found (the exact gain G, the policy's checks, the best patching site, the share of G the best dictionary's
top latents carry), each with its spread over the sampling seeds, and a link to the organism's own report."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from markupsafe import Markup

from analysis.results import RewardAttributionResult
from rlhf.results import PolicyResult
from rlhf.rundir import RunDir, atomic_write_text
from rlhf.zoo import ORGANISMS
from study.report.build import page
from study.report.checks import Check, policy_checks
from study.report.page import render


@dataclass(frozen=True)
class Spread:
    mean: float
    low: float
    high: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        return cls(float(np.mean(values)), float(np.min(values)), float(np.max(values)))


@dataclass(frozen=True)
class Splice:
    method: str  # "<dictionary> by <ranking> at <hook>"
    k: int
    recovered: Spread
    removed: Spread


@dataclass(frozen=True)
class OrganismRow:
    name: str
    label: str
    answer: str
    answer_tokens: tuple[str, ...]
    checks: tuple[Check, ...]
    raised: bool | None  # the policy's reward rose on held-out prompts (None: no policy yet)
    gain: Spread | None  # the exact G over the sampling seeds
    best_site: tuple[str, Spread, Spread] | None  # activation patching: site, recovered, removed
    best_splices: tuple[Splice, ...]  # per k: the dictionary and ranking whose top k carry most of G both ways
    report: str  # the organism's own report, relative to the zoo's page

    @property
    def flagged(self) -> bool:
        """Its policy did not raise its reward, or broke a bar."""
        return self.raised is False or not all(c.passes for c in self.checks)


def organism_row(root: Path, name: str) -> OrganismRow:
    run = RunDir(root / name)
    policy = PolicyResult.load(run) if PolicyResult.exists(run) else None
    attribution = RewardAttributionResult.load(run) if RewardAttributionResult.exists(run) else None
    answer = attribution.answer if attribution else None
    best_site, splices = None, []
    if attribution:
        both = [(min(np.mean(s.recovered), np.mean(s.removed)), s) for s in attribution.patching
                if s.site not in ("all", "unembed")]
        if both:
            s = max(both, key=lambda x: x[0])[1]
            best_site = (s.site, Spread.of(s.recovered), Spread.of(s.removed))
        for k in sorted({k for c in attribution.curves for k in c.ks} & {10, 30}):
            scored = [(min(np.mean(c.recovered[c.ks.index(k)]), np.mean(c.removed[c.ks.index(k)])), c)
                      for c in attribution.curves if k in c.ks and c.ranking != "random"]
            if scored:
                c = max(scored, key=lambda x: x[0])[1]
                splices.append(Splice(f"{c.method} at {c.hook}", k, Spread.of(c.recovered[c.ks.index(k)]),
                                      Spread.of(c.removed[c.ks.index(k)])))
    return OrganismRow(
        name=name, label=ORGANISMS[name].label if name in ORGANISMS else name,
        answer=answer.description if answer else "", answer_tokens=answer.tokens[:30] if answer else (),
        checks=tuple(policy_checks(policy)) if policy else (), raised=policy.reward_gain > 0 if policy else None,
        gain=Spread.of([g.gain for g in attribution.gain]) if attribution else None,
        best_site=best_site, best_splices=tuple(splices), report=f"../{name}/report/index.html")


def build_zoo_report(root: Path, organisms: Sequence[str]) -> Path:
    """Write ``<root>/report/index.html`` from whatever the organisms' runs hold."""
    rows = [organism_row(Path(root), name) for name in organisms]
    body = Markup(render("zoo.html.j2", rows=rows))
    out = Path(root) / "report" / "index.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, page("The zoo: planted objectives", body))
    return out
