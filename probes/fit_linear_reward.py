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
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from jaxtyping import Float
from sklearn.linear_model import Ridge, RidgeCV
from sklearn.metrics import r2_score
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import Tensor
from transformer_lens import HookedTransformer

from analysis.activations import activations_at
from analysis.dictionaries import load_sae
from probes.contrastive import ContrastiveSet, contrastive_set, sentiment_pools
from probes.metrics import rank_metrics
from rlhf.errors import UserError
from rlhf.hooked import to_hooked
from rlhf.lexicon import valence
from rlhf.rundir import RunDir, atomic_write_json, read_json

ALPHAS = np.logspace(-2, 5, 15)
EMBEDDING_HOOK = "blocks.0.hook_resid_pre"
TOP_FEATURES = 100  # kept in the result: enough for the ablation's largest k


@dataclass(frozen=True)
class LinearRewardConfig:
    model: str = "policy"  # whose activations and SAEs: "policy" or "base" (or any model of the study)
    features: Literal["sae", "activations"] = "sae"
    layers: tuple[int, ...] | None = None  # default: the study's chosen layers
    target: Literal["paper", "utility"] = "utility"
    alpha: float | None = None  # ridge penalty; None = chosen by cross-validation
    size: str = "1x"  # which SAE width
    n_triples: int = 1500  # per protocol
    test_fraction: float = 0.2  # the paper's split of triples
    held_out_word_fraction: float = 0.3
    seed: int = 0


@dataclass
class LinearRewardResult:
    """What ``fit_linear_reward`` returns and ``--out`` holds (``to_dict``)."""

    config: dict
    hooks: list[str]
    n_features: int
    protocols: dict[str, dict[str, dict]]  # protocol -> probe kind -> metrics
    top_features: list[dict]  # the TOP_FEATURES largest coefficients, best first (standardised units)
    scatter: dict[str, list]  # held-out words: word, valence, prediction
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    def table(self) -> str:
        """A plain-text table of the headline numbers, one row per protocol and probe."""
        cols = ("kendall_tau", "spearman", "sign_accuracy", "pairwise_accuracy")
        lines = [f"{'protocol':<15} {'probe':<22} {'tau':>7} {'tau+':>7} {'tau-':>7} {'rho':>7} {'sign':>6} {'pair':>6} {'R2':>7}"]
        for protocol, kinds in self.protocols.items():
            for kind, m in kinds.items():
                a, p, n = m["all"], m["positive"], m["negative"]
                lines.append(f"{protocol:<15} {kind:<22} {a[cols[0]]:7.3f} {p[cols[0]]:7.3f} {n[cols[0]]:7.3f} "
                             f"{a[cols[1]]:7.3f} {a[cols[2]]:6.3f} {a[cols[3]]:6.3f} {m['r2']:7.3f}")
        return "\n".join(lines)


# -- features -------------------------------------------------------------------------------


def layer_hooks(run_dir: RunDir, model: str, layers: tuple[int, ...] | None, size: str) -> list[str]:
    """The cached hooks of the requested layers, checked to have SAEs for ``model``."""
    index_path = run_dir.root / "activations" / "index.json"
    if not index_path.exists() or not (run_dir.root / "saes" / "index.json").exists():
        raise UserError(f"{run_dir.root} has no SAEs yet: run the study up to the dictionaries stage first "
                        f"(python -m study run --config <config> --until dictionaries)")
    index = read_json(index_path)
    by_layer = dict(zip(index["layers"], index["hooks"]))
    wanted = list(layers) if layers else list(index["layers"])
    missing = [layer for layer in wanted if layer not in by_layer]
    if missing:
        raise UserError(f"layer(s) {missing} are not in this study; its SAEs cover layers {sorted(by_layer)}")
    hooks = [by_layer[layer] for layer in wanted]
    absent = [h for h in hooks if not (run_dir.root / "saes" / model / h / size / "cfg.json").exists()]
    if absent:
        raise UserError(f"no {size} SAE for model {model!r} at {', '.join(absent)} "
                        f"(models with SAEs: {', '.join(sorted(p.name for p in (run_dir.root / 'saes').iterdir() if p.is_dir()))})")
    return hooks


def last_token_positions(model: HookedTransformer, texts: list[str]) -> list[int]:
    return [len(model.tokenizer(t)["input_ids"]) - 1 for t in texts]


@torch.no_grad()
def read_features(model: HookedTransformer, run_dir: RunDir, model_name: str, hooks: list[str], data: ContrastiveSet,
                  size: str) -> dict[str, Float[Tensor, "n f"]]:
    """Raw activations and SAE codes of the chosen hooks (concatenated) and the embedding, at each variant's
    swapped word. The SAEs are the reading model's own."""
    acts = activations_at(model, data.texts, last_token_positions(model, data.texts), [*hooks, EMBEDDING_HOOK])
    codes = [load_sae(run_dir.root / "saes" / model_name / h / size).encode(acts[h]) for h in hooks]
    return {"activations": torch.cat([acts[h] for h in hooks], dim=1), "sae": torch.cat(codes, dim=1),
            "embedding": acts[EMBEDDING_HOOK]}


def targets(data: ContrastiveSet, features: Float[Tensor, "n f"], kind: str) -> np.ndarray:
    """The regression target of every variant: the word's VADER valence ("utility"), or the
    paper's signed distance from the neutral variant (+ for positive, - for negative, 0 for neutral)."""
    if kind == "utility":
        return np.array([valence(w) for w in data.words])
    if kind != "paper":
        raise UserError(f"target must be 'paper' or 'utility', got {kind!r}")
    f = features.reshape(data.n_triples, 3, -1)
    dist = torch.linalg.norm(f - f[:, 2:3], dim=-1)  # (triples, 3); the neutral column is 0
    sign = torch.tensor([1.0, -1.0, 0.0])
    return (dist * sign).reshape(-1).numpy()


# -- fitting and scoring ------------------------------------------------------------------------


def fit_ridge(x: np.ndarray, y: np.ndarray, alpha: float | None) -> Pipeline:
    ridge = Ridge(alpha=alpha) if alpha is not None else RidgeCV(alphas=ALPHAS)
    return make_pipeline(StandardScaler(), ridge).fit(x, y)


def word_metrics(words: list[str], predictions: np.ndarray, kinds: list[str]) -> dict[str, dict]:
    """Per-word mean predictions (the positive and negative variants' words) ranked against VADER."""
    by_word: dict[str, list[float]] = {}
    for w, p, k in zip(words, predictions, kinds):
        if k != "neutral":
            by_word.setdefault(w, []).append(float(p))
    names = sorted(by_word)
    pred = np.array([np.mean(by_word[w]) for w in names])
    true = np.array([valence(w) for w in names])
    out = {"all": rank_metrics(pred, true)}
    for part, keep in (("positive", true > 0), ("negative", true < 0)):
        out[part] = rank_metrics(pred[keep], true[keep]) if keep.sum() >= 3 else {"kendall_tau": float("nan"),
                                                                                  "spearman": float("nan"), "n": int(keep.sum())}
    out["per_word"] = {"words": names, "valence": true.tolist(), "prediction": pred.tolist()}
    return out


def _score(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray, test: ContrastiveSet,
           alpha: float | None) -> tuple[dict, Pipeline]:
    probe = fit_ridge(train_x, train_y, alpha)
    pred = probe.predict(test_x)
    metrics = word_metrics(test.words, pred, test.kinds)
    metrics["r2"] = float(r2_score(test_y, pred))
    metrics["alpha"] = float(probe[-1].alpha_ if hasattr(probe[-1], "alpha_") else probe[-1].alpha)
    return metrics, probe


def _untrained(train_x: np.ndarray, test_x: np.ndarray, test_y: np.ndarray, test: ContrastiveSet, seed: int,
               draws: int = 30) -> dict:
    """The null: probes with random weights on the standardised features, no fitting; the mean
    of each metric over ``draws`` weight vectors (one draw alone can align with a strong valence
    direction by chance, with either sign), with the spread of tau beside it."""
    x = StandardScaler().fit(train_x).transform(test_x)
    weights = np.random.default_rng(seed).normal(size=(draws, x.shape[1])) / np.sqrt(x.shape[1])
    runs = [word_metrics(test.words, x @ w, test.kinds) for w in weights]
    metrics: dict = {part: {key: float(np.nanmean([r[part][key] for r in runs])) for key in runs[0][part] if key != "n"}
                     for part in ("all", "positive", "negative")}
    metrics["all"]["kendall_tau_std"] = float(np.std([r["all"]["kendall_tau"] for r in runs]))
    metrics["r2"] = float(np.mean([r2_score(test_y, x @ w) for w in weights]))
    metrics["draws"] = draws
    return metrics


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


def fit_linear_reward(run_dir: RunDir | str | Path, cfg: LinearRewardConfig = LinearRewardConfig(),
                      model: HookedTransformer | None = None) -> LinearRewardResult:
    """Fit and score the probe under both protocols; see the module docstring."""
    started = time.time()
    run_dir = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    if not run_dir.root.is_dir():
        raise UserError(f"run directory {run_dir.root} does not exist")
    if cfg.features not in ("sae", "activations"):
        raise UserError(f"features must be 'sae' or 'activations', got {cfg.features!r}")
    hooks = layer_hooks(run_dir, cfg.model, cfg.layers, cfg.size)
    model = model or to_hooked(run_dir.root / "models" / cfg.model)
    min_triples = 20
    if cfg.n_triples < min_triples or int(cfg.n_triples * cfg.test_fraction) < 5:
        raise UserError(f"{cfg.n_triples} triples are too few for a {cfg.test_fraction:.0%} test split; "
                        f"use at least {min_triples}")
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

    rows_paper = np.arange(3 * paper_set.n_triples)
    order = np.random.default_rng(cfg.seed).permutation(paper_set.n_triples)
    n_paper_test = int(round(paper_set.n_triples * cfg.test_fraction))
    splits = {
        "paper": (paper_set.subset(sorted(order[n_paper_test:])), paper_set.subset(sorted(order[:n_paper_test])),
                  _triple_rows(order[n_paper_test:]), _triple_rows(order[:n_paper_test])),
        "held_out_words": (word_train, word_test,
                           np.arange(len(rows_paper), len(rows_paper) + 3 * word_train.n_triples),
                           np.arange(len(rows_paper) + 3 * word_train.n_triples, len(everything.texts))),
    }
    protocols: dict[str, dict[str, dict]] = {}
    probes: dict[str, Pipeline] = {}
    for name, (_, test, tr, te) in splits.items():
        kinds: dict[str, dict] = {}
        kinds[f"probe ({cfg.features})"], probes[name] = _score(x[cfg.features][tr], y[tr], x[cfg.features][te], y[te],
                                                               test, cfg.alpha)
        kinds["untrained (null)"] = _untrained(x[cfg.features][tr], x[cfg.features][te], y[te], test, cfg.seed)
        if cfg.features == "sae":
            kinds["raw activations"] = _score(x["activations"][tr], y[tr], x["activations"][te], y[te], test, cfg.alpha)[0]
        kinds["embedding only"] = _score(x["embedding"][tr], y[tr], x["embedding"][te], y[te], test, cfg.alpha)[0]
        protocols[name] = kinds
    coefs = probes["held_out_words"][-1].coef_
    width = feats[cfg.features].shape[1] // len(hooks)
    top = [{"hook": hooks[i // width], "feature": int(i % width), "coefficient": float(coefs[i]),
            "index": int(i)} for i in np.argsort(-coefs)[:TOP_FEATURES]]
    held = protocols["held_out_words"][f"probe ({cfg.features})"]["per_word"]
    return LinearRewardResult(
        config={**asdict(cfg), "run_dir": str(run_dir.root)}, hooks=hooks, n_features=int(feats[cfg.features].shape[1]),
        protocols=protocols, top_features=top, scatter=held, seconds=time.time() - started,
        notes=[f"{paper_set.n_triples} triples (paper protocol); {word_train.n_triples} on {len(train_words)} training "
               f"words and {word_test.n_triples} on {len(test_words)} held-out words"],
    )


def _triple_rows(triples: np.ndarray) -> np.ndarray:
    return np.array([3 * t + k for t in sorted(triples) for k in range(3)])


# -- command line -------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m probes.fit_linear_reward", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run-dir", required=True, help="a study run directory with SAEs (runs/<study>)")
    p.add_argument("--model", default="policy", help="whose activations and SAEs to read: policy (default) or base")
    p.add_argument("--features", choices=("sae", "activations"), default="sae",
                   help="SAE codes of the chosen layers, concatenated (default), or the raw activations at the same hooks")
    p.add_argument("--layers", type=int, nargs="+", help="layers to read (default: the study's chosen layers)")
    p.add_argument("--target", choices=("paper", "utility"), default="utility",
                   help="utility: the swapped word's VADER valence (default); paper: signed distance of the variant's "
                        "feature vector from its neutral variant's")
    p.add_argument("--alpha", type=float, help="ridge penalty (default: chosen by cross-validation)")
    p.add_argument("--size", default="1x", help="SAE width to use, as named under saes/<model>/<hook>/ (default 1x)")
    p.add_argument("--triples", type=int, default=1500, help="contrastive triples per protocol (default 1500)")
    p.add_argument("--seed", type=int, default=0, help="seed of the triples and the splits (default 0)")
    p.add_argument("--out", type=Path, help="JSON file to write (default: <run-dir>/probes/linear_reward_<model>_<features>.json)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = LinearRewardConfig(model=args.model, features=args.features, layers=tuple(args.layers) if args.layers else None,
                             target=args.target, alpha=args.alpha, size=args.size, n_triples=args.triples, seed=args.seed)
    try:
        result = fit_linear_reward(args.run_dir, cfg)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = args.out or RunDir(args.run_dir).probes / f"linear_reward_{args.model}_{args.features}.json"
    atomic_write_json(out, result.to_dict())
    print(f"implicit-reward probe: model {args.model}, {args.features} at {', '.join(result.hooks)} "
          f"({result.n_features} features), target {args.target}")
    print(result.notes[0])
    print(result.table())
    print("top features: " + ", ".join(f"{f['hook'].split('.')[1]}:{f['feature']} ({f['coefficient']:+.3f})"
                                      for f in result.top_features[:8]))
    print(f"written: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
