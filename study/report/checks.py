"""The study's checks: every bar a model or dictionary must pass, as data.

A section's context lists its ``Check``s; the report shows them all on its first screen,
``summary.json`` keeps them (each group's verdict as a boolean key, e.g. ``policy_passes``,
and every check with its value and bar under ``checks``), and the console's closing lines
name each one that fails. Light on purpose (no torch): benchmarks score their runs with the
same checks the report shows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from rlhf.results import PolicyResult

Op = Literal[">=", "<="]

# The online policy's bars (issue #3): the reward it gains on held-out prompts, and how far it may
# move to get it. The gain's bar is on the VADER utility's scale; another reward only has to rise.
REWARD_GAIN_BAR, KL_BAR, REPETITION_FACTOR = 2.0, 1.0, 2.0


@dataclass(frozen=True)
class Check:
    group: str  # the summary.json key that holds whether all of the group's checks pass, e.g. "policy_passes"
    label: str  # what is checked, as a reader sees it
    value: float
    op: Op
    bar: float

    @property
    def passes(self) -> bool:
        return self.value >= self.bar if self.op == ">=" else self.value <= self.bar

    def text(self) -> str:
        """One line: verdict, what, value against bar (and by how much a failure misses)."""
        if self.passes:
            return f"PASS  {self.label}: {self.value:.4g} {self.op} {self.bar:.4g}"
        miss = self.value - self.bar
        return f"FAIL  {self.label}: {self.value:.4g}, bar {self.op} {self.bar:.4g} (off by {abs(miss):.3g})"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "passes": self.passes}


def groups(checks: Sequence[Check]) -> dict[str, bool]:
    """Each group's verdict: all of its checks pass."""
    out: dict[str, bool] = {}
    for c in checks:
        out[c.group] = out.get(c.group, True) and c.passes
    return out


def policy_checks(p: PolicyResult, group: str = "policy_passes") -> list[Check]:
    """The online policy's three bars: reward gain, KL to its start model within the budget (the
    study's 1 nat when it set none), repeated bigrams at most twice the start model's."""
    budget = p.config.kl_budget or KL_BAR
    gain_bar = REWARD_GAIN_BAR if p.reward in ("vader", "organism:sentiment") else 0.0  # the VADER utility's scale
    return [
        Check(group, "policy: reward gain on held-out prompts", p.reward_gain, ">=", gain_bar),
        Check(group, "policy: KL to its start model (nats/token)", p.policy.mean_kl_per_token, "<=", budget),
        Check(group, f"policy: repeated-bigram share (<= {REPETITION_FACTOR:g}x the start model's)",
              p.policy.repeated_bigrams, "<=", REPETITION_FACTOR * max(p.base.repeated_bigrams, 1e-9)),
    ]
