"""Agreement between predicted and true per-token rewards (valences), and the one ridge
set-up every probe of the suite fits."""

from __future__ import annotations

import numpy as np
from jaxtyping import Float
from scipy import stats
from sklearn.linear_model import Ridge, RidgeCV
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from probes.results import FittedRankMetrics, RankMetrics

# The ridge penalties cross-validation chooses from (efficient leave-one-out), for every probe.
ALPHAS = np.logspace(-2, 5, 15)


def ridge(alpha: float | None = None) -> Pipeline:
    """Standardised features into a ridge regression: ``alpha`` fixed, or chosen from ``ALPHAS``
    by leave-one-out error when None."""
    return make_pipeline(StandardScaler(), Ridge(alpha=alpha) if alpha is not None else RidgeCV(alphas=ALPHAS))


def fit_ridge(x: Float[np.ndarray, "n f"], y: Float[np.ndarray, " n"], alpha: float | None = None) -> Pipeline:
    return ridge(alpha).fit(x, y)


def ridge_alpha(probe: Pipeline) -> float:
    """The penalty a fitted ``ridge`` pipeline used."""
    last = probe[-1]
    return float(last.alpha_ if hasattr(last, "alpha_") else last.alpha)


def rank_metrics(predicted: Float[np.ndarray, " n"], truth: Float[np.ndarray, " m"]) -> RankMetrics:
    """Kendall tau, Spearman rho, sign accuracy and pairwise (ordering) accuracy (n == m, checked here
    so that a mismatch is a ValueError that names both shapes)."""
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
    return RankMetrics(
        kendall_tau=0.0 if constant else float(stats.kendalltau(predicted, truth).statistic),
        spearman=0.0 if constant else float(stats.spearmanr(predicted, truth).statistic),
        sign_accuracy=float(np.mean(np.sign(predicted[nonzero]) == np.sign(truth[nonzero]))) if nonzero.any() else float("nan"),
        pairwise_accuracy=float(np.mean(np.sign(diff_p[upper]) == np.sign(diff_t[upper]))),
        n=int(len(truth)),
    )


def fitted_rank_metrics(predicted: Float[np.ndarray, " n"], truth: Float[np.ndarray, " n"], probe: Pipeline) -> FittedRankMetrics:
    """``rank_metrics`` with the penalty the fitted ``ridge`` pipeline used."""
    m = rank_metrics(predicted, truth)
    return FittedRankMetrics(m.kendall_tau, m.spearman, m.sign_accuracy, m.pairwise_accuracy, m.n, ridge_alpha(probe))
