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
from dataclasses import dataclass

import numpy as np
from jaxtyping import Float
from sae_lens import SAE
from torch import Tensor
from transformer_lens import HookedTransformer
from transformer_lens.hook_points import HookPoint

from analysis.interventions import Hooks, reward_under_hooks
from rlhf.rewards import UtilityReward


@dataclass(frozen=True)
class AblationConfig:
    k: int = 10  # features switched off
    random_sets: int = 3  # sets of k random (live) features to compare with
    n_prompts: int = 256
    max_new_tokens: int = 19
    seeds: tuple[int, ...] = (0, 1, 2)  # sampling seeds; every condition uses the same ones


def splice_hooks(saes: dict[str, SAE], ablate: dict[str, Sequence[int]]) -> Hooks:
    """Forward hooks that zero the given features of each hook's SAE code, keeping the error term."""

    def make(sae: SAE, features: list[int]) -> Callable:
        def hook(x: Float[Tensor, "batch pos d"], hook: HookPoint) -> Float[Tensor, "batch pos d"]:
            codes = sae.encode(x)
            error = x - sae.decode(codes)
            codes[..., features] = 0.0
            return sae.decode(codes) + error

        return hook

    return [(h, make(saes[h], list(f))) for h, f in ablate.items() if len(f)]


def run_condition(model: HookedTransformer, saes: dict[str, SAE], ablate: dict[str, Sequence[int]], prompts: Sequence[str],
                  cfg: AblationConfig, reward: UtilityReward) -> list[dict]:
    """Mean reward and KL to the unedited policy, once per sampling seed."""
    return reward_under_hooks(model, splice_hooks(saes, ablate), prompts, seeds=cfg.seeds,
                              max_new_tokens=cfg.max_new_tokens, reward=reward)


def ablation_effect(model: HookedTransformer, saes: dict[str, SAE], top: dict[str, list[int]],
                    live: dict[str, list[int]], prompts: Sequence[str], cfg: AblationConfig) -> dict:
    """The probe's top features switched off, against none and against random sets of live features
    of the same size spread over the same hooks."""
    reward = UtilityReward()
    k = sum(len(v) for v in top.values())
    rng = random.Random(0)
    pool = [(h, f) for h, feats in live.items() for f in feats]
    random_sets = []
    for _ in range(cfg.random_sets):
        chosen: dict[str, list[int]] = {}
        for h, f in rng.sample(pool, min(k, len(pool))):
            chosen.setdefault(h, []).append(f)
        random_sets.append(chosen)
    none = run_condition(model, saes, {}, prompts, cfg, reward)
    probe = run_condition(model, saes, top, prompts, cfg, reward)
    rand = [r for s in random_sets for r in run_condition(model, saes, s, prompts, cfg, reward)]

    def stats(rows: list[dict], base: list[dict]) -> dict:
        base_by_seed = {r["seed"]: r["mean_reward"] for r in base}
        change = [r["mean_reward"] - base_by_seed[r["seed"]] for r in rows]
        return {"mean_reward": float(np.mean([r["mean_reward"] for r in rows])),
                "reward_change": float(np.mean(change)), "reward_change_std": float(np.std(change)),
                "kl_per_token": float(np.mean([r["kl_per_token"] for r in rows])), "runs": rows}

    # The ceiling: every feature of one hook's dictionary off. No choice of k features there can do more.
    whole = {h: stats(run_condition(model, saes, {h: list(range(saes[h].cfg.d_sae))}, prompts, cfg, reward), none)
             for h in saes}
    result = {"k": k, "features": top, "random_sets": random_sets, "none": stats(none, none),
              "probe_top_k": stats(probe, none), "random_k": stats(rand, none), "whole_dictionary": whole}
    # "Lowers" means the reward goes down, and by more than the spread over seeds separates it from random sets.
    probe, rand_k = result["probe_top_k"], result["random_k"]
    result["probe_lowers_reward_more_than_random"] = bool(
        probe["reward_change"] < 0
        and probe["reward_change"] < rand_k["reward_change"] - probe["reward_change_std"] - rand_k["reward_change_std"])
    return result
