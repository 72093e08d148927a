"""MMCS between dictionaries (``analysis/mmcs.json``)."""

from __future__ import annotations

from dataclasses import dataclass

from rlhf.artifact import Artifact


@dataclass(frozen=True)
class Interval:
    """A mean and its 95% normal-approximation confidence interval over ``n`` draws."""

    mean: float
    low: float
    high: float
    n: int


@dataclass(frozen=True)
class SharedFeature:
    feature: int  # row of the small dictionary
    mcs: float  # its largest cosine with a row of the big one
    big_match: int  # that row


@dataclass(frozen=True)
class MMCSWithin:
    """Small-into-big MMCS of one model's dictionaries at one hook."""

    model: str
    hook: str
    small: str
    big: str
    mmcs: float
    mmcs_hungarian: float
    random_null: Interval
    shared: tuple[SharedFeature, ...]  # the top-k features by MCS
    other_seed_mmcs: float | None = None  # small into an other-seed small SAE (None when not trained)


@dataclass(frozen=True)
class MMCSAcross:
    """Base-vs-policy MMCS of the same-size dictionaries at one hook."""

    hook: str
    size: str
    policy_into_base: float
    base_into_policy: float


@dataclass(frozen=True)
class MMCSResult(Artifact):
    """``analysis/mmcs.json``."""

    within: tuple[MMCSWithin, ...]
    base_vs_policy: tuple[MMCSAcross, ...]

    DIR, FILE = "analysis", "mmcs.json"
