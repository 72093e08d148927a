"""Every method's finding scored the same way against the reward the organism knows exactly: the
share of its latents whose held-out activation correlates with the current token's valence beyond a
threshold (and their mean |r|), precision and recall of the high-utility vocabulary among their top
logit tokens (or among the tokens a token-naming method names), and the change in the policy's
reward when their directions are projected out of the hook (with the KL of that edit)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor
from transformer_lens import HookedTransformer

from analysis.diffing.method import Context, Found
from analysis.feature_diff import pearson
from analysis.interventions import directional_ablation, reward_under_hooks
from analysis.results import AblationEffect, LayerDiffing, MethodScore, SeedStat
from rlhf.policy import prompts_from_texts
from rlhf.rewards import UtilityReward

SCORES = ("share_tracking_reward", "mean_abs_corr", "precision", "recall", "reward_change", "kl_per_token")


def _precision_recall(tokens: set[int], high: set[int]) -> tuple[float, float]:
    hits = len(tokens & high)
    return hits / len(tokens) if tokens else 0.0, hits / len(high) if high else 0.0


def score(found: Found, held_valence: Float[Tensor, " tokens"], ctx: Context, seed: int) -> MethodScore:
    """How well a method's finding matches the known reward (ablation is scored separately)."""
    if not found.latents:
        precision, recall = _precision_recall(set(found.tokens), ctx.high)
        # Tokens carry no activation to correlate; a latent method that found nothing tracks nothing.
        tracking = None if found.tokens else 0.0
        return MethodScore(seed=seed, latents=(), n=0, share_tracking_reward=tracking, mean_abs_corr=tracking,
                           precision=precision, recall=recall, set_aside=found.set_aside)
    corr = pearson(found.activations, held_valence)
    logits = found.directions.float() @ ctx.unembed
    precision, recall = _precision_recall(set(torch.topk(logits, ctx.cfg.logit_tokens, dim=-1).indices.flatten().tolist()),
                                          ctx.high)
    return MethodScore(
        seed=seed, latents=tuple(found.latents), n=len(found.latents),
        share_tracking_reward=float((corr.abs() > ctx.cfg.corr_threshold).float().mean()),
        mean_abs_corr=float(corr.abs().mean()), precision=precision, recall=recall, set_aside=found.set_aside)


@dataclass
class Ablation:
    """The policy's mean reward on held-out prompts with directions projected out of a hook, against its unedited reward."""

    hooked: HookedTransformer
    prompts: list[str]
    sampling: dict
    unedited: dict[int, float]  # per sampling seed

    @classmethod
    def load(cls, ctx: Context) -> Ablation:
        cfg = ctx.cfg
        prompts = prompts_from_texts(ctx.run_dir.texts("test"), cfg.n_prompts, 11)
        hooked = ctx.hooked("policy")
        sampling = dict(seeds=cfg.sampling_seeds, max_new_tokens=cfg.max_new_tokens, reward=UtilityReward())
        unedited = {r["seed"]: r["mean_reward"] for r in reward_under_hooks(hooked, [], prompts, **sampling)}
        return cls(hooked, prompts, sampling, unedited)

    @property
    def unedited_reward(self) -> float:
        return float(np.mean(list(self.unedited.values())))

    def __call__(self, hook: str, directions: Float[Tensor, "k d"]) -> AblationEffect:
        runs = reward_under_hooks(self.hooked, directional_ablation(hook, directions), self.prompts, **self.sampling)
        return AblationEffect(reward_change=float(np.mean([r["mean_reward"] - self.unedited[r["seed"]] for r in runs])),
                              kl_per_token=float(np.mean([r["kl_per_token"] for r in runs])))

    def scored(self, row: MethodScore, hook: str, found: Found) -> MethodScore:
        """``row`` with the reward change and KL of ablating the found directions (unchanged without latents)."""
        if not found.latents:
            return row
        return replace(row, **asdict(self(hook, found.directions)))


def summary(layers: list[LayerDiffing], methods: list[str]) -> dict[str, dict[str, SeedStat]]:
    """Per method: each score averaged over layers, then mean and spread over the dictionary seeds."""
    out = {}
    for method in methods:
        per_seed: dict[int, dict[str, list[float]]] = {}
        for layer in layers:
            for row in layer.methods.get(method, ()):
                bucket = per_seed.setdefault(row.seed, {})
                for key in SCORES:
                    if getattr(row, key) is not None:
                        bucket.setdefault(key, []).append(getattr(row, key))
        if not per_seed:
            continue
        keys = set().union(*per_seed.values())
        out[method] = {key: SeedStat(mean=float(np.mean([np.mean(b[key]) for b in per_seed.values() if key in b])),
                                     std=float(np.std([np.mean(b[key]) for b in per_seed.values() if key in b])),
                                     seeds=len(per_seed)) for key in sorted(keys)}
    return out
