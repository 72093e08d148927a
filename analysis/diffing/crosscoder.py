"""The BatchTopK crosscoder (``analysis.crosscoder``) as a diffing method: its latents leaning to the
policy by relative decoder norm, ranked two ways (two registry entries, one trained crosscoder):
- ``by_scaling``: by latent scaling, the base explaining them least first (Minder et al. 2025);
- ``by_norm``: by relative decoder norm alone.
``crosscoded`` also gives the stage the crosscoder's own numbers and the card data."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch
from jaxtyping import Float
from torch import Tensor

from analysis.crosscoder import (
    BatchTopKCrosscoder,
    DictionaryEvaluation,
    decoder_cosines,
    evaluate,
    latent_scaling,
    load_crosscoder,
    paired_stream,
    relative_norms,
    train_crosscoder,
)
from analysis.diffing.method import Context, Found, HookData, chunks, encode, memo, pick, saved, train_or_load, work_dir
from analysis.feature_attribution import Dictionary, crosscoder_dictionary
from analysis.results import LatentStats
from rlhf.rundir import RunDir


@dataclass
class Crosscoded:
    """One training seed's crosscoder at a hook: held-out numbers, per-latent statistics and codes."""

    crosscoder: BatchTopKCrosscoder
    evaluation: DictionaryEvaluation  # on the held-out tokens
    latents: LatentStats
    codes: Float[Tensor, "tokens latents"]
    leaning: list[int]  # firing latents whose relative decoder norm passes the threshold
    specificity: Float[Tensor, " latents"]  # the larger |nu| of latent scaling; inf where undefined
    directions: Float[Tensor, "latents d"]  # policy decoder directions, in the policy's units
    policy_specific: int  # leaning latents the base does not explain (both latent-scaling ratios below max_nu)


def path(run_dir: RunDir, hook: str, seed: int) -> Path:
    """Where the crosscoder of ``seed`` at ``hook`` is saved."""
    return work_dir(run_dir, hook) / f"crosscoder_seed{seed}.safetensors"


def dictionary(name: str, run_dir: RunDir, hook: str, seed: int) -> Dictionary:
    """The crosscoder of ``seed`` as reward attribution reads it: per-latent differences, each model's decoder."""
    return crosscoder_dictionary(name, hook, load_crosscoder(saved(path(run_dir, hook, seed), name, hook)))


def _crosscoded(ctx: Context, at: HookData, seed: int) -> Crosscoded:
    cfg = ctx.cfg
    cc = replace(cfg.crosscoder, seed=seed)
    train_dirs = [ctx.run_dir.activations(m, at.hook, "train") for m in ("base", "policy")]
    crosscoder = train_or_load(path(ctx.run_dir, at.hook, seed), lambda: train_crosscoder(
        cc, paired_stream(train_dirs, cc.batch_size, seed), [0, 1], [0, 1], progress=f"crosscoder {at.hook}"))
    held = chunks(at.pair)
    evaluation = evaluate(crosscoder, held, [0, 1], [0, 1])
    scaling = latent_scaling(crosscoder, held)
    rel, cos = relative_norms(crosscoder).detach(), decoder_cosines(crosscoder).detach()
    freq = evaluation.firing_frequency
    leaning = [int(i) for i in ((rel > cfg.relative_norm_threshold) & (freq > 0)).nonzero()[:, 0]]
    # A latent is as specific as the larger of its two ratios says; NaN (never fires) sorts last.
    specificity = torch.maximum(scaling["nu_error"].abs(), scaling["nu_recon"].abs()).nan_to_num(float("inf"))
    latents = LatentStats(relative_norm=tuple(rel.tolist()), cosine=tuple(cos.tolist()), frequency=tuple(freq.tolist()),
                          nu_error=tuple(scaling["nu_error"].tolist()), nu_recon=tuple(scaling["nu_recon"].tolist()))
    return Crosscoded(crosscoder, evaluation, latents, encode(crosscoder, at.pair), leaning, specificity,
                      (crosscoder.W_dec[:, 1] / crosscoder.out_scale[1]).detach(),
                      int(sum(float(specificity[i]) < cfg.max_nu for i in leaning)))


def crosscoded(ctx: Context, at: HookData, seed: int) -> Crosscoded:
    """The crosscoder of ``seed`` at this hook, trained (or loaded) and evaluated once."""
    return memo(at.memo, ("crosscoder", seed), lambda: _crosscoded(ctx, at, seed))


def by_scaling(ctx: Context, at: HookData, seed: int) -> Found:
    c = crosscoded(ctx, at, seed)
    return pick(sorted(c.leaning, key=lambda i: float(c.specificity[i])), c.codes, c.directions, ctx.depth)


def by_norm(ctx: Context, at: HookData, seed: int) -> Found:
    c = crosscoded(ctx, at, seed)
    return pick(sorted(c.leaning, key=lambda i: -c.latents.relative_norm[i]), c.codes, c.directions, ctx.depth)
