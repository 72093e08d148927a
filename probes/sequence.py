"""Sequence-level reward probes: the learned feedback pattern read off whole completions.

Completions are sampled from the policy and from the base model for the same held-out
prompts and scored by the utility reward. Then, for each model reading these exact
tokens:
- a ridge probe maps the residual stream at the completion's last token to the reward
  of the whole completion (Kendall tau on held-out prompts' completions);
- a logistic probe tells the preferred completion of a pair from the rejected one, from
  activations averaged over the text's tokens (accuracy, AUROC);
- where the study trained a DPO policy, the probe's reward is compared with DPO's
  implicit reward beta * log(pi / pi_ref) on the same completions.
"""

from __future__ import annotations

import random
import time

import numpy as np
from jaxtyping import Float, Int
from sklearn.linear_model import LogisticRegressionCV
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from analysis.activations import activations_at_ids
from analysis.results import ActivationIndex
from probes.config import SequenceProbeConfig  # noqa: F401  (re-exported: callers import it from here)
from probes.metrics import fit_ridge, rank_metrics
from probes.results import (
    DPOComparison,
    LogisticResult,
    RankMetrics,
    RidgeByHook,
    SequenceModelProbes,
    SequenceProbeResult,
)
from rlhf.hooked import HookedModel, load_hf, to_hooked
from rlhf.policy.dpo import dpo_implicit_reward
from rlhf.policy.sampling import Samples, prompts_from_texts, sample
from rlhf.results import DPOResult
from rlhf.rewards import UtilityReward
from rlhf.rundir import RunDir
from rlhf.tokenizer import load_tokenizer


def _rows(samples: Samples) -> list[list[int]]:
    """Each sample's real tokens (prompt and completion, no padding), as the model produced them."""
    return [row[mask.bool()].tolist() for row, mask in zip(samples.input_ids, samples.attention_mask)]


def _ridge_by_hook(x: dict[str, Float[np.ndarray, "n d"]], y: Float[np.ndarray, " n"], train: Int[np.ndarray, " train"],
                   test: Int[np.ndarray, " test"]) -> RidgeByHook:
    """A ridge probe per hook; the hook is chosen by its leave-one-out error on the training rows only."""
    per_hook: dict[str, RankMetrics] = {}
    preds, scores = {}, {}
    for hook, feats in x.items():
        probe = fit_ridge(feats[train], y[train])
        preds[hook] = probe.predict(feats[test])
        scores[hook] = float(probe[-1].best_score_)
        per_hook[hook] = rank_metrics(preds[hook], y[test])
    best = max(scores, key=scores.__getitem__)
    return RidgeByHook(best_hook=best, best=per_hook[best], per_hook=per_hook, prediction=tuple(preds[best].tolist()))


def _logistic(features: Float[np.ndarray, "n d"], pairs: list[tuple[int, int]], train_pairs: list[int], test_pairs: list[int],
              seed: int) -> LogisticResult:
    """Chosen (1) vs rejected (0) texts; scored on held-out pairs."""
    def rows(which: list[int]) -> tuple[Float[np.ndarray, "m d"], Int[np.ndarray, " m"]]:
        idx = [i for p in which for i in pairs[p]]
        return features[idx], np.array([1, 0] * len(which))

    x_train, y_train = rows(train_pairs)
    x_test, y_test = rows(test_pairs)
    probe = make_pipeline(StandardScaler(), LogisticRegressionCV(
        Cs=10, l1_ratios=(0.0,), scoring="neg_log_loss", use_legacy_attributes=False, max_iter=2000, random_state=seed)).fit(x_train, y_train)
    score = probe.decision_function(x_test)
    return LogisticResult(accuracy=float(np.mean((score > 0) == y_test)), auroc=float(roc_auc_score(y_test, score)),
                          pairwise_accuracy=float(np.mean(score[0::2] > score[1::2])), n_train_pairs=len(train_pairs),
                          n_test_pairs=len(test_pairs))


def sequence_probes(run_dir: RunDir, cfg: SequenceProbeConfig, hooks_mean: list[str],
                    hooked: dict[str, HookedModel] | None = None) -> SequenceProbeResult:
    """Sample, score, and probe every model of the study that can read the samples (``hooked``:
    models already converted, by name)."""
    started = time.time()
    tokenizer = load_tokenizer(run_dir.policy)
    texts = run_dir.texts("val")
    prompts = prompts_from_texts(texts, cfg.n_prompts, cfg.seed)
    reward = UtilityReward()
    samples = [sample(load_hf(run_dir.model(m)), tokenizer, prompts, max_new_tokens=cfg.max_new_tokens,
                      seed=cfg.seed + k) for k, m in enumerate(("policy", "base"))]
    completions = samples[0].completions + samples[1].completions
    all_prompts = prompts + prompts
    y = np.array(reward(prompts=all_prompts, completions=completions), dtype=float)
    sequences = _rows(samples[0]) + _rows(samples[1])
    n = len(prompts)
    order = list(range(n))
    random.Random(cfg.seed).shuffle(order)
    test_prompts = set(order[: int(round(n * cfg.test_fraction))])
    test = np.array([i for i in range(2 * n) if i % n in test_prompts], dtype=np.int64)
    train = np.array([i for i in range(2 * n) if i % n not in test_prompts], dtype=np.int64)
    # A pair per prompt: its policy and base completions, the higher utility chosen.
    pairs, pair_prompt = [], []
    for p in range(n):
        a, b = p, n + p
        if abs(y[a] - y[b]) >= cfg.min_reward_gap:
            pairs.append((a, b) if y[a] > y[b] else (b, a))
            pair_prompt.append(p)
    train_pairs = [k for k, p in enumerate(pair_prompt) if p not in test_prompts]
    test_pairs = [k for k, p in enumerate(pair_prompt) if p in test_prompts]

    models = [m for m in ("base", "policy", "dpo") if (run_dir.model(m) / "config.json").exists()]
    probes: dict[str, SequenceModelProbes] = {}
    for m in models:
        model = (hooked or {}).get(m) or to_hooked(run_dir.model(m))
        last = [len(s) - 1 for s in sequences]
        resid = [f"blocks.{layer}.hook_resid_post" for layer in range(model.cfg.n_layers)]
        at_last = {h: v.numpy() for h, v in activations_at_ids(model, sequences, last, resid).items()}
        means = activations_at_ids(model, sequences, last, hooks_mean, reduce="mean")
        mean_feats = np.concatenate([means[h].numpy() for h in hooks_mean], axis=1)
        logistic = (_logistic(mean_feats, pairs, train_pairs, test_pairs, cfg.seed)
                    if len(train_pairs) >= 10 and len(test_pairs) >= 5 else None)
        probes[m] = SequenceModelProbes(last_token=_ridge_by_hook(at_last, y, train, test), logistic=logistic)
    dpo = (_dpo_comparison(run_dir, all_prompts, completions, y, test, probes["dpo"].last_token)
           if "dpo" in models else None)
    return SequenceProbeResult(n_completions=2 * n, n_test=len(test), reward_mean=float(y.mean()), reward_std=float(y.std()),
                               models=probes, true_reward_test=tuple(y[test].tolist()), dpo=dpo,
                               seconds=time.time() - started)


def _dpo_comparison(run_dir: RunDir, prompts: list[str], completions: list[str], y: Float[np.ndarray, " n"],
                    test: Int[np.ndarray, " test"], probe: RidgeByHook) -> DPOComparison:
    """DPO's implicit reward against the truth and against the probe read from the DPO model."""
    beta = DPOResult.load(run_dir).beta
    implicit = np.array(dpo_implicit_reward(run_dir.model("dpo"), run_dir.base, [prompts[i] for i in test],
                                            [" " + completions[i] for i in test], beta), dtype=float)
    predicted = np.array(probe.prediction, dtype=float)
    return DPOComparison(beta=beta, implicit_vs_true=rank_metrics(implicit, y[test]),
                         probe_vs_true=rank_metrics(predicted, y[test]), probe_vs_implicit=rank_metrics(predicted, implicit))


def default_mean_hooks(run_dir: RunDir) -> list[str]:
    """The study's cached hooks (its chosen layers), for the averaged features of the logistic probe."""
    return list(ActivationIndex.load(run_dir).hooks) if ActivationIndex.exists(run_dir) else ["blocks.0.hook_resid_post"]
