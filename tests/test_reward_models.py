"""DPL losses on hand-computed values, the reward-model trainers, and bad preference data."""

import math

import pytest
import torch
from transformers import GPTNeoXConfig, GPTNeoXForSequenceClassification

from rlhf.errors import UserError
from rlhf.reward_models import (
    DistributionalRewardTrainer,
    categorical_loss,
    categorical_preference,
    check_preferences,
    dpl_r_squared,
    mean_and_std,
    mean_and_variance_loss,
)
from rlhf.rundir import read_json

ONE = math.log(math.e - 1)  # softplus(ONE) == 1


def test_mean_and_variance_loss_by_hand():
    chosen = torch.tensor([[1.0, ONE], [0.0, ONE], [2.0, 0.0]])
    rejected = torch.tensor([[0.0, ONE], [0.0, 5.0], [0.0, 0.0]])
    loss = mean_and_variance_loss(chosen, rejected)
    z = 1 / math.sqrt(2)
    assert loss[0].item() == pytest.approx(math.log1p(math.exp(-z * math.sqrt(2 * math.pi))), rel=1e-5)
    assert loss[1].item() == pytest.approx(math.log(2), rel=1e-5)  # equal means: z = 0 whatever the spreads
    s = math.log(2)  # softplus(0)
    z = 2 / math.sqrt(2 * s * s)
    assert loss[2].item() == pytest.approx(math.log1p(math.exp(-z * math.sqrt(2 * math.pi))), rel=1e-5)


def test_categorical_loss_by_hand_with_ties():
    big = 30.0
    certain_high, certain_low, even = [[-big, big]], [[big, -big]], [[0.0, 0.0]]
    t = torch.tensor
    assert categorical_preference(t(certain_high), t(certain_low)).item() == pytest.approx(1.0)
    assert categorical_preference(t(even), t(even)).item() == pytest.approx(0.5)  # 0.25 + half of the 0.5 tie mass
    assert categorical_preference(t(even), t(certain_low)).item() == pytest.approx(0.75)
    assert categorical_preference(t(certain_low), t(certain_low)).item() == pytest.approx(0.5)  # a sure tie
    assert categorical_loss(t(even), t(certain_low)).item() == pytest.approx(-math.log(0.75), rel=1e-5)
    mean, std = mean_and_std("categorical", t(even))
    assert mean.item() == pytest.approx(0.5) and std.item() == pytest.approx(0.5)


def test_r_squared_splits_observed_and_hidden_variance():
    means = torch.tensor([0.0, 2.0])  # variance 2 (unbiased)
    assert dpl_r_squared(means, torch.tensor([0.0, 0.0])) == pytest.approx(1.0)
    assert dpl_r_squared(means, torch.tensor([math.sqrt(2), math.sqrt(2)])) == pytest.approx(0.5)


def test_bad_preference_data_is_named():
    with pytest.raises(UserError, match="row 1 has chosen == rejected"):
        check_preferences([{"chosen": "a", "rejected": "b"}, {"chosen": "c", "rejected": "c"}])
    with pytest.raises(UserError, match="row 0 has no rejected column"):
        check_preferences([{"chosen": "a", "prompt": "x"}])
    with pytest.raises(UserError, match="no preference pairs"):
        check_preferences([])


def test_a_reward_model_with_the_wrong_number_of_outputs_is_refused():
    cfg = GPTNeoXConfig(vocab_size=32, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                        num_labels=1)
    with pytest.raises(UserError, match="mean_variance reward model needs 2 outputs, but the model has num_labels=1"):
        DistributionalRewardTrainer(kind="mean_variance", model=GPTNeoXForSequenceClassification(cfg))


def test_hidden_context_reward_models_on_the_tiny_study(tiny_run):
    _, run_dir, _ = tiny_run
    r = read_json(run_dir.training / "hidden_context.json")
    assert set(r["models"]) == {"bradley_terry", "mean_variance", "categorical"}
    for kind, m in r["models"].items():
        # Trained from a random head (50%), each model orders held-out rater-labelled pairs well above chance,
        # and its per-word means follow the lexicon's.
        assert m["pairwise_accuracy"] > 0.65, kind
        assert m["mean_vs_lexicon_mean_spearman"] > 0.5, kind
        assert 0 <= m["r_squared"] <= 1
    assert len(r["models"]["categorical"]["distributions"]["most disputed"]["probabilities"]) == 10
    assert "hidden context" in (run_dir.report / "index.html").read_text().lower()


def test_rater_preferences_over_a_word_subset():
    from rlhf.errors import UserError
    from rlhf.hidden_context import rater_preferences
    from rlhf.organisms.sentiment import SentimentConfig, SentimentOrganism

    organism = SentimentOrganism(SentimentConfig(n_positive=100, n_negative=100))
    pairs = rater_preferences(organism, 500, seed=0, n_words=12)
    words = {p[k] for p in pairs for k in ("chosen_word", "rejected_word")}
    assert len(words) == 12 and all(p["chosen_rating"] > p["rejected_rating"] for p in pairs)
    assert rater_preferences(organism, 50, seed=0, n_words=12) == pairs[:50]  # seeded: same words, same pairs
    with pytest.raises(UserError, match="n_words must be between 2 and 200"):
        rater_preferences(organism, 10, seed=0, n_words=1)
