"""Does a model know sentiment? (``probes/valence_<model>.json``)."""

from __future__ import annotations

from dataclasses import dataclass

from probes.results.rankings import FittedRankMetrics
from rlhf.artifact import Artifact


@dataclass(frozen=True)
class ValenceProbes:
    """Held-out-word metrics per hook of one model (trained or randomly initialised)."""

    word: dict[str, FittedRankMetrics]  # hook -> read at the sentiment word
    last_token: dict[str, FittedRankMetrics]  # hook -> read at the review's last token
    n_train_words: int
    n_held_out_words: int
    n_examples: int


@dataclass(frozen=True)
class ValenceSummary:
    best_word_hook: str
    word_tau: float
    embedding_tau: float
    best_last_token_hook: str
    last_token_tau: float
    random_init_word_tau: float
    passes: bool


@dataclass(frozen=True)
class ValenceBars:
    word_tau: float
    last_token_tau: float


@dataclass(frozen=True)
class ValenceProbeResult(Artifact):
    """``probes/valence_<model>.json``: does ``model`` know sentiment? (``path(run)`` is the base model's)."""

    model: str
    summary: ValenceSummary
    trained: ValenceProbes
    random_init: ValenceProbes
    bars: ValenceBars
    seconds: float = 0.0

    DIR, FILE, KEY = "probes", "valence_{model}.json", {"model": "base"}
    FIGURES = {"layers": "valence_{model}.png"}  # the per-layer plot beside it
