"""The difference dictionary: a BatchTopK dictionary reading the base's activation and writing the
policy's (``analysis.crosscoder`` with one source and one target), its latents ranked by how much
they write along the actual difference (policy - base) on held-out tokens."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from einops import einsum
from jaxtyping import Float
from torch import Tensor

from analysis.crosscoder import (
    BatchTopKCrosscoder,
    DictionaryEvaluation,
    evaluate,
    load_crosscoder,
    paired_stream,
    train_crosscoder,
)
from analysis.diffing.method import Context, Found, HookData, chunks, encode, memo, pick, saved, train_or_load, work_dir
from analysis.feature_attribution import Dictionary, direction_dictionary
from rlhf.rundir import RunDir


@dataclass
class DifferenceDictionary:
    dictionary: BatchTopKCrosscoder
    evaluation: DictionaryEvaluation  # on the held-out tokens (explained variance of the policy)
    codes: Float[Tensor, "tokens latents"]
    directions: Float[Tensor, "latents d"]  # in the policy's units


def path(run_dir: RunDir, hook: str, seed: int) -> Path:
    """Where the difference dictionary of ``seed`` at ``hook`` is saved."""
    return work_dir(run_dir, hook) / f"difference_dictionary_seed{seed}.safetensors"


def dictionary(name: str, run_dir: RunDir, hook: str, seed: int) -> Dictionary:
    """The difference dictionary of ``seed`` as reward attribution reads it: its write directions."""
    model = load_crosscoder(saved(path(run_dir, hook, seed), name, hook))
    return direction_dictionary(name, hook, model.W_dec[:, 0] / model.out_scale[0])


def _trained(ctx: Context, at: HookData, seed: int) -> DifferenceDictionary:
    cc = replace(ctx.cfg.crosscoder, seed=seed, training_tokens=ctx.cfg.method("difference_dictionary").tokens)
    train_dirs = [ctx.run_dir.activations(m, at.hook, "train") for m in ("base", "policy")]
    model = train_or_load(path(ctx.run_dir, at.hook, seed), lambda: train_crosscoder(
        cc, paired_stream(train_dirs, cc.batch_size, seed), [0], [1], progress=f"difference dictionary {at.hook}"))
    return DifferenceDictionary(model, evaluate(model, chunks(at.pair), [0], [1]), encode(model, at.base[:, None]),
                                (model.W_dec[:, 0] / model.out_scale[0]).detach())


def trained(ctx: Context, at: HookData, seed: int) -> DifferenceDictionary:
    """The difference dictionary of ``seed`` at this hook, trained (or loaded) and evaluated once."""
    return memo(at.memo, ("difference_dictionary", seed), lambda: _trained(ctx, at, seed))


def find(ctx: Context, at: HookData, seed: int) -> Found:
    d = trained(ctx, at, seed)
    # How much each latent writes along the actual difference, per unit of direction.
    along = einsum(d.codes, at.policy - at.base, d.directions, "t m, t d, m d -> m") / d.directions.norm(dim=-1).clamp(
        min=1e-12)
    return pick(along.argsort(descending=True).tolist(), d.codes, d.directions, ctx.depth)
