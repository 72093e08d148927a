"""The implicit-reward probe: can a linear map read the reward a model learned?

    python -m probes.fit_linear_reward --run-dir runs/sentiment [--model policy] [--features sae]

Contrastive triples (one sentence in a positive, a negative and a neutral variant) are
read at the swapped word by the *same* model whose SAEs encode them. A ridge regression
(scikit-learn, alpha by cross-validation) maps the concatenated SAE codes of the chosen
layers (or the raw activations) to a target: the paper's (the signed distance of a
variant's feature vector from its neutral variant's) or the true utility (the word's
VADER valence). Its per-word predictions are then ranked against VADER under two
protocols: the paper's (80/20 split of triples, so test words may have been seen) and
held-out words (the probe never saw the test words). An untrained probe (random weights),
the raw-activation probe and an embedding-only probe are scored beside it.

With ``--target next_utility`` it fits the writer probe instead (``probes/writer.py``): from the
model's features at every position of its own completions to the expected utility of the next
token, on held-out prompts.
"""

from __future__ import annotations

import argparse
import random
import sys
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
from transformer_lens import HookedTransformer

from analysis.activations import activations_at
from analysis.dictionaries import load_sae
from analysis.results import ActivationIndex, SAEIndex
from probes.config import LinearRewardConfig, WriterProbeConfig
from probes.contrastive import ContrastiveSet, contrastive_set, sentiment_pools
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
from rlhf.hooked import to_hooked
from rlhf.lexicon import valence
from rlhf.rundir import RunDir

EMBEDDING_HOOK = "blocks.0.hook_resid_pre"
TOP_FEATURES = 100  # kept in the result: enough for the ablation's largest k
MIN_TRIPLES = 20


# -- features -------------------------------------------------------------------------------


def layer_hooks(run_dir: RunDir, model: str, layers: tuple[int, ...] | None, size: str) -> list[str]:
    """The cached hooks of the requested layers, checked to have SAEs for ``model``."""
    if not ActivationIndex.exists(run_dir) or not SAEIndex.exists(run_dir):
        raise UserError(f"{run_dir.root} has no SAEs yet: run the study up to the dictionaries stage first "
                        f"(python -m study run --config <config> --until dictionaries)")
    index = ActivationIndex.load(run_dir)
    by_layer = dict(zip(index.layers, index.hooks))
    wanted = list(layers) if layers else list(index.layers)
    missing = [layer for layer in wanted if layer not in by_layer]
    if missing:
        raise UserError(f"layer(s) {missing} are not in this study; its SAEs cover layers {sorted(by_layer)}")
    hooks = [by_layer[layer] for layer in wanted]
    absent = [h for h in hooks if not (run_dir.sae(model, h, size) / "cfg.json").exists()]
    if absent:
        trained = sorted({entry.model for entry in SAEIndex.load(run_dir).saes})
        raise UserError(f"no {size} SAE for model {model!r} at {', '.join(absent)} (models with SAEs: {', '.join(trained)})")
    return hooks


def last_token_positions(model: HookedTransformer, texts: list[str]) -> list[int]:
    return [len(model.tokenizer(t)["input_ids"]) - 1 for t in texts]


@torch.no_grad()
def read_features(model: HookedTransformer, run_dir: RunDir, model_name: str, hooks: list[str], data: ContrastiveSet,
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


def fit_linear_reward(run_dir: RunDir | str | Path, cfg: LinearRewardConfig | None = None,
                      model: HookedTransformer | None = None) -> LinearRewardResult:
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


# -- command line -------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    defaults = LinearRewardConfig()
    p = argparse.ArgumentParser(
        prog="python -m probes.fit_linear_reward", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run-dir", required=True, help="a study run directory with SAEs (runs/<study>)")
    p.add_argument("--model", default=defaults.model, help="whose activations and SAEs to read: policy (default) or base")
    p.add_argument("--features", choices=("sae", "activations"), default=defaults.features,
                   help="SAE codes of the chosen layers, concatenated (default), or the raw activations at the same hooks")
    p.add_argument("--layers", type=int, nargs="+", help="layers to read (default: the study's chosen layers)")
    p.add_argument("--target", choices=("paper", "utility", "next_utility"), default=defaults.target,
                   help="utility: the swapped word's VADER valence (default); paper: signed distance of the variant's "
                        "feature vector from its neutral variant's; next_utility: the writer probe (probes/writer.py), "
                        "at every position of the model's own completions of held-out prompts, the expected utility "
                        "of the next token")
    p.add_argument("--alpha", type=float, help="ridge penalty, > 0 (default: chosen by cross-validation)")
    p.add_argument("--size", default=defaults.size, help="SAE width to use, as the dictionaries stage names it (default 1x)")
    p.add_argument("--triples", type=int, default=defaults.n_triples,
                   help=f"contrastive triples per protocol, at least {MIN_TRIPLES} (default {defaults.n_triples})")
    p.add_argument("--prompts", type=int, default=WriterProbeConfig().n_prompts,
                   help=f"next_utility only: held-out prompts completed and read (default {WriterProbeConfig().n_prompts})")
    p.add_argument("--seed", type=int, default=defaults.seed,
                   help="seed of the triples and the splits (next_utility: of the prompts, sampling and split) (default 0)")
    p.add_argument("--out", type=Path, help="JSON file to write (default: <run-dir>/probes/linear_reward_<model>_<features>.json; "
                                            "next_utility: <run-dir>/probes/writer_probe_<model>_<features>.json)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.alpha is not None and not args.alpha > 0:
            raise UserError(f"--alpha must be > 0, got {args.alpha}")
        if args.seed < 0:
            raise UserError(f"--seed must be >= 0, got {args.seed}")
        if args.target == "next_utility":
            return _writer_main(args)
        cfg = LinearRewardConfig(model=args.model, features=args.features, layers=tuple(args.layers) if args.layers else None,
                                 target=args.target, alpha=args.alpha, size=args.size, n_triples=args.triples, seed=args.seed)
        run_dir = RunDir(args.run_dir)
        result = fit_linear_reward(run_dir, cfg)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = result.save(run_dir, args.out)
    print(f"implicit-reward probe: model {args.model}, {args.features} at {', '.join(result.hooks)} "
          f"({result.n_features} features), target {args.target}")
    print(result.notes[0])
    print(result.table())
    print("top features: " + ", ".join(f"{f.hook.split('.')[1]}:{f.feature} ({f.coefficient:+.3f})"
                                      for f in result.top_features[:8]))
    print(f"written: {out}")
    return 0


def _writer_main(args: argparse.Namespace) -> int:
    from probes.writer import fit_writer_probe

    if args.prompts < 4:
        raise UserError(f"--prompts must be at least 4, got {args.prompts}")
    cfg = WriterProbeConfig(model=args.model, features=args.features, layers=tuple(args.layers) if args.layers else None,
                            size=args.size, n_prompts=args.prompts, alpha=args.alpha, seed=args.seed)
    run_dir = RunDir(args.run_dir)
    if not run_dir.root.is_dir():
        raise UserError(f"run directory {run_dir.root} does not exist")
    result = fit_writer_probe(run_dir, cfg)
    out = result.save(run_dir, args.out)
    print(f"writer probe: model {args.model}, {args.features} at {', '.join(result.hooks)} ({result.n_features} features), "
          f"target: expected utility of the next token")
    print(f"{result.n_prompts} prompts: {result.train_positions} training positions, {result.test_positions} held out")
    print(f"held-out Kendall tau {result.kendall_tau:.3f}, R^2 {result.r2:.3f}; untrained tau "
          f"{result.untrained_tau:.3f} ± {result.untrained_tau_std:.3f}, R^2 {result.untrained_r2:.3f}")
    print("top features: " + ", ".join(f"{f.hook.split('.')[1]}:{f.feature} ({f.coefficient:+.3f})"
                                      for f in result.top_features[:8]))
    print(f"written: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
