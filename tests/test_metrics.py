import numpy as np
import pytest

from probes.metrics import ALPHAS, fit_ridge, rank_metrics, ridge_alpha


def test_perfect_and_reversed_rankings():
    truth = np.array([-2.0, -1.0, 0.5, 3.0])
    up = rank_metrics(truth * 2 + 1, truth)
    assert up.kendall_tau == pytest.approx(1.0) and up.pairwise_accuracy == 1.0
    down = rank_metrics(-truth, truth)
    assert down.kendall_tau == pytest.approx(-1.0) and down.sign_accuracy == 0.0


def test_partial_agreement():
    m = rank_metrics(np.array([1.0, 3.0, 2.0, 4.0]), np.array([1.0, 2.0, 3.0, 4.0]))
    assert m.pairwise_accuracy == pytest.approx(5 / 6)
    assert m.kendall_tau == pytest.approx(4 / 6)
    assert m.n == 4


def test_constant_predictions_score_zero_and_bad_shapes_fail():
    assert rank_metrics(np.zeros(5), np.arange(5.0)).kendall_tau == 0.0
    with pytest.raises(ValueError):
        rank_metrics(np.zeros(4), np.zeros(5))


def test_one_ridge_set_up_chooses_alpha_from_its_grid_or_takes_the_given_one():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 5))
    y = x @ np.array([1.0, -2.0, 0.0, 0.5, 0.0]) + 0.1 * rng.normal(size=60)
    chosen = fit_ridge(x, y)
    assert ridge_alpha(chosen) in ALPHAS
    assert np.corrcoef(chosen.predict(x), y)[0, 1] > 0.99
    assert ridge_alpha(fit_ridge(x, y, alpha=3.0)) == 3.0
