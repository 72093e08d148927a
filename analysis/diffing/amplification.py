"""Logit-diff amplification: sample from logits_base + a (logits_policy - logits_base).

a = 0 is the base, a = 1 the policy; a > 1 exaggerates whatever the fine-tune changed, so
behaviours too rare to notice in the policy's own samples (a preferred vocabulary, repetition,
never ending) come to the surface. Each a is scored against the known reward: the utility of
its samples, and whether the tokens it makes more frequent than the policy does are the
high-utility vocabulary.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Sequence
from pathlib import Path

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from analysis.diffing.method import Context, Found, HookData, memo
from analysis.interventions import sample_tokens
from analysis.results import AmplificationRuns, AmplifiedSamples, LogitAmplification, ModelDiffingResult
from analysis.reward_gain import high_utility_tokens
from rlhf.errors import UserError
from rlhf.hooked import HookedModel
from rlhf.plots import plt, save_figure
from rlhf.policy.sampling import repeated_bigram_share
from rlhf.rewards import RewardFunction, UtilityReward


@torch.no_grad()
def sample_amplified(base: HookedModel, policy: HookedModel, prompts: Sequence[str], a: float, *,
                     max_new_tokens: int, seed: int) -> tuple[list[str], list[list[int]]]:
    """One completion per prompt sampled (temperature 1) from softmax((1 - a) logits_base + a logits_policy),
    and its token ids before the first end-of-text.

    HF's and TransformerLens's ``generate`` sample from one model's logits and cannot mix two;
    ``sample_tokens`` runs both models side by side."""
    if base.cfg.d_vocab != policy.cfg.d_vocab:
        raise UserError(f"base and policy vocabularies differ ({base.cfg.d_vocab} vs {policy.cfg.d_vocab}): "
                        "their logits cannot be mixed")
    # Written (1 - a) lb + a lp, not lb + a (lp - lb): at a = 1 these are the policy's logits to the
    # bit (and at a = 0 the base's), so a = 1 draws exactly the policy's samples.
    ids, _, sampled, keep = sample_tokens([base, policy], prompts, max_new_tokens=max_new_tokens, seed=seed,
                                          mix=lambda logits: (1 - a) * logits[0] + a * logits[1])
    tokens_out = [sampled[i][keep[i] & (sampled[i] != policy.tokenizer.eos_token_id)].tolist() for i in range(len(ids))]
    texts = [policy.tokenizer.decode(row, skip_special_tokens=True) for row in tokens_out]
    return texts, tokens_out


def _frequencies(rows: list[list[int]], d_vocab: int) -> Float[Tensor, " vocab"]:
    counts = torch.zeros(d_vocab)
    for row in rows:
        counts += torch.bincount(torch.tensor(row, dtype=torch.long), minlength=d_vocab).float()
    return counts / counts.sum().clamp(min=1.0)


def logit_amplification(base: HookedModel, policy: HookedModel, prompts: Sequence[str], *,
                        alphas: Sequence[float] = (1.0, 2.0, 4.0), seeds: Sequence[int] = (0, 1),
                        max_new_tokens: int = 19, top_n: int = 20, high_utility: float = 2.0,
                        reward: RewardFunction | None = None, high: Collection[int] | None = None) -> LogitAmplification:
    """Per a (a = 1 always included: the policy, the reference): the samples' mean ``reward`` per seed
    (default: the sentiment utility), their length and repetition, and the ``top_n`` tokens whose frequency
    rises most over the policy's own samples, scored against ``high`` (default: the high-utility vocabulary,
    VADER valence >= ``high_utility``; an organism passes its answer's tokens)."""
    high = set(high_utility_tokens(policy.tokenizer, policy.cfg.d_vocab, high_utility) if high is None else high)
    names = policy.tokenizer.convert_ids_to_tokens(list(range(len(policy.tokenizer))))
    reward = reward or UtilityReward()
    sampled: dict[float, tuple[list[list[str]], list[list[int]]]] = {}
    for a in sorted({1.0, *map(float, alphas)}):
        texts, rows = [], []
        for seed in seeds:
            t, r = sample_amplified(base, policy, prompts, a, max_new_tokens=max_new_tokens, seed=seed)
            texts.append(t)
            rows += r
        sampled[a] = (texts, rows)
    reference = _frequencies(sampled[1.0][1], policy.cfg.d_vocab)
    out = []
    for a, (texts, rows) in sampled.items():
        freq = _frequencies(rows, policy.cfg.d_vocab)
        rise = (freq - reference)[: len(names)]
        rising = [t for t in torch.topk(rise, min(top_n, len(names))).indices.tolist() if rise[t] > 0]
        hits = len(set(rising) & high)
        counts = Counter(t for row in rows for t in row)
        out.append(AmplifiedSamples(
            a=a, utility=tuple(float(np.mean(reward(prompts=list(prompts), completions=t))) for t in texts),
            mean_length=float(np.mean([len(r) for r in rows])),
            repeated_bigram_share=repeated_bigram_share([c for t in texts for c in t]),
            high_utility_token_share=sum(counts[t] for t in high) / max(sum(counts.values()), 1),
            rising_tokens=tuple(names[t] for t in rising), rising_token_ids=tuple(rising),
            precision=hits / len(rising) if rising else 0.0, recall=hits / len(high) if high else 0.0,
            example=texts[0][0]))
    return LogitAmplification(prompts=len(prompts), seeds=tuple(seeds), max_new_tokens=max_new_tokens,
                              high_utility=high_utility, high_utility_vocabulary=len(high), samples=tuple(out))


def _measured(ctx: Context, seed: int) -> LogitAmplification:
    """Amplification at the configured a for one sampling seed, once per stage run (it reads no hook)."""
    cfg, settings = ctx.cfg, ctx.cfg.method("logit_amplification")
    return memo(ctx.memo, ("amplification", seed), lambda: logit_amplification(
        ctx.hooked("base"), ctx.hooked("policy"), ctx.prompts[: settings.prompts], alphas=settings.alphas,
        seeds=(seed,), max_new_tokens=cfg.max_new_tokens, top_n=cfg.top_k * cfg.logit_tokens, high_utility=cfg.high_utility,
        reward=ctx.objective.reward, high=ctx.high))


def find(ctx: Context, at: HookData, seed: int) -> Found:
    """The registry's interface: the tokens whose frequency rises most over the policy's own samples at
    the smallest configured a, sampled with ``seed``. It names tokens, not latents, the same at every hook."""
    samples = {s.a: s for s in _measured(ctx, seed).samples}
    return Found.of_tokens(list(samples[min(ctx.cfg.method("logit_amplification").alphas)].rising_token_ids))


def record(ctx: Context, records: dict[str, tuple]) -> AmplificationRuns:
    """The once-per-run step: every seed's amplification measured by ``find``, and its plot."""
    runs = AmplificationRuns(tuple(v for k, v in ctx.memo.items() if isinstance(k, tuple) and k[0] == "amplification"))
    _plot(runs.runs, ModelDiffingResult.figure(ctx.run_dir, "amplification"))
    return runs


def _plot(runs: tuple[LogitAmplification, ...], out: Path) -> None:
    """Utility and the high-utility share of the rising tokens against a, mean ± spread over seeds."""
    if not runs:
        return
    alphas = [s.a for s in runs[0].samples]
    utility = np.array([[float(np.mean(s.utility)) for s in r.samples] for r in runs])
    precision = np.array([[s.precision for s in r.samples] for r in runs])
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(8, 3.2))
    ax.errorbar(alphas, utility.mean(0), yerr=utility.std(0), marker="o", capsize=3)
    ax.set(xlabel="a (0 base, 1 policy)", ylabel="mean utility of samples", title="logit-diff amplification")
    shown = [i for i, a in enumerate(alphas) if a != 1.0]  # at a = 1 nothing rises over the policy's own samples
    bx.errorbar([alphas[i] for i in shown], precision.mean(0)[shown], yerr=precision.std(0)[shown], marker="o", capsize=3)
    bx.set(xlabel="a", ylabel="high-utility share of rising tokens", ylim=(0, 1), title="what it exposes")
    save_figure(fig, out)
