"""The crosscoder's card data (its latents leaning furthest to the policy, with what they write into
each model on their top held-out texts) and the stage's figures: the crosscoder's relative norm
against latent scaling, the lens's steering curves and logit-diff amplification."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from analysis.contexts import display_tokens, top_windows
from analysis.diffing.crosscoder import Crosscoded
from analysis.diffing.method import Context, HookData
from analysis.feature_diff import histogram_counts
from analysis.results import CardExample, LatentCard, LatentHistogram, LayerDiffing
from rlhf.plots import plt, save_figure


def latent_card(i: int, c: Crosscoded, at: HookData, ctx: Context) -> LatentCard:
    """Crosscoder latent ``i``'s card data: its write into each model on its top held-out texts."""
    norms = c.crosscoder.decoder_norms().detach()[i] / c.crosscoder.out_scale
    values = c.codes[:, i]
    logits = c.directions[i] @ ctx.unembed
    active = values[values > 0]
    edges = torch.linspace(0, float(active.max()) if len(active) else 1.0, 21)
    lat = c.latents
    return LatentCard(
        latent=i, relative_norm=lat.relative_norm[i], cosine=lat.cosine[i], nu_error=lat.nu_error[i],
        nu_recon=lat.nu_recon[i], frequency=lat.frequency[i],
        top_logit_tokens=tuple(ctx.vocab[t] for t in torch.topk(logits, 5).indices.tolist()),
        bottom_logit_tokens=tuple(ctx.vocab[t] for t in torch.topk(-logits, 5).indices.tolist()),
        histogram=LatentHistogram(tuple(edges.tolist()), histogram_counts(active, edges)),
        examples=tuple(CardExample(tuple(display_tokens(ctx.tokenizer, at.text.tokens[lo:hi].tolist())),
                                   tuple((values[lo:hi] * norms[1]).tolist()), tuple((values[lo:hi] * norms[0]).tolist()))
                       for lo, hi in top_windows(values, at.text, 3, ctx.cfg.context, ctx.cfg.context // 3)),
    )


def latent_cards(c: Crosscoded, at: HookData, ctx: Context) -> tuple[LatentCard, ...]:
    """Cards for the firing latents leaning furthest to the policy (whether or not they pass the threshold);
    latents that never fire on held-out text get none."""
    lat = c.latents
    carded = sorted((i for i, f in enumerate(lat.frequency) if f > 0), key=lambda i: -lat.relative_norm[i])
    return tuple(latent_card(i, c, at, ctx) for i in carded[: ctx.cfg.cards])


def plot(layers: list[LayerDiffing], threshold: float, out: Path) -> None:
    fig, axes = plt.subplots(1, len(layers), figsize=(3.6 * len(layers), 3.2), squeeze=False)
    for ax, layer in zip(axes[0], layers):
        lat = layer.latents
        rel = np.asarray(lat.relative_norm)
        nu = np.asarray(lat.nu_error, dtype=float)
        live = np.asarray(lat.frequency) > 0
        ax.scatter(rel[live], np.clip(nu[live], -0.5, 1.5), s=6, alpha=0.6)
        ax.axvline(threshold, color="grey", linestyle="--", linewidth=1)
        ax.set(title=layer.hook, xlabel="relative decoder norm (policy)", ylabel="nu (error), clipped")
        ax.set_xlim(0, 1)
    fig.suptitle("Crosscoder latents: relative norm vs latent scaling (low nu: the base lacks it)", fontsize=10)
    save_figure(fig, out)
