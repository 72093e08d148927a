"""Base-vs-policy feature diffs with their cards' data (``analysis/feature_diff.json``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rlhf.artifact import Artifact


@dataclass(frozen=True)
class CardExample:
    """One held-out text on a card: its tokens and a value per token for each model."""

    tokens: tuple[str, ...]
    policy: tuple[float, ...]
    base: tuple[float, ...]


@dataclass(frozen=True)
class FeatureHistogram:
    """Counts of a feature's non-zero held-out activations on shared bins, for the policy feature and its base match."""

    edges: tuple[float, ...]
    policy: tuple[int, ...]
    base_match: tuple[int, ...]


@dataclass(frozen=True)
class FeatureRow:
    """A policy feature, its closest base feature by decoder cosine, and how each tracks the known reward."""

    feature: int
    base_match: int
    mcs: float
    freq_policy: float
    freq_base_match: float
    mean_policy: float
    mean_base_match: float
    utility_corr: float  # correlation of its activation with the current token's valence
    utility_corr_base_match: float
    logit_alignment: float  # correlation of its direct logit effect with each vocabulary token's valence
    top_logit_tokens: tuple[str, ...]
    bottom_logit_tokens: tuple[str, ...]


@dataclass(frozen=True)
class FeatureCard(FeatureRow):
    """A feature card's data: the row, plus its top held-out texts and activation histograms."""

    examples: tuple[CardExample, ...] = ()
    histogram: FeatureHistogram = FeatureHistogram((), (), ())


@dataclass(frozen=True)
class RewardTracking:
    """Mean (and max) |correlation with token valence|: the diff features against their base matches and all features."""

    diff_features_mean_abs_corr: float
    their_base_matches_mean_abs_corr: float
    all_policy_mean_abs_corr: float
    all_base_mean_abs_corr: float
    policy_max_abs_corr: float
    base_max_abs_corr: float


@dataclass(frozen=True)
class HookFeatureDiff:
    hook: str
    size: str
    n_features: int
    n_new: int  # policy features that fire on held-out text without a base match above the threshold
    new: tuple[FeatureRow, ...]
    changed: tuple[FeatureRow, ...]
    writes_utility: tuple[FeatureRow, ...]
    cards: dict[int, FeatureCard]
    max_abs_utility_corr: float
    reward_tracking: RewardTracking
    set_aside: int = 0  # policy features that never fire on held-out text: not ranked, counted or carded

    def rankings(self) -> dict[str, tuple[FeatureRow, ...]]:
        return {"new": self.new, "changed": self.changed, "writes_utility": self.writes_utility}


@dataclass(frozen=True)
class FeatureDiffResult(Artifact):
    """``analysis/feature_diff.json``: per hook, the policy features ranked three ways, with card data."""

    match_threshold: float
    hooks: tuple[HookFeatureDiff, ...]
    seconds: float
    config: dict[str, Any] = field(default_factory=dict)  # the stage's settings, as a record

    DIR, FILE = "analysis", "feature_diff.json"
