"""Agreement between predicted and true per-token rewards (valences)."""

from __future__ import annotations

import numpy as np
from scipy import stats


def rank_metrics(predicted: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Kendall tau, Spearman rho, sign accuracy and pairwise (ordering) accuracy."""
    predicted, truth = np.asarray(predicted, float), np.asarray(truth, float)
    if predicted.shape != truth.shape or predicted.ndim != 1:
        raise ValueError(f"shapes differ: {predicted.shape} vs {truth.shape}")
    if len(truth) < 3:
        raise ValueError("need at least 3 points to compare rankings")
    diff_p = predicted[:, None] - predicted[None, :]
    diff_t = truth[:, None] - truth[None, :]
    upper = np.triu(np.ones_like(diff_t, dtype=bool), 1) & (diff_t != 0)
    nonzero = truth != 0
    # Constant predictions rank nothing: score them 0 rather than scipy's NaN.
    constant = bool(np.ptp(predicted) == 0)
    return {
        "kendall_tau": 0.0 if constant else float(stats.kendalltau(predicted, truth).statistic),
        "spearman": 0.0 if constant else float(stats.spearmanr(predicted, truth).statistic),
        "sign_accuracy": float(np.mean(np.sign(predicted[nonzero]) == np.sign(truth[nonzero]))) if nonzero.any() else float("nan"),
        "pairwise_accuracy": float(np.mean(np.sign(diff_p[upper]) == np.sign(diff_t[upper]))),
        "n": int(len(truth)),
    }
