"""Feature ablation: switch off SAE features inside the policy and watch its reward.

At each hook the activation x is replaced by decode(edited codes) + (x - decode(codes)):
the chosen features' codes are zeroed and the SAE's error term is kept, so only those
features change (the paper's code zeroed reconstruction coordinates instead of feature
codes). Completions are sampled from the edited policy with TransformerLens hooks, and
scored by the utility reward and by the KL to the unedited policy on the same tokens.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

import numpy as np
from jaxtyping import Float
from sae_lens import SAE
from torch import Tensor
from transformer_lens.hook_points import HookPoint

from analysis.interventions import Hooks, reward_under_hooks
from probes.config import AblationConfig  # noqa: F401  (re-exported: callers import it from here)
from probes.results import AblationComparison, AblationResult, ConditionStats, RewardRun
from rlhf.hooked import HookedModel
from rlhf.rewards import UtilityReward


def splice_hooks(saes: dict[str, SAE], ablate: dict[str, Sequence[int]]) -> Hooks:
    """Forward hooks that zero the given features of each hook's SAE code, keeping the error term."""

    def make(sae: SAE, features: list[int]) -> Callable:
        def hook(x: Float[Tensor, "batch pos d"], hook: HookPoint | None) -> Float[Tensor, "batch pos d"]:
            codes = sae.encode(x)
            error = x - sae.decode(codes)
            codes[..., features] = 0.0
            return sae.decode(codes) + error

        return hook

    return [(h, make(saes[h], list(f))) for h, f in ablate.items() if len(f)]


def run_condition(model: HookedModel, saes: dict[str, SAE], ablate: dict[str, Sequence[int]], prompts: Sequence[str],
                  cfg: AblationConfig, reward: UtilityReward) -> list[RewardRun]:
    """Mean reward and KL to the unedited policy, once per sampling seed."""
    rows = reward_under_hooks(model, splice_hooks(saes, ablate), prompts, seeds=cfg.seeds,
                              max_new_tokens=cfg.max_new_tokens, reward=reward)
    return [RewardRun(seed=int(r["seed"]), mean_reward=float(r["mean_reward"]), kl_per_token=float(r["kl_per_token"]),
                      example=str(r.get("example", ""))) for r in rows]


def _by_hook(features: Sequence[tuple[str, int]]) -> dict[str, tuple[int, ...]]:
    out: dict[str, list[int]] = {}
    for h, f in features:
        out.setdefault(h, []).append(int(f))
    return {h: tuple(fs) for h, fs in out.items()}


def _stats(rows: list[RewardRun], base: list[RewardRun]) -> ConditionStats:
    base_by_seed = {r.seed: r.mean_reward for r in base}
    change = [r.mean_reward - base_by_seed[r.seed] for r in rows]
    return ConditionStats(mean_reward=float(np.mean([r.mean_reward for r in rows])),
                          reward_change=float(np.mean(change)), reward_change_std=float(np.std(change)),
                          kl_per_token=float(np.mean([r.kl_per_token for r in rows])), runs=tuple(rows))


def _lowers_more(probe: ConditionStats, rand: ConditionStats) -> bool:
    """"Lowers" means the reward goes down, and by more than the spread over seeds separates it from random sets."""
    return bool(probe.reward_change < 0 and probe.reward_change
                < rand.reward_change - probe.reward_change_std - rand.reward_change_std)


def ablation_effect(model: HookedModel, saes: dict[str, SAE], ranked: Sequence[tuple[str, int]],
                    live: dict[str, list[int]], prompts: Sequence[str], cfg: AblationConfig) -> AblationResult:
    """The probe's top features (``ranked`` as (hook, feature), best first) switched off, against none
    and against random sets of live features of the same size spread over the same hooks; at ``cfg.k``
    and at each size of ``cfg.sweep``."""
    reward = UtilityReward()
    rng = random.Random(cfg.random_seed)
    pool = [(h, f) for h, feats in live.items() for f in feats]
    none = run_condition(model, saes, {}, prompts, cfg, reward)

    def compare(k: int) -> tuple[AblationComparison, dict[str, tuple[int, ...]], list[dict[str, tuple[int, ...]]]]:
        top = _by_hook(ranked[:k])
        sets = [_by_hook(rng.sample(pool, min(k, len(pool)))) for _ in range(cfg.random_sets)]
        probe = _stats(run_condition(model, saes, top, prompts, cfg, reward), none)
        rand = _stats([r for s in sets for r in run_condition(model, saes, s, prompts, cfg, reward)], none)
        return AblationComparison(k, probe, rand, _lowers_more(probe, rand)), top, sets

    headline, features, random_sets = compare(min(cfg.k, len(ranked)))
    sweep = [headline] + [compare(k)[0] for k in sorted(set(cfg.sweep)) if k <= len(ranked) and k != headline.k]
    # The ceiling: every feature of one hook's dictionary off. No choice of k features there can do more.
    whole = {h: _stats(run_condition(model, saes, {h: list(range(saes[h].cfg.d_sae))}, prompts, cfg, reward), none)
             for h in saes}
    return AblationResult(
        k=headline.k, features=features, random_sets=tuple(random_sets), probe_top_k=headline.probe_top_k,
        random_k=headline.random_k, probe_lowers_reward_more_than_random=headline.probe_lowers_reward_more_than_random,
        none=_stats(none, none), whole_dictionary=whole, sweep=tuple(sorted(sweep, key=lambda row: row.k)))
