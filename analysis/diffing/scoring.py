"""Every method's finding scored the same way against the reward the organism knows exactly: the
share of its latents whose held-out activation correlates with the current token's utility (the valence, for
the sentiment organism) beyond a threshold (and their mean |r|), precision and recall of the high-utility vocabulary among their top
logit tokens (or among the tokens a token-naming method names), the change in the policy's
reward when their directions are projected out of the hook (with the KL of that edit), and the
causal share of the exact reward gain G carried by their top k directions (``Splice``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from analysis.diffing.method import Context, Found, memo
from analysis.feature_attribution import direction_dictionary, encode, splice_fractions
from analysis.feature_diff import pearson
from analysis.interventions import directional_ablation, reward_under_hooks
from analysis.patching import cache_sites
from analysis.results import AblationEffect, LayerDiffing, MethodScore, SeedStat, SpliceEffect, splice_score
from analysis.reward_gain import Completions, GainSplit, sample_completions, split_gain
from rlhf.hooked import HookedModel

SCORES = ("share_tracking_reward", "mean_abs_corr", "precision", "recall", "reward_change", "kl_per_token",
          "planted_cosine", "key_hit")


def _precision_recall(tokens: set[int], high: set[int]) -> tuple[float, float]:
    hits = len(tokens & high)
    return hits / len(tokens) if tokens else 0.0, hits / len(high) if high else 0.0


def score(found: Found, held_utility: Float[Tensor, " tokens"], ctx: Context, seed: int) -> MethodScore:
    """How well a method's finding matches the known reward (ablation is scored separately)."""
    if not found.latents:
        ranked = list(found.tokens)
        # Tokens carry no activation to correlate; a latent method that found nothing tracks nothing.
        tracking = None if found.tokens else 0.0
        corr = None
    else:
        ranked = torch.topk(found.directions.float() @ ctx.unembed, ctx.cfg.logit_tokens, dim=-1).indices.flatten().tolist()
        corr = pearson(found.activations, held_utility).abs()
        tracking = float((corr > ctx.cfg.corr_threshold).float().mean())
    named = set(ranked)
    precision, recall = _precision_recall(named, ctx.high)
    return MethodScore(
        seed=seed, latents=tuple(found.latents), n=len(found.latents), share_tracking_reward=tracking,
        mean_abs_corr=tracking if corr is None else float(corr.mean()), precision=precision, recall=recall,
        set_aside=found.set_aside, key_hit=len(named & ctx.key) / len(ctx.key) if ctx.key else None,
        named=tuple(ctx.vocab[t] if t < len(ctx.vocab) else str(t) for t in dict.fromkeys(ranked)))


def planted_cosine(found: Found, hook: str, ctx: Context) -> float | None:
    """The largest |cosine| between the method's top directions and a planted edit's direction, at the
    edited hook; None elsewhere, without a planted edit, or for a method naming tokens."""
    if ctx.planted is None or hook != ctx.planted.hook or not found.latents:
        return None
    directions = torch.nn.functional.normalize(found.directions.float(), dim=-1)
    return float((directions @ ctx.planted.direction.float()).abs().max())


@dataclass
class Ablation:
    """The policy's mean reward on held-out prompts with directions projected out of a hook, against its unedited reward."""

    hooked: HookedModel
    prompts: list[str]
    sampling: dict
    unedited: dict[int, float]  # per sampling seed

    @classmethod
    def load(cls, ctx: Context) -> Ablation:
        cfg = ctx.cfg
        hooked = ctx.hooked("policy")
        sampling = dict(seeds=cfg.sampling_seeds, max_new_tokens=cfg.max_new_tokens, reward=ctx.objective.reward)
        unedited = {r["seed"]: r["mean_reward"] for r in reward_under_hooks(hooked, [], ctx.prompts, **sampling)}
        return cls(hooked, ctx.prompts, sampling, unedited)

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


@dataclass
class Splice:
    """The causal score, the same for every method that names directions: on the policy's own completions
    of held-out prompts (one batch per sampling seed), the policy-minus-base difference at the hook
    projected on the span of a method's top k directions is added to the base and taken out of the
    policy; the change in expected reward is a share of the exact gain G (``analysis.reward_gain``).
    The span, not each latent's own code, so that latents, SAE features and lens directions are
    treated alike; ``random`` gives the floor k random directions reach."""

    ctx: Context
    batches: list[tuple[Completions, GainSplit]]  # per sampling seed

    @classmethod
    def load(cls, ctx: Context) -> Splice:
        base, policy = ctx.hooked("base"), ctx.hooked("policy")
        # G of the objective the policy was trained on, in the units of the sampled scores' reward.
        utility = ctx.objective.utilities(policy.tokenizer, policy.cfg.d_vocab, ctx.prompts)
        batches = []
        for seed in ctx.cfg.sampling_seeds:
            batch = sample_completions(policy, ctx.prompts, utility, max_new_tokens=ctx.cfg.max_new_tokens, seed=seed)
            batches.append((batch, split_gain(base, policy, batch, policy.tokenizer.eos_token_id)))
        return cls(ctx, batches)

    @property
    def gain(self) -> tuple[float, ...]:
        return tuple(split.gain for _, split in self.batches)

    def _sites(self, hook: str) -> list[list[list[Tensor]]]:
        """Per sampling seed: both models' activations at ``hook`` (once per hook)."""
        def compute() -> list[list[list[Tensor]]]:
            models = self.ctx.hooked("base"), self.ctx.hooked("policy")
            with torch.no_grad():
                return [[cache_sites(m, batch, [hook])[hook] for m in models] for batch, _ in self.batches]
        return memo(self.ctx.memo, ("splice_sites", hook), compute)

    def __call__(self, hook: str, directions: Float[Tensor, "k d"]) -> dict[int, SpliceEffect]:
        """Per configured k: the share of G the first k ``directions`` carry (all of them where there are
        fewer: a method that names five directions is scored on the five; ``SpliceEffect.directions`` says so)."""
        models = self.ctx.hooked("base"), self.ctx.hooked("policy")
        out = {}
        for k in self.ctx.cfg.splice_ks:
            n = min(k, len(directions))
            runs = []
            for (batch, split), (acts_b, acts_p) in zip(self.batches, self._sites(hook)):
                encoded = encode(direction_dictionary(f"top {n}", hook, directions[:n]), acts_b, acts_p)
                runs.append(splice_fractions(*models, batch, encoded, list(range(n)), split))
            out[k] = SpliceEffect(recovered=float(np.mean([r for r, _ in runs])),
                                  removed=float(np.mean([r for _, r in runs])), directions=n)
        return out

    def random(self, hook: str, d_model: int) -> dict[int, SpliceEffect]:
        directions = torch.randn(max(self.ctx.cfg.splice_ks), d_model, generator=torch.Generator().manual_seed(0))
        return self(hook, directions)

    def scored(self, row: MethodScore, hook: str, found: Found) -> MethodScore:
        return replace(row, splice=self(hook, found.directions)) if found.latents else row


def values(row: MethodScore) -> dict[str, float]:
    """A row's scores by name, the splice shares named by ``splice_score``; None left out."""
    out = {key: getattr(row, key) for key in SCORES if getattr(row, key) is not None}
    for k, effect in row.splice.items():
        out[splice_score(k, "recovered")], out[splice_score(k, "removed")] = effect.recovered, effect.removed
    return out


def _stats(per_seed: dict[int, dict[str, list[float]]]) -> dict[str, SeedStat]:
    """Each score averaged within a seed (over layers, say), then mean and spread over the seeds."""
    keys = set().union(*per_seed.values())
    return {key: SeedStat(mean=float(np.mean([np.mean(b[key]) for b in per_seed.values() if key in b])),
                          std=float(np.std([np.mean(b[key]) for b in per_seed.values() if key in b])),
                          seeds=sum(key in b for b in per_seed.values())) for key in sorted(keys)}


def _per_seed(layers: list[LayerDiffing], method: str) -> dict[int, dict[str, list[float]]]:
    per_seed: dict[int, dict[str, list[float]]] = {}
    for layer in layers:
        for row in layer.methods.get(method, ()):
            bucket = per_seed.setdefault(row.seed, {})
            for key, value in values(row).items():
                bucket.setdefault(key, []).append(value)
    return per_seed


def summary(layers: list[LayerDiffing], methods: list[str]) -> dict[str, dict[str, SeedStat]]:
    """Per method: each score averaged over layers, then mean and spread over the dictionary seeds."""
    return {method: _stats(per_seed) for method in methods if (per_seed := _per_seed(layers, method))}


def at_best_hook(layers: list[LayerDiffing], methods: list[str], k: int = 10) -> dict[str, tuple[str, dict[str, SeedStat]]]:
    """Per method: the hook where it does best, and its scores there (mean and spread over the dictionary
    seeds). Best is one criterion for all its scores, so that they describe one finding: the larger of the
    two shares of G its top ``k`` directions carry both ways (the smaller of recovered and removed), or,
    for a method naming tokens, the precision of what it names."""
    def merit(stats: dict[str, SeedStat]) -> float:
        shares = [stats[splice_score(k, way)].mean for way in ("recovered", "removed") if splice_score(k, way) in stats]
        return min(shares) if shares else stats["precision"].mean if "precision" in stats else float("-inf")

    out = {}
    for method in methods:
        at = {layer.hook: _stats(per_seed) for layer in layers if (per_seed := _per_seed([layer], method))}
        if at:
            hook = max(at, key=lambda h: merit(at[h]))
            out[method] = (hook, at[hook])
    return out
