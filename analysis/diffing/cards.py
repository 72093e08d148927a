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
from analysis.results import CardExample, LatentCard, LatentHistogram, LayerDiffing, LogitAmplification
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


def plot_steering(layers: list[LayerDiffing], out: Path) -> None:
    """The base's reward change, as a share of the sampled gain, steered along each hook's lens direction."""
    lensed = [layer.lens for layer in layers if layer.lens is not None]
    if not lensed:
        return
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(8, 3.2))
    for lens in lensed:
        alphas = [p.alpha for p in lens.steering]
        ax.plot(alphas, [p.share_of_gain or 0.0 for p in lens.steering], marker="o", label=lens.hook)
        bx.plot(alphas, [p.kl_per_token for p in lens.steering], marker="o", label=lens.hook)
    ax.set(xlabel="alpha (x typical activation norm)", ylabel="share of the sampled gain", title="steering the base")
    bx.axhline(0.5, color="grey", linestyle="--", linewidth=1)  # above it the edit breaks the model
    bx.set(xlabel="alpha", ylabel="KL per token vs unsteered base", title="what the steering costs")
    ax.legend(fontsize=7)
    save_figure(fig, out)


def plot_amplification(runs: tuple[LogitAmplification, ...], out: Path) -> None:
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
