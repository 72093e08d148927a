"""The implicit-reward probe's fitting: features of contrastive triples read by a model and its own
SAEs, ridge regression onto a target, and per-word scores against VADER under two protocols.
``probes.fit_linear_reward`` is its entry point (from Python and the command line)."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from jaxtyping import Float, Int
from sklearn.metrics import r2_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from torch import Tensor

from analysis.activations import activations_at
from analysis.dictionaries import load_sae
from probes.config import MIN_TRIPLES, LinearRewardConfig
from probes.contrastive import ContrastiveSet, contrastive_set, sentiment_pools
from probes.features import EMBEDDING_HOOK, TOP_FEATURES, layer_hooks
from probes.metrics import fit_ridge, rank_metrics, ridge_alpha
from probes.results import (
    NAN,
    LinearRewardResult,
    PerWord,
    ProbeKind,
    ProbeMetrics,
    ProtocolResult,
    Protocols,
    RankMetrics,
    TopFeature,
)
from rlhf.errors import UserError
from rlhf.hooked import HookedModel, to_hooked
from rlhf.lexicon import valence
from rlhf.rundir import RunDir

# -- features -------------------------------------------------------------------------------


def last_token_positions(model: HookedModel, texts: list[str]) -> list[int]:
    return [len(model.tokenizer(t)["input_ids"]) - 1 for t in texts]


@torch.no_grad()
def read_features(model: HookedModel, run_dir: RunDir, model_name: str, hooks: list[str], data: ContrastiveSet,
                  size: str) -> dict[str, Float[Tensor, "n _"]]:
    """Raw activations and SAE codes of the chosen hooks (concatenated) and the embedding, at each variant's
    swapped word. The SAEs are the reading model's own."""
    acts = activations_at(model, data.texts, last_token_positions(model, data.texts), [*hooks, EMBEDDING_HOOK])
    codes = [load_sae(run_dir.sae(model_name, h, size)).encode(acts[h]) for h in hooks]
    return {"activations": torch.cat([acts[h] for h in hooks], dim=1), "sae": torch.cat(codes, dim=1),
            "embedding": acts[EMBEDDING_HOOK]}


def targets(data: ContrastiveSet, features: Float[Tensor, "n f"], kind: Literal["paper", "utility"]) -> Float[np.ndarray, " n"]:
    """The regression target of every variant: the word's VADER valence ("utility"), or the
    paper's signed distance from the neutral variant (+ for positive, - for negative, 0 for neutral)."""
    if kind == "utility":
        return np.array([valence(w) for w in data.words], dtype=float)
    f = features.reshape(data.n_triples, 3, -1)
    dist = torch.linalg.norm(f - f[:, 2:3], dim=-1)  # (triples, 3); the neutral column is 0
    sign = torch.tensor([1.0, -1.0, 0.0])
    return (dist * sign).reshape(-1).numpy()


# -- fitting and scoring ------------------------------------------------------------------------


@dataclass(frozen=True)
class WordScores:
    """Per-word mean predictions ranked against VADER, overall and per polarity."""

    all: RankMetrics
    positive: RankMetrics
    negative: RankMetrics
    per_word: PerWord


def word_metrics(words: list[str], predictions: Float[np.ndarray, " n"], kinds: list[str]) -> WordScores:
    """Per-word mean predictions (the positive and negative variants' words) ranked against VADER."""
    by_word: dict[str, list[float]] = {}
    for w, p, k in zip(words, predictions, kinds):
        if k != "neutral":
            by_word.setdefault(w, []).append(float(p))
    names = sorted(by_word)
    pred = np.array([np.mean(by_word[w]) for w in names], dtype=float)
    true = np.array([valence(w) for w in names], dtype=float)
    parts = {part: rank_metrics(pred[keep], true[keep]) if keep.sum() >= 3 else RankMetrics(NAN, NAN, n=int(keep.sum()))
             for part, keep in (("positive", true > 0), ("negative", true < 0))}
    return WordScores(rank_metrics(pred, true), parts["positive"], parts["negative"],
                      PerWord(tuple(names), tuple(true.tolist()), tuple(pred.tolist())))


def _score(kind: ProbeKind, features: str, train_x: Float[np.ndarray, "n f"], train_y: Float[np.ndarray, " n"],
           test_x: Float[np.ndarray, "m f"], test_y: Float[np.ndarray, " m"], test: ContrastiveSet,
           alpha: float | None) -> tuple[ProbeMetrics, Pipeline]:
    probe = fit_ridge(train_x, train_y, alpha)
    pred = probe.predict(test_x)
    w = word_metrics(test.words, pred, test.kinds)
    metrics = ProbeMetrics(kind=kind, features=features, all=w.all, positive=w.positive, negative=w.negative,
                           r2=float(r2_score(test_y, pred)), alpha=ridge_alpha(probe), per_word=w.per_word)
    return metrics, probe


def _mean_metrics(runs: list[RankMetrics]) -> RankMetrics:
    """The NaN-ignoring mean of each metric over runs (the size is the same in each)."""
    mean = {key: float(np.nanmean([getattr(r, key) for r in runs]))
            for key in ("kendall_tau", "spearman", "sign_accuracy", "pairwise_accuracy")}
    return RankMetrics(**mean, n=runs[0].n)


def _untrained(features: str, train_x: Float[np.ndarray, "n f"], test_x: Float[np.ndarray, "m f"],
               test_y: Float[np.ndarray, " m"], test: ContrastiveSet, seed: int, draws: int = 30) -> ProbeMetrics:
    """The null: probes with random weights on the standardised features, no fitting; the mean
    of each metric over ``draws`` weight vectors (one draw alone can align with a strong valence
    direction by chance, with either sign), with the spread of tau beside it."""
    x = StandardScaler().fit(train_x).transform(test_x)
    weights = np.random.default_rng(seed).normal(size=(draws, x.shape[1])) / np.sqrt(x.shape[1])
    runs = [word_metrics(test.words, x @ w, test.kinds) for w in weights]
    return ProbeMetrics(
        kind="untrained", features=features, all=_mean_metrics([r.all for r in runs]),
        positive=_mean_metrics([r.positive for r in runs]), negative=_mean_metrics([r.negative for r in runs]),
        r2=float(np.mean([r2_score(test_y, x @ w) for w in weights])), draws=draws,
        kendall_tau_std=float(np.std([r.all.kendall_tau for r in runs])))


def _split_words(run_dir: RunDir, fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Held-out words per polarity, so both polarities are tested."""
    rng = random.Random(seed)
    positive, negative, _ = sentiment_pools(run_dir)
    train, test = [], []
    for pool in (list(positive), list(negative)):
        rng.shuffle(pool)
        cut = int(round(len(pool) * (1 - fraction)))
        train += pool[:cut]
        test += pool[cut:]
    return train, test


def fit(run_dir: RunDir | str | Path, cfg: LinearRewardConfig | None = None,
                      model: HookedModel | None = None) -> LinearRewardResult:
    """Fit and score the probe under both protocols (``cfg``: the defaults when None); see the module
    docstring. Returns the result without saving it (the command line and the implicit_reward stage save it)."""
    started = time.time()
    cfg = cfg if cfg is not None else LinearRewardConfig()
    run_dir = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    if not run_dir.root.is_dir():
        raise UserError(f"run directory {run_dir.root} does not exist")
    hooks = layer_hooks(run_dir, cfg.model, cfg.layers, cfg.size)
    model = model or to_hooked(run_dir.model(cfg.model))
    if cfg.n_triples < MIN_TRIPLES or int(cfg.n_triples * cfg.test_fraction) < 5:
        raise UserError(f"{cfg.n_triples} triples are too few for a {cfg.test_fraction:.0%} test split; "
                        f"use at least {MIN_TRIPLES}")
    train_words, test_words = _split_words(run_dir, cfg.held_out_word_fraction, cfg.seed)
    n_test = max(5, int(round(cfg.n_triples * cfg.held_out_word_fraction)))
    paper_set = contrastive_set(run_dir, cfg.n_triples, cfg.seed)
    word_train = contrastive_set(run_dir, cfg.n_triples - n_test, cfg.seed + 1, train_words)
    word_test = contrastive_set(run_dir, n_test, cfg.seed + 2, test_words)
    if min(paper_set.n_triples, word_train.n_triples, word_test.n_triples) < 5:
        raise UserError(f"too few contrastive triples for the splits ({paper_set.n_triples} found); the corpus needs more "
                        "sentences with a sentiment word")
    everything = paper_set + word_train + word_test
    feats = read_features(model, run_dir, cfg.model, hooks, everything, cfg.size)
    x = {k: v.numpy().astype(np.float64) for k, v in feats.items()}
    y = targets(everything, feats[cfg.features], cfg.target)

    n_paper_rows = 3 * paper_set.n_triples
    order = np.random.default_rng(cfg.seed).permutation(paper_set.n_triples)
    n_paper_test = int(round(paper_set.n_triples * cfg.test_fraction))
    splits = {
        "paper": (paper_set.subset(sorted(int(t) for t in order[:n_paper_test])), _triple_rows(order[n_paper_test:]),
                  _triple_rows(order[:n_paper_test])),
        "held_out_words": (word_test, np.arange(n_paper_rows, n_paper_rows + 3 * word_train.n_triples),
                           np.arange(n_paper_rows + 3 * word_train.n_triples, len(everything.texts))),
    }
    protocols: dict[str, ProtocolResult] = {}
    fitted: dict[str, Pipeline] = {}
    for name, (test, tr, te) in splits.items():
        def score(kind: ProbeKind, features: str, tr: np.ndarray = tr, te: np.ndarray = te,
                  test: ContrastiveSet = test) -> tuple[ProbeMetrics, Pipeline]:
            return _score(kind, features, x[features][tr], y[tr], x[features][te], y[te], test, cfg.alpha)

        probe, fitted[name] = score("probe", cfg.features)
        protocols[name] = ProtocolResult(
            probe=probe,
            untrained=_untrained(cfg.features, x[cfg.features][tr], x[cfg.features][te], y[te], test, cfg.seed),
            raw_activations=score("raw_activations", "activations")[0] if cfg.features == "sae" else None,
            embedding_only=score("embedding_only", "embedding")[0],
        )
    coefs = fitted["held_out_words"][-1].coef_
    width = feats[cfg.features].shape[1] // len(hooks)
    top = tuple(TopFeature(hook=hooks[i // width], feature=int(i % width), coefficient=float(coefs[i]), index=int(i))
                for i in np.argsort(-coefs)[:TOP_FEATURES])
    held = protocols["held_out_words"].probe.per_word
    assert held is not None  # a fitted probe keeps its per-word predictions
    return LinearRewardResult(
        model=cfg.model, features=cfg.features, target=cfg.target, size=cfg.size, alpha=cfg.alpha,
        n_triples=cfg.n_triples, seed=cfg.seed, run_dir=str(run_dir.root), hooks=tuple(hooks),
        n_features=int(feats[cfg.features].shape[1]),
        protocols=Protocols(paper=protocols["paper"], held_out_words=protocols["held_out_words"]),
        top_features=top, scatter=held, seconds=time.time() - started,
        notes=(f"{paper_set.n_triples} triples (paper protocol); {word_train.n_triples} on {len(train_words)} training "
               f"words and {word_test.n_triples} on {len(test_words)} held-out words",),
    )


def _triple_rows(triples: Int[np.ndarray, " t"]) -> Int[np.ndarray, " rows"]:
    return np.array([3 * t + k for t in sorted(triples) for k in range(3)], dtype=np.int64)

