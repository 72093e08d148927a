"""How a probe's per-word predictions rank against VADER."""

from __future__ import annotations

from dataclasses import dataclass

NAN = float("nan")


@dataclass(frozen=True)
class RankMetrics:
    """How well predictions rank the truth (``probes.metrics.rank_metrics``). A part with
    too few points to rank (fewer than 3 words of one polarity) holds NaN and its size."""

    kendall_tau: float
    spearman: float
    sign_accuracy: float = NAN
    pairwise_accuracy: float = NAN
    n: int = 0


@dataclass(frozen=True)
class FittedRankMetrics(RankMetrics):
    """The ranking of a fitted ridge probe, with the penalty cross-validation chose."""

    alpha: float = NAN
