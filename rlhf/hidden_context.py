"""Real hidden context: preferences labelled by one randomly drawn VADER rater.

The VADER lexicon keeps each word's ten individual human ratings. Two one-sentence
reviews that differ in one sentiment word are compared by drawing one rating of each
word, as if a single annotator had judged the pair; words the raters disagree about
produce noisy preferences. A Bradley-Terry model can only average that away; the DPL
models (mean and variance, categorical) can say how much each word is disputed, and
that spread is checked against the raters' standard deviation in the lexicon.
"""

from __future__ import annotations

import random
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch
from jaxtyping import Float
from scipy import stats

from rlhf.config import HiddenContextConfig  # noqa: F401  (re-exported: callers import it from here)
from rlhf.errors import UserError
from rlhf.lexicon import load_lexicon
from rlhf.organisms.sentiment import SentimentOrganism, load_organism
from rlhf.plots import plt, save_figure
from rlhf.results import (
    CategoricalDistribution,
    HiddenContextResult,
    PerWordFit,
    RewardModelFit,
    WordSpreads,
)
from rlhf.reward_models import (
    dpl_r_squared,
    head,
    mean_and_variance_loss,
    outputs,
    score,
    train_reward_model,
)
from rlhf.rundir import RunDir
from rlhf.tokenizer import load_tokenizer
from rlhf.training import is_main_process


def sentence(review_words: tuple[str, ...], slot: int) -> str:
    """The review up to and including its sentiment word: the reward model reads its last token.
    A 4-layer, 128-wide model keeps which word it read at the word itself (a linear read-out names
    75% of 60 words in unseen sentences) but not at an EOS after the sentence (3%) or right after
    the word (9%), and a word's spread can only be learned where the word can be told apart."""
    return " ".join(review_words[: slot + 1])


def rater_preferences(organism: SentimentOrganism, n: int, seed: int, n_words: int = 0) -> list[dict]:
    """``n`` pairs of one-sentence reviews differing in one sentiment word (among ``n_words`` drawn
    words, or all); each word's rating is drawn from its ten raters, the higher one is chosen,
    ties are skipped."""
    lexicon = load_lexicon()
    rng = random.Random(seed)
    words = list(organism.sentiment_words)
    if n_words:
        if not 2 <= n_words <= len(words):
            raise UserError(f"hidden_context.n_words must be between 2 and {len(words)} (or 0 for all), got {n_words}")
        words = rng.sample(words, n_words)
    pairs: list[dict] = []
    while len(pairs) < n:
        review = organism.sample_review(rng, n_sentences=1)
        slot = review.sentiment_positions[0]
        a, b = rng.sample(words, 2)
        ra, rb = rng.choice(lexicon[a].ratings), rng.choice(lexicon[b].ratings)
        if ra == rb:
            continue
        (wc, rc), (wr, rr) = sorted(((a, ra), (b, rb)), key=lambda t: -t[1])
        text = {w: sentence(organism.with_word(review, slot, w).words, slot) for w in (a, b)}
        pairs.append({"chosen": text[wc], "rejected": text[wr], "chosen_word": wc, "rejected_word": wr,
                      "chosen_rating": rc, "rejected_rating": rr})
    return pairs


def word_contexts(organism: SentimentOrganism, words: list[str], per_word: int, seed: int) -> dict[str, list[str]]:
    rng = random.Random(seed)
    out = {}
    for w in words:
        reviews = [organism.sample_review(rng, n_sentences=1) for _ in range(per_word)]
        out[w] = [sentence(organism.with_word(r, r.sentiment_positions[0], w).words, r.sentiment_positions[0])
                  for r in reviews]
    return out


def hidden_context_stage(cfg: HiddenContextConfig, run_dir: RunDir) -> HiddenContextResult | None:
    """Stage: base, mean-and-variance and categorical reward models on rater-drawn preferences.
    None when disabled, and in the other processes of a launch."""
    if not cfg.enabled:
        return None
    started = time.time()
    organism = load_organism(run_dir)
    lexicon = load_lexicon()
    pairs = rater_preferences(organism, cfg.n_pairs, cfg.seed, cfg.n_words)
    n_test = int(round(len(pairs) * cfg.held_out_fraction))
    train, test = pairs[n_test:], pairs[:n_test]
    seen = sorted({p[k] for p in train for k in ("chosen_word", "rejected_word")})
    contexts = word_contexts(organism, seen, cfg.contexts_per_word, cfg.seed + 1)
    tokenizer = load_tokenizer(run_dir.base)
    lex_mean = np.array([lexicon[w].valence for w in seen])
    lex_std = np.array([lexicon[w].std for w in seen])
    fits: dict[str, RewardModelFit] = {}
    for kind in cfg.kinds:
        epochs = {"bradley_terry": cfg.bradley_terry_epochs, "categorical": cfg.categorical_epochs}
        rm_cfg = replace(cfg.reward_model, kind=kind, epochs=epochs.get(kind, cfg.reward_model.epochs))
        model = train_reward_model(rm_cfg, run_dir.base, tokenizer, train, run_dir.model(f"reward_{kind}"))
        if not is_main_process():  # the other processes of a launch only train
            continue
        c_mean, _ = score(model, tokenizer, [p["chosen"] for p in test], kind)
        r_mean, _ = score(model, tokenizer, [p["rejected"] for p in test], kind)
        texts = [t for w in seen for t in contexts[w]]
        means, stds = score(model, tokenizer, texts, kind)
        per = cfg.contexts_per_word
        word_mean = means.reshape(len(seen), per).mean(1).numpy()
        word_std = stds.reshape(len(seen), per).mean(1).numpy()
        by_lexicon = np.array([lexicon[p["chosen_word"]].valence > lexicon[p["rejected_word"]].valence for p in test])
        distributional = head(kind).distributional
        fits[kind] = RewardModelFit(
            pairwise_accuracy=float((c_mean > r_mean).float().mean()),  # against the drawn raters' labels
            agrees_with_lexicon_means=float(((c_mean > r_mean).numpy() == by_lexicon).mean()),
            mean_vs_lexicon_mean_spearman=float(stats.spearmanr(word_mean, lex_mean).statistic),
            r_squared=dpl_r_squared(means, stds),
            std_vs_lexicon_std_spearman=float(stats.spearmanr(word_std, lex_std).statistic) if distributional else None,
            words=WordSpreads(word=tuple(seen), learned_mean=tuple(word_mean.tolist()),
                              learned_std=tuple(word_std.tolist()), lexicon_mean=tuple(lex_mean.tolist()),
                              lexicon_std=tuple(lex_std.tolist())) if distributional else None,
            distributions=_distributions(model, tokenizer, contexts, seen, lexicon) if kind == "categorical" else None,
        )
    if not is_main_process():
        return None
    fit = per_word_fit(train, seen, lex_std, lex_mean)
    _plot(fits, HiddenContextResult.figure(run_dir, "fits"))
    result = HiddenContextResult(
        config=asdict(cfg), read_at=cfg.reward_model.read_at, n_train_pairs=len(train), n_test_pairs=len(test),
        n_words=len(seen), models=fits, per_word_fit=fit, seconds=time.time() - started)
    result.save(run_dir)
    return result


def per_word_fit(train: list[dict], words: list[str], lex_std: Float[np.ndarray, " words"],
                 lex_mean: Float[np.ndarray, " words"], steps: int = 1500) -> PerWordFit:
    """The reference: one free (mean, spread) per word fitted with the same loss on the same pairs.
    It bounds what any model can read from this much data (no text, no sharing between words).
    Deterministic: the parameters start at zero and every step sees every pair."""
    index = {w: i for i, w in enumerate(words)}
    c = torch.tensor([index[p["chosen_word"]] for p in train])
    r = torch.tensor([index[p["rejected_word"]] for p in train])
    params = torch.zeros(len(words), 2, requires_grad=True)
    opt = torch.optim.Adam([params], lr=0.05)
    for _ in range(steps):
        opt.zero_grad()
        mean_and_variance_loss(params[c], params[r]).mean().backward()
        opt.step()
    mean, std = params[:, 0].detach().numpy(), torch.nn.functional.softplus(params[:, 1]).detach().numpy()
    return PerWordFit(std_vs_lexicon_std_spearman=float(stats.spearmanr(std, lex_std).statistic),
                      mean_vs_lexicon_mean_spearman=float(stats.spearmanr(mean, lex_mean).statistic))


def _distributions(model, tokenizer, contexts: dict[str, list[str]], seen: list[str],  # noqa: ANN001
                   lexicon: dict) -> dict[str, CategoricalDistribution]:
    """The categorical model's predicted distribution for the most positive, most negative and most disputed words."""
    picks = {"most positive": max(seen, key=lambda w: lexicon[w].valence),
             "most negative": min(seen, key=lambda w: lexicon[w].valence),
             "most disputed": max(seen, key=lambda w: lexicon[w].std)}
    out = {}
    for label, w in picks.items():
        p = outputs(model, tokenizer, contexts[w]).softmax(-1).mean(0)
        out[label] = CategoricalDistribution(word=w, lexicon_mean=lexicon[w].valence, lexicon_std=lexicon[w].std,
                                             probabilities=tuple(p.tolist()))
    return out


def _plot(fits: dict[str, RewardModelFit], path: Path) -> None:
    kinds = [k for k in ("mean_variance", "categorical") if k in fits]
    if not kinds:
        return
    fig, axes = plt.subplots(1, len(kinds), figsize=(4.5 * len(kinds), 3.8), dpi=100, squeeze=False)
    for ax, kind in zip(axes[0], kinds):
        w, rho = fits[kind].words, fits[kind].std_vs_lexicon_std_spearman
        ax.scatter(w.lexicon_std, w.learned_std, s=6, alpha=0.5)
        ax.set(title=f"{kind}: Spearman {rho:.2f}", xlabel="raters' std (VADER lexicon)", ylabel="learned spread")
    save_figure(fig, path)
