"""Does a model know sentiment? A ridge probe for each word's VADER valence.

The probe reads the residual stream of one-sentence reviews at the sentiment word
(and, separately, at the review's last token before the rating, where valence has to
be carried through context). It is fitted on the examples of 70% of the sentiment
words and scored on the other 30%: a probe scored on words it was fitted on can look
good on a random network (it memorises the embedding), one scored on unseen words
cannot. The embedding alone and a randomly initialised copy of the model are the
baselines.
"""

from __future__ import annotations

import random
import time

import numpy as np
from jaxtyping import Float
from torch import Tensor
from transformers import AutoModelForCausalLM, PreTrainedTokenizerBase

from analysis.activations import activations_at
from probes.config import ValenceProbeConfig  # noqa: F401  (re-exported: callers import it from here)
from probes.metrics import fit_ridge, fitted_rank_metrics
from probes.results import FittedRankMetrics, ValenceBars, ValenceProbeResult, ValenceProbes, ValenceSummary
from rlhf.hooked import HookedModel, load_hf, to_hooked
from rlhf.organisms.sentiment import load_organism
from rlhf.plots import save_lines
from rlhf.rundir import RunDir
from rlhf.seeding import seeded


def _hooks(n_layers: int) -> list[str]:
    return ["blocks.0.hook_resid_pre"] + [f"blocks.{layer}.hook_resid_post" for layer in range(n_layers)]


def _label(hook: str) -> str:
    return "embedding" if hook == "blocks.0.hook_resid_pre" else f"layer {hook.split('.')[1]}"


def token_position(tokenizer: PreTrainedTokenizerBase, words: tuple[str, ...], index: int) -> int:
    """Token index of the last token of ``words[index]`` in the tokenised text, for any
    tokenizer (a word may be several sub-word tokens; BOS may or may not be prepended)."""
    return len(tokenizer(" ".join(words[: index + 1]))["input_ids"]) - 1


def _held_out_tau(
    features: Float[Tensor, "n d"], words: list[str], valence: dict[str, float], train_words: set[str]
) -> FittedRankMetrics:
    """Fit on examples of the training words; Kendall tau etc. over the held-out words'
    mean predictions."""
    x = features.numpy()
    y = np.array([valence[w] for w in words], dtype=float)
    is_train = np.array([w in train_words for w in words])
    probe = fit_ridge(x[is_train], y[is_train])
    pred = probe.predict(x[~is_train])
    held = [w for w, t in zip(words, is_train) if not t]
    by_word: dict[str, list[float]] = {}
    for w, p in zip(held, pred):
        by_word.setdefault(w, []).append(float(p))
    names = sorted(by_word)
    return fitted_rank_metrics(np.array([np.mean(by_word[w]) for w in names], dtype=float),
                               np.array([valence[w] for w in names], dtype=float), probe)


def probe_model(model: HookedModel, run_dir: RunDir, cfg: ValenceProbeConfig) -> ValenceProbes:
    """Held-out-word metrics per hook, at the word and at the review's last token."""
    organism = load_organism(run_dir)
    rng = random.Random(cfg.seed)
    vocab = list(organism.sentiment_words)
    rng.shuffle(vocab)
    train_words = set(vocab[: int(cfg.train_fraction * len(vocab))])
    texts, word_pos, end_pos, words = [], [], [], []
    for w in organism.sentiment_words:
        for review in organism.reviews(cfg.examples_per_word, seed=rng.randrange(2**31), n_sentences=1):
            slot = review.sentiment_positions[0]
            variant = organism.with_word(review, slot, w)
            texts.append(variant.text)
            word_pos.append(token_position(model.tokenizer, variant.words, slot))
            end_pos.append(token_position(model.tokenizer, variant.words, variant.end_position))
            words.append(w)
    hooks = _hooks(model.cfg.n_layers)
    at_word = activations_at(model, texts, word_pos, hooks)
    at_end = activations_at(model, texts, end_pos, hooks)
    return ValenceProbes(
        word={h: _held_out_tau(at_word[h], words, organism.valence, train_words) for h in hooks},
        last_token={h: _held_out_tau(at_end[h], words, organism.valence, train_words) for h in hooks},
        n_train_words=len(train_words),
        n_held_out_words=len(vocab) - len(train_words),
        n_examples=len(texts),
    )


def valence_probe(cfg: ValenceProbeConfig, run_dir: RunDir) -> ValenceProbeResult:
    """Stage: probe the trained model and a randomly initialised copy; write
    ``probes/valence_<model>.json`` and a per-layer plot, and check the bars."""
    started = time.time()
    path = run_dir.model(cfg.model)
    hf = load_hf(path)
    trained = probe_model(to_hooked(hf, tokenizer=path), run_dir, cfg)
    with seeded(cfg.seed):  # HF's initialisation takes no generator
        random_hf = AutoModelForCausalLM.from_config(hf.config)
    random_init = probe_model(to_hooked(random_hf, tokenizer=path), run_dir, cfg)
    hooks = list(trained.word)
    embedding = "blocks.0.hook_resid_pre"
    layers = [h for h in hooks if h != embedding]
    best_word = max(layers, key=lambda h: trained.word[h].kendall_tau)
    best_end = max(layers, key=lambda h: trained.last_token[h].kendall_tau)
    word_tau, embedding_tau = trained.word[best_word].kendall_tau, trained.word[embedding].kendall_tau
    last_token_tau = trained.last_token[best_end].kendall_tau
    summary = ValenceSummary(
        best_word_hook=best_word, word_tau=word_tau, embedding_tau=embedding_tau, best_last_token_hook=best_end,
        last_token_tau=last_token_tau, random_init_word_tau=max(random_init.word[h].kendall_tau for h in layers),
        passes=bool(word_tau >= cfg.min_word_tau and word_tau > embedding_tau and last_token_tau >= cfg.min_last_token_tau),
    )
    result = ValenceProbeResult(model=cfg.model, summary=summary, trained=trained, random_init=random_init,
                                bars=ValenceBars(word_tau=cfg.min_word_tau, last_token_tau=cfg.min_last_token_tau),
                                seconds=time.time() - started)
    result.save(run_dir)
    x = list(range(len(hooks)))
    save_lines(
        ValenceProbeResult.figure(run_dir, "layers", model=cfg.model),
        {
            "at the word": (x, [trained.word[h].kendall_tau for h in hooks]),
            "at the last token": (x, [trained.last_token[h].kendall_tau for h in hooks]),
            "random init, at the word": (x, [random_init.word[h].kendall_tau for h in hooks]),
        },
        title=f"Valence probe on held-out words ({cfg.model}); 0 = embedding",
        xlabel="residual stream after layer", ylabel="Kendall tau",
        hlines={f"bar {cfg.min_word_tau}": cfg.min_word_tau},
    )
    return result
