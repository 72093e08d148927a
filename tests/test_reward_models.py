"""DPL losses on hand-computed values, the reward-model trainers, and bad preference data."""

import math

import pytest
import torch
from scipy import stats
from transformers import GPTNeoXConfig, GPTNeoXForSequenceClassification

from rlhf.errors import UserError
from rlhf.results import HiddenContextResult
from rlhf.reward_models import (
    DistributionalRewardTrainer,
    categorical_loss,
    categorical_preference,
    check_preferences,
    dpl_r_squared,
    mean_and_std,
    mean_and_variance_loss,
)

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
    r = HiddenContextResult.load(run_dir)
    assert set(r.models) == {"bradley_terry", "mean_variance", "categorical"}
    for kind, m in r.models.items():
        # Trained from a random head (50%), each model orders held-out rater-labelled pairs well above chance,
        # and its per-word means follow the lexicon's.
        assert m.pairwise_accuracy > 0.65, kind
        assert m.mean_vs_lexicon_mean_spearman > 0.5, kind
        assert 0 <= m.r_squared <= 1
        assert (m.std_vs_lexicon_std_spearman is None) == (kind == "bradley_terry"), kind
    assert len(r.models["categorical"].distributions["most disputed"].probabilities) == 10
    assert "hidden context" in (run_dir.report / "index.html").read_text().lower()


def test_rater_preferences_over_a_word_subset():
    from rlhf.errors import UserError
    from rlhf.hidden_context import rater_preferences
    from rlhf.organisms.sentiment import SentimentConfig, SentimentOrganism

    organism = SentimentOrganism(SentimentConfig(n_positive=100, n_negative=100))
    pairs = rater_preferences(organism, 500, seed=0, n_words=12)
    words = {p[k] for p in pairs for k in ("chosen_word", "rejected_word")}
    assert len(words) == 12 and all(p["chosen_rating"] > p["rejected_rating"] for p in pairs)
    # Each alternative is the review up to its sentiment word, where the reward model reads it.
    assert all(p["chosen"].endswith(" " + p["chosen_word"]) and p["rejected"].endswith(" " + p["rejected_word"])
               for p in pairs)
    assert all(p["chosen"].rsplit(" ", 1)[0] == p["rejected"].rsplit(" ", 1)[0] for p in pairs)
    assert rater_preferences(organism, 50, seed=0, n_words=12) == pairs[:50]  # seeded: same words, same pairs
    with pytest.raises(UserError, match="n_words must be between 2 and 200"):
        rater_preferences(organism, 10, seed=0, n_words=1)


def test_the_head_reads_where_the_model_was_trained_to(tiny_run):
    from rlhf.reward_models import outputs
    from rlhf.tokenizer import load_tokenizer

    _, run_dir, _ = tiny_run
    tokenizer = load_tokenizer(run_dir.base)
    cfg = GPTNeoXConfig(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, num_labels=2, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    model = GPTNeoXForSequenceClassification(cfg).eval()
    text, longer = "the plot was good", "the plot was good and the acting was bad ."
    ids = tokenizer(text)["input_ids"]
    with torch.no_grad():
        at_eos = model(torch.tensor([ids + [tokenizer.eos_token_id]])).logits
        at_word = model(torch.tensor([ids])).logits
    # Scored in a padded batch, each text is read at its own last real token.
    assert torch.allclose(outputs(model, tokenizer, [text, longer])[:1], at_eos, atol=1e-5)
    model.config.reward_read_at = "last_token"
    assert torch.allclose(outputs(model, tokenizer, [text, longer])[:1], at_word, atol=1e-5)
    assert not torch.allclose(at_word, at_eos)


def test_the_mean_and_variance_model_learns_a_planted_spread(tiny_run, tmp_path):
    """Words with equal mean rewards but different annotator spreads: the model's learned spread orders them."""
    import random

    from rlhf.organisms.sentiment import load_organism
    from rlhf.reward_models import RewardModelConfig, score, train_reward_model
    from rlhf.tokenizer import load_tokenizer

    _, run_dir, _ = tiny_run
    organism = load_organism(run_dir)
    rng = random.Random(0)
    words = rng.sample(sorted(organism.sentiment_words), 8)
    # (mean, std) per word: at each of four means one calm and one disputed word.
    planted = {w: (m, s) for w, (m, s) in zip(words, [(m, s) for m in (-1.5, -0.5, 0.5, 1.5) for s in (0.2, 2.5)])}
    pairs = []
    while len(pairs) < 3000:
        a, b = rng.sample(words, 2)
        ra, rb = rng.gauss(*planted[a]), rng.gauss(*planted[b])
        c, r = (a, b) if ra > rb else (b, a)
        pairs.append({"chosen": f"the plot was {c}", "rejected": f"the plot was {r}"})
    tokenizer = load_tokenizer(run_dir.base)
    cfg = RewardModelConfig(kind="mean_variance", read_at="last_token", epochs=4, learning_rate=2e-3)
    model = train_reward_model(cfg, run_dir.base, tokenizer, pairs, tmp_path / "rm")
    mean, std = score(model, tokenizer, [f"the plot was {w}" for w in words], "mean_variance")
    calm, disputed = std[0::2], std[1::2]
    assert (disputed > calm).all(), (calm, disputed)
    means = mean.reshape(4, 2).mean(1)
    assert (means.diff() > 0).all(), means


def test_a_new_head_is_one_module_and_one_registry_entry(tiny_run, tmp_path, monkeypatch):
    """tests/head_example.py registered with one entry: configs accept its name (in hidden_context.kinds
    and as study:reward_hinge), and it trains a reward model that orders the organism's words by valence."""
    from rlhf.lexicon import valence
    from rlhf.organisms.sentiment import load_organism
    from rlhf.reward_kinds import REWARD_HEADS
    from rlhf.reward_models import RewardModelConfig, score, train_reward_model
    from rlhf.tokenizer import load_tokenizer
    from study.config import config_from_dict

    monkeypatch.setitem(REWARD_HEADS, "hinge", "tests.head_example:HINGE")
    cfg = config_from_dict({"hidden_context": {"kinds": ["hinge"]}, "policy": {"reward": "study:reward_hinge"}})
    assert cfg.hidden_context.kinds == ("hinge",)
    _, run_dir, _ = tiny_run
    words = sorted(load_organism(run_dir).sentiment_words)[:12]
    pairs = [{"chosen": f"the plot was {a}", "rejected": f"the plot was {b}"}
             for a in words for b in words if valence(a) > valence(b)]
    tokenizer = load_tokenizer(run_dir.base)
    rm = RewardModelConfig(kind="hinge", read_at="last_token", epochs=4, learning_rate=2e-3)
    model = train_reward_model(rm, run_dir.base, tokenizer, pairs, tmp_path / "rm")
    mean, std = score(model, tokenizer, [f"the plot was {w}" for w in words], "hinge")
    rho = stats.spearmanr(mean.numpy(), [valence(w) for w in words]).statistic
    assert rho > 0.8, rho
    assert float(std.abs().max()) == 0.0
