"""The reward models with hidden context (``training/hidden_context.json``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rlhf.artifact import Artifact


@dataclass(frozen=True)
class WordSpreads:
    """Per word: the reward model's learned mean and spread beside the lexicon's mean and raters' std."""

    word: tuple[str, ...]
    learned_mean: tuple[float, ...]
    learned_std: tuple[float, ...]
    lexicon_mean: tuple[float, ...]
    lexicon_std: tuple[float, ...]


@dataclass(frozen=True)
class CategoricalDistribution:
    word: str
    lexicon_mean: float
    lexicon_std: float
    probabilities: tuple[float, ...]


@dataclass(frozen=True)
class RewardModelFit:
    pairwise_accuracy: float  # against the drawn raters' labels
    agrees_with_lexicon_means: float
    mean_vs_lexicon_mean_spearman: float
    r_squared: float
    std_vs_lexicon_std_spearman: float | None = None  # distributional models only
    words: WordSpreads | None = None
    distributions: dict[str, CategoricalDistribution] | None = None  # categorical only


@dataclass(frozen=True)
class PerWordFit:
    std_vs_lexicon_std_spearman: float
    mean_vs_lexicon_mean_spearman: float


@dataclass(frozen=True)
class HiddenContextResult(Artifact):
    """``training/hidden_context.json``: reward models on rater-drawn preferences, against the lexicon."""

    config: dict[str, Any]
    read_at: str  # where the reward models read a text: "eos" or "last_token"
    n_train_pairs: int
    n_test_pairs: int
    n_words: int
    models: dict[str, RewardModelFit]  # by kind
    per_word_fit: PerWordFit
    seconds: float

    DIR, FILE, FIGURES = "training", "hidden_context.json", {"fits": "hidden_context.png"}
