"""The activation-difference lens (Minder et al. 2025, "Narrow finetuning leaves clearly readable traces").

On the first few tokens of unrelated text, the policy's activation minus the base's, averaged
over texts, position by position, is a direction the fine-tune writes whatever the input. Read
through the policy's logit lens it names the tokens the fine-tune promotes; added to the base's
activations while it samples, it shows how much of the policy's reward gain the direction alone
carries.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import replace

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor
from transformer_lens.hook_points import HookPoint

from analysis.activations import check_hook_names, hook_cache
from analysis.diffing.method import Context, Found, HookData, memo
from analysis.interventions import Hooks, reward_under_hooks
from analysis.results import ActivationDifferenceLens, LensPosition, ModelDiffingResult, SteeringPoint
from analysis.reward_gain import high_utility_tokens
from rlhf.errors import UserError
from rlhf.hooked import HookedModel, final_norm_gain
from rlhf.plots import plt, save_figure
from rlhf.rewards import RewardFunction, UtilityReward


def _first_tokens(model: HookedModel, texts: Sequence[str], n_positions: int) -> tuple[list[list[int]], int]:
    """Each text's token ids up to its ``n_positions``-th text token (texts shorter than that are
    left out), and how many leading tokens are BOS: an attention sink, not text."""
    tokenizer = model.tokenizer
    ids = [tokenizer(t)["input_ids"] for t in texts]
    bos = tokenizer.bos_token_id
    skip = 1 if bos is not None and ids and all(row[:1] == [bos] for row in ids) else 0
    rows = [row[: skip + n_positions] for row in ids if len(row) >= skip + n_positions]
    if not rows:
        raise UserError(f"no text has {n_positions} tokens: give longer texts or fewer lens positions")
    return rows, skip


@torch.no_grad()
def mean_difference(base: HookedModel, policy: HookedModel, hook: str, texts: Sequence[str],
                    n_positions: int = 5, batch_size: int = 64) -> tuple[Float[Tensor, "pos d"], Float[Tensor, " pos"], int]:
    """Mean (policy - base) activation at ``hook`` on each of the first ``n_positions`` text tokens,
    the mean ||base activation|| there, and the number of texts averaged over."""
    check_hook_names(base, [hook])
    rows, skip = _first_tokens(base, texts, n_positions)
    diff = torch.zeros(n_positions, base.cfg.d_model)
    norm = torch.zeros(n_positions)
    with hook_cache(base, [hook]) as run_b, hook_cache(policy, [hook]) as run_p:
        for start in range(0, len(rows), batch_size):
            tokens = torch.tensor(rows[start : start + batch_size], device=base.cfg.device)
            cache_b, cache_p = run_b(tokens), run_p(tokens)
            acts_b, acts_p = cache_b[hook][:, skip:].float().cpu(), cache_p[hook][:, skip:].float().cpu()
            diff += (acts_p - acts_b).sum(0)
            norm += acts_b.norm(dim=-1).sum(0)
    return diff / len(rows), norm / len(rows), len(rows)


@torch.no_grad()
def logit_lens(model: HookedModel, directions: Float[Tensor, "k d"]) -> Float[Tensor, "k vocab"]:
    """What each direction promotes through the model's final norm and unembedding. The norm's bias
    and the unembedding's bias add the same logits whatever the direction: left out, so the ranking
    is the direction's own."""
    x = directions.float().to(model.W_U.device)
    if model.cfg.normalization_type in ("LN", "LNPre"):
        x = x - x.mean(-1, keepdim=True)
    x = x / x.norm(dim=-1, keepdim=True).clamp(min=1e-12)
    return (x * final_norm_gain(model)) @ model.W_U


def add_direction(hook: str, vector: Float[Tensor, " d"]) -> Hooks:
    """A forward hook adding ``vector`` to the activation at ``hook`` at every position."""

    def steer(x: Float[Tensor, "batch pos d"], hook: HookPoint) -> Float[Tensor, "batch pos d"]:
        return x + vector.to(x.device, x.dtype)

    return [(hook, steer)]


def steering_curve(base: HookedModel, hook: str, direction: Float[Tensor, " d"], scale: float,
                   prompts: Sequence[str], *, alphas: Sequence[float], seeds: Sequence[int], max_new_tokens: int,
                   gain: float | None = None, reward: RewardFunction | None = None) -> tuple[SteeringPoint, ...]:
    """The base's mean ``reward`` (default: the sentiment utility) with alpha * ``scale`` * (unit ``direction``)
    added at ``hook``, per alpha, against the unsteered base on the same prompts and seeds (alpha = 0), and as
    a share of ``gain``."""
    unit = direction.float() / direction.norm().clamp(min=1e-12)
    sampling = dict(seeds=seeds, max_new_tokens=max_new_tokens, reward=reward or UtilityReward())
    unsteered = reward_under_hooks(base, [], prompts, **sampling)
    points = []
    for alpha in alphas:
        runs = unsteered if alpha == 0 else reward_under_hooks(base, add_direction(hook, alpha * scale * unit),
                                                               prompts, **sampling)
        change = float(np.mean([r["mean_reward"] - u["mean_reward"] for r, u in zip(runs, unsteered)]))
        points.append(SteeringPoint(
            alpha=float(alpha), reward=tuple(r["mean_reward"] for r in runs), reward_change=change,
            share_of_gain=change / gain if gain else None,
            kl_per_token=float(np.mean([r["kl_per_token"] for r in runs])), example=runs[0]["example"]))
    return tuple(points)


def sampled_gain(base: HookedModel, policy: HookedModel, prompts: Sequence[str], *, seeds: Sequence[int],
                 max_new_tokens: int, reward: RewardFunction | None = None) -> float:
    """Policy minus base mean ``reward`` (default: the sentiment utility) of sampled completions, on the same
    prompts and seeds."""
    sampling = dict(seeds=seeds, max_new_tokens=max_new_tokens, reward=reward or UtilityReward())
    means = [np.mean([r["mean_reward"] for r in reward_under_hooks(m, [], prompts, **sampling)]) for m in (policy, base)]
    return float(means[0] - means[1])


def activation_difference_lens(base: HookedModel, policy: HookedModel, hook: str, texts: Sequence[str],
                               prompts: Sequence[str], *, n_positions: int = 5, top_n: int = 10,
                               alphas: Sequence[float] = (0.0, 0.25, 0.5, 1.0, 2.0), seeds: Sequence[int] = (0, 1),
                               max_new_tokens: int = 19, gain: float | None = None, high_utility: float = 2.0,
                               held_out: Float[Tensor, "tokens d"] | None = None, reward: RewardFunction | None = None,
                               high: Collection[int] | None = None
                               ) -> tuple[ActivationDifferenceLens, Found | None]:
    """The lens at ``hook``: per position, the mean difference on ``texts`` (unrelated text: held-out
    corpus texts, say) and the ``top_n`` tokens it promotes; then the base steered along the difference
    averaged over positions, scaled to the typical activation norm, while it completes ``prompts``.
    ``gain`` is G (e.g. the exact gain of ``analysis.reward_gain.split_gain``); without it, G is the
    policy's sampled reward minus the base's on the same prompts and seeds. ``reward`` scores samples and
    ``high`` is what the promoted tokens are scored against: by default the sentiment utility and the
    tokens of valence >= ``high_utility``; an organism passes its own reward and answer tokens.

    With ``held_out`` (policy activations at ``hook``, tokens x d) also the per-position directions
    as a diffing method's latents: their projections there and the directions themselves."""
    diffs, norms, n_texts = mean_difference(base, policy, hook, texts, n_positions)
    mean = diffs.mean(0)
    answer = torch.zeros(policy.cfg.d_vocab, dtype=torch.bool)
    answer[list(high_utility_tokens(policy.tokenizer, policy.cfg.d_vocab, high_utility) if high is None else high)] = True
    names = policy.tokenizer.convert_ids_to_tokens(list(range(len(policy.tokenizer))))

    def promoted(direction: Float[Tensor, "k d"]) -> list[tuple[tuple[str, ...], float]]:
        top = torch.topk(logit_lens(policy, direction)[:, : len(names)], top_n, dim=-1).indices.cpu()
        return [(tuple(names[t] for t in row), float(answer[row].float().mean())) for row in top.tolist()]

    cosines = torch.nn.functional.cosine_similarity(diffs, mean[None], dim=-1)
    positions = tuple(LensPosition(position=i, norm=float(diffs[i].norm()), relative_norm=float(diffs[i].norm() / norms[i]),
                                   cosine_to_mean=float(cosines[i]), promoted=tokens, high_utility_share=share)
                      for i, (tokens, share) in enumerate(promoted(diffs)))
    (mean_tokens, mean_share), = promoted(mean[None])
    source = "given" if gain is not None else "sampled"
    if gain is None:
        gain = sampled_gain(base, policy, prompts, seeds=seeds, max_new_tokens=max_new_tokens, reward=reward)
    steering = steering_curve(base, hook, mean, float(norms.mean()), prompts, alphas=alphas, seeds=seeds,
                              max_new_tokens=max_new_tokens, gain=gain, reward=reward)
    result = ActivationDifferenceLens(hook=hook, texts=n_texts, activation_norm=float(norms.mean()), positions=positions,
                                      promoted=mean_tokens, high_utility_share=mean_share, steering=steering, gain=gain,
                                      gain_source=source)
    return result, None if held_out is None else as_found(diffs, held_out)


def as_found(diffs: Float[Tensor, "pos d"], held_out: Float[Tensor, "tokens d"]) -> Found:
    """The per-position differences as a method's latents: their directions, and the projections of
    held-out policy activations on them."""
    units = diffs / diffs.norm(dim=-1, keepdim=True).clamp(min=1e-12)
    return Found(list(range(len(diffs))), held_out.float() @ units.T, diffs)


def find(ctx: Context, at: HookData, seed: int) -> Found:
    """The registry's interface: the lens at ``at.hook`` on its ``texts`` held-out corpus texts, its
    per-position directions as the method's latents and its reading and steering curve as the record
    (no dictionary, so ``seed`` does not apply). Steering shares are of the sampled gain on the
    stage's prompts and sampling seeds, measured once for every hook."""
    cfg, lens = ctx.cfg, ctx.cfg.method("activation_difference_lens")
    base, policy = ctx.hooked("base"), ctx.hooked("policy")
    sampling = dict(seeds=cfg.sampling_seeds, max_new_tokens=cfg.max_new_tokens, reward=ctx.objective.reward)
    gain = memo(ctx.memo, "sampled_gain", lambda: sampled_gain(base, policy, ctx.prompts, **sampling))
    record, found = activation_difference_lens(
        base, policy, at.hook, ctx.run_dir.texts("val")[: lens.texts], ctx.prompts, n_positions=lens.positions,
        top_n=cfg.logit_tokens, alphas=(0.0, *lens.steering_alphas), gain=gain, high_utility=cfg.high_utility,
        held_out=at.policy, high=ctx.high, **sampling)
    return replace(found, record=replace(record, gain_source="sampled"))


def plot(ctx: Context, records: dict[str, tuple[ActivationDifferenceLens, ...]]) -> None:
    """The once-per-run step: the base's reward change, as a share of the sampled gain, steered along
    each hook's lens direction, in one figure."""
    lensed = [lens for rows in records.values() for lens in rows]
    if not lensed:
        return None
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(8, 3.2))
    for lens in lensed:
        alphas = [p.alpha for p in lens.steering]
        ax.plot(alphas, [p.share_of_gain or 0.0 for p in lens.steering], marker="o", label=lens.hook)
        bx.plot(alphas, [p.kl_per_token for p in lens.steering], marker="o", label=lens.hook)
    ax.set(xlabel="alpha (x typical activation norm)", ylabel="share of the sampled gain", title="steering the base")
    bx.axhline(0.5, color="grey", linestyle="--", linewidth=1)  # above it the edit breaks the model
    bx.set(xlabel="alpha", ylabel="KL per token vs unsteered base", title="what the steering costs")
    ax.legend(fontsize=7)
    save_figure(fig, ModelDiffingResult.figure(ctx.run_dir, "steering"))
    return None
