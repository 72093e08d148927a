"""Crosscoders: one sparse code for the same token in base and policy, one decoder per model.

A crosscoder's encoder reads both models' activations at a hook; its latents are shared
and each model has its own decoder vector per latent. A latent whose policy decoder is
long and base decoder short is "policy-specific" by the relative decoder norm. With an
L1 penalty that norm is biased: a concept present in both models but weaker in one gets
its weak decoder shrunk to zero (complete shrinkage), and a latent can fire on a concept
another latent already covers in the base (latent decoupling). Two fixes are built in:
BatchTopK sparsity (no L1 term to shrink decoders; Bussmann et al. 2024, as Minder et
al. 2025 use for crosscoders) and latent scaling (Minder et al. 2025): for each latent,
the least-squares scale beta with which its policy decoder direction explains each model's
reconstruction and each model's error; the ratio base/policy is near 1 for a shared
concept and near 0 for one the base really lacks.

The same module trains the *difference dictionary* of the original study: an encoder
that reads the base activation and a decoder that writes the policy's (one source, one
target). Written by hand: SAE-Lens 6.54 trains single-stream SAEs and has no crosscoder,
and its transcoders have no trainer.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from einops import einsum
from jaxtyping import Float
from safetensors.torch import load_file
from torch import Tensor, nn
from tqdm.auto import tqdm

from analysis.config import CrosscoderConfig  # noqa: F401  (re-exported: callers import it from here)
from analysis.metrics import ExplainedVariance
from analysis.results import CachedHook
from rlhf.errors import UserError
from rlhf.rundir import atomic_write


class BatchTopKCrosscoder(nn.Module):
    """BatchTopK dictionary from ``n_sources`` activation streams to ``n_targets`` streams.

    Crosscoder: sources = targets = (base, policy). Difference dictionary: source base,
    target policy. Inputs and targets are scaled so each stream has mean squared norm d
    (the scales are buffers, applied inside); decoder norms are compared in that space."""

    def __init__(self, n_sources: int, n_targets: int, d: int, n_latents: int, k: int, seed: int = 0,
                 init_norm: float = 0.1):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        # Decoder rows start short (a fixed norm per target) and the encoder as their transpose, as the
        # diffing-toolkit's crosscoders do: every latent begins reading the direction it writes, so each
        # gets tokens to fire on instead of a random few winning the BatchTopK race from step 0.
        dec = torch.randn(n_latents, n_targets, d, generator=gen)
        dec = dec / dec.norm(dim=-1, keepdim=True) * init_norm
        self.W_dec = nn.Parameter(dec)
        enc = torch.randn(n_sources, d, n_latents, generator=gen)
        enc = enc / enc.norm(dim=1, keepdim=True) * init_norm
        for s in range(min(n_sources, n_targets)):
            enc[s] = dec[:, s].T
        self.W_enc = nn.Parameter(enc)
        self.b_enc = nn.Parameter(torch.zeros(n_latents))
        self.b_dec = nn.Parameter(torch.zeros(n_targets, d))
        self.k = k
        self.register_buffer("in_scale", torch.ones(n_sources))
        self.register_buffer("out_scale", torch.ones(n_targets))
        self.register_buffer("threshold", torch.tensor(-1.0))  # inference threshold, learned during training

    @property
    def n_latents(self) -> int:
        return self.W_dec.shape[0]

    def decoder_norms(self) -> Float[Tensor, "latents targets"]:
        return self.W_dec.norm(dim=-1)

    def linear(self, x: Float[Tensor, "batch sources d"]) -> Float[Tensor, "batch latents"]:
        """Encoder pre-activations before the ReLU."""
        return einsum(x * self.in_scale[:, None], self.W_enc, "b s d, s d m -> b m") + self.b_enc

    def pre_acts(self, x: Float[Tensor, "batch sources d"]) -> Float[Tensor, "batch latents"]:
        return torch.relu(self.linear(x))

    def encode(self, x: Float[Tensor, "batch sources d"]) -> Float[Tensor, "batch latents"]:
        """BatchTopK while training: the batch keeps its k * batch largest latent values, weighted by
        decoder norm. At inference a fixed threshold (the running mean of the smallest kept value)
        replaces the batch, so a token's code does not depend on its neighbours."""
        return self.select(self.pre_acts(x), update_threshold=self.training)

    def select(self, acts: Float[Tensor, "batch latents"], update_threshold: bool = False) -> Float[Tensor, "batch latents"]:
        """The kept part of ReLU'd pre-activations: BatchTopK in training mode, the threshold otherwise."""
        score = acts * self.decoder_norms().sum(-1)
        if not self.training:
            return acts * (score > self.threshold.clamp(min=0))
        flat = score.flatten()
        keep = torch.topk(flat, min(self.k * acts.shape[0], flat.numel())).indices
        mask = torch.zeros_like(flat, dtype=torch.bool)
        mask[keep] = True
        mask = mask.view_as(score) & (score > 0)
        kept = score[mask]
        if update_threshold and kept.numel():
            smallest = kept.min().detach()
            self.threshold.copy_(smallest if self.threshold < 0 else 0.99 * self.threshold + 0.01 * smallest)
        return acts * mask

    def decode(self, f: Float[Tensor, "batch latents"]) -> Float[Tensor, "batch targets d"]:
        """Reconstructions in each target's own units."""
        return (einsum(f, self.W_dec, "b m, m t d -> b t d") + self.b_dec) / self.out_scale[:, None]

    def forward(self, x: Float[Tensor, "batch sources d"]) -> tuple[Float[Tensor, "batch latents"], Float[Tensor, "batch targets d"]]:
        f = self.encode(x)
        return f, self.decode(f)


def paired_stream(directories: Sequence[Path], batch_size: int, seed: int) -> Iterator[Float[Tensor, "batch streams d"]]:
    """Endless shuffled batches of the same tokens from several caches of one hook (e.g. base and
    policy), stacked as (batch, stream, d); the caches must hold the same token stream."""
    shards = [CachedHook.read(Path(d)).shards for d in directories]
    if any(s != shards[0] for s in shards):
        raise UserError(f"caches {', '.join(map(str, directories))} hold different shards; re-run the activations stage")
    rng = random.Random(seed)
    gen = torch.Generator().manual_seed(seed)
    while True:
        for name in rng.sample(shards[0], len(shards[0])):
            parts = [load_file(str(Path(d) / name)) for d in directories]
            if any(not torch.equal(p["tokens"], parts[0]["tokens"]) for p in parts):
                raise UserError(f"shard {name} holds different tokens in {', '.join(map(str, directories))}")
            acts = torch.stack([p["activations"].float() for p in parts], dim=1)
            acts = acts[torch.randperm(len(acts), generator=gen)]
            for start in range(0, len(acts) - batch_size + 1, batch_size):
                yield acts[start : start + batch_size]


def _mean_sq_norm(x: Float[Tensor, "batch streams d"]) -> Float[Tensor, " streams"]:
    return (x**2).sum(-1).mean(0)


def _lr_factor(step: int, steps: int, warmup: float, decay: float) -> float:
    """Linear warm-up over the first ``warmup`` of the steps, constant, then linear decay to 0 over the last ``decay``."""
    rise = (step + 1) / max(1.0, warmup * steps)
    fall = (steps - step) / max(1.0, decay * steps)
    return min(1.0, rise, fall)


@torch.no_grad()
def _init_from_tokens(model: BatchTopKCrosscoder, centred: Float[Tensor, "batch targets d"], gen: torch.Generator) -> None:
    """Point each latent's decoders at one training token's centred activations (its own draw, with
    replacement), at the model's initial norm, and its encoder at their transpose: the activations
    fill a subspace of a few dimensions, and random directions would leave most of each decoder's
    norm outside it, where nothing trains it and every relative norm sits at 1/2."""
    norm = model.W_dec.norm(dim=-1, keepdim=True)
    pick = centred[torch.randint(len(centred), (model.n_latents,), generator=gen)]
    pick = pick + 1e-3 * torch.randn(pick.shape, generator=gen) * pick.norm(dim=-1, keepdim=True)  # no two alike
    model.W_dec.copy_(pick / pick.norm(dim=-1, keepdim=True).clamp(min=1e-12) * norm)
    for s in range(min(model.W_enc.shape[0], model.W_dec.shape[1])):
        model.W_enc[s] = model.W_dec[:, s].T


def train_crosscoder(cfg: CrosscoderConfig, batches: Iterator[Float[Tensor, "batch streams d"]],
                     sources: Sequence[int], targets: Sequence[int], progress: str = "crosscoder") -> BatchTopKCrosscoder:
    """Train on batches of stacked streams; ``sources`` and ``targets`` index the stream axis.

    The diffing-toolkit's recipe (science-of-finetuning/dictionary_learning, BatchTopKCrossCoderTrainer):
    each stream scaled to mean squared norm d (so neither model's scale dominates the shared code),
    short decoders with the encoder as their transpose, decoder bias at the data mean, Adam (the
    default rate is the recipe's 2e-4 / sqrt(latents / 2^14) at 128 latents) with warm-up and a final
    linear decay, gradient clipping, and an AuxK loss in which latents silent for ``dead_after_tokens``
    reconstruct what the live ones missed. Two changes for activations that span few dimensions (the demo's: ~10 of 128): decoders
    start at training tokens' directions, and AuxK gives the residual to one dead latent per token
    (not d/2 of them) with weight 1 (not 1/32): split d/2 ways, each dead latent's share stays below
    the smallest contribution BatchTopK keeps, so it never fires again (measured in bench/crosscoder.py)."""
    first = next(batches)
    if not torch.isfinite(first).all():
        raise UserError("non-finite activations in the crosscoder's training data")
    d = first.shape[-1]
    model = BatchTopKCrosscoder(len(sources), len(targets), d, int(round(cfg.expansion * d)), cfg.k, cfg.seed,
                                init_norm=cfg.init_norm)
    scale = (d / _mean_sq_norm(first).clamp(min=1e-12)).sqrt()
    model.in_scale.copy_(scale[list(sources)])
    model.out_scale.copy_(scale[list(targets)])
    with torch.no_grad():
        y = first[:, list(targets)] * model.out_scale[:, None]
        model.b_dec.copy_(y.mean(0))
        if cfg.init_from_data:
            _init_from_tokens(model, y - y.mean(0), torch.Generator().manual_seed(cfg.seed))
    opt = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate, betas=(0.9, 0.999))
    steps = max(1, cfg.training_tokens // cfg.batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr_factor(s, steps, cfg.warmup_fraction, cfg.decay_fraction))
    since_fired = torch.zeros(model.n_latents)
    model.train()
    batch = first
    for step in tqdm(range(steps), desc=progress, unit="step", leave=False):
        if step:
            batch = next(batches)
        x, y = batch[:, list(sources)], batch[:, list(targets)] * model.out_scale[:, None]
        lin = model.linear(x)
        f = model.select(torch.relu(lin), update_threshold=True)
        recon = einsum(f, model.W_dec, "b m, m t d -> b t d") + model.b_dec
        residual = y - recon
        loss = (residual**2).sum(-1).mean()
        since_fired = torch.where((f > 0).any(0), torch.zeros_like(since_fired), since_fired + len(x))
        dead = since_fired >= cfg.dead_after_tokens
        if cfg.aux_coefficient and dead.any():
            # AuxK (Gao et al. 2024): the dead latents' top pre-activations must explain what the live ones
            # missed. Before the ReLU, so that a latent negative on every token still gets a gradient.
            pre = lin.masked_fill(~dead, float("-inf"))
            top = torch.topk(pre, min(cfg.aux_k, int(dead.sum())), dim=-1)
            aux_f = torch.zeros_like(lin).scatter(-1, top.indices, top.values)
            aux = einsum(aux_f, model.W_dec, "b m, m t d -> b t d")
            err = residual.detach()
            loss = loss + cfg.aux_coefficient * ((err - aux) ** 2).sum(-1).mean() / (
                ((err - err.mean(0)) ** 2).sum(-1).mean().clamp(min=1e-12))
        if not torch.isfinite(loss):
            raise FloatingPointError(f"crosscoder loss became {loss.item()} at step {step}; lower the learning rate")
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
    model.eval()
    return model


@dataclass(frozen=True)
class DictionaryEvaluation:
    """A crosscoder or difference dictionary on held-out batches."""

    explained_variance: tuple[float, ...]  # per target
    l0: float  # latents firing per token
    dead_fraction: float  # share of latents that never fire
    firing_frequency: Float[Tensor, " latents"]  # share of tokens each latent fires on


@torch.no_grad()
def evaluate(model: BatchTopKCrosscoder, batches: Sequence[Float[Tensor, "_batch streams d"]], sources: Sequence[int],
             targets: Sequence[int]) -> DictionaryEvaluation:
    """Explained variance per target, L0, dead-latent fraction and firing frequency on held-out batches."""
    fired = torch.zeros(model.n_latents)
    explained = ExplainedVariance()  # per target
    n, l0 = 0, 0.0
    for batch in batches:
        f, recon = model(batch[:, list(sources)])
        explained.update(batch[:, list(targets)], recon)
        fired += (f > 0).float().sum(0)
        l0 += float((f > 0).float().sum())
        n += len(batch)
    return DictionaryEvaluation(explained_variance=tuple(explained.compute().tolist()), l0=l0 / n,
                                dead_fraction=float((fired == 0).float().mean()), firing_frequency=fired / n)


def relative_norms(model: BatchTopKCrosscoder, base: int = 0, policy: int = 1) -> Float[Tensor, " latents"]:
    """||d_policy|| / (||d_base|| + ||d_policy||): 0 base-only, 1/2 shared, 1 policy-only."""
    norms = model.decoder_norms()
    return norms[:, policy] / (norms[:, base] + norms[:, policy]).clamp(min=1e-12)


def plot_relative_norms(path: Path, norms: dict[str, Sequence[float]], *, title: str,
                        threshold: float | None = None) -> Path:
    """Histogram PNG of relative decoder norms, one outline per entry of ``norms`` (e.g. per training
    seed; pass only latents that fire on held-out text). Log counts, so that the model-specific
    tails near 0 and 1 stay visible beside the shared bulk at 1/2; ``threshold`` (the stage's
    policy-leaning cut) and 1 - threshold are marked."""
    from rlhf.plots import plt, save_figure

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=110)
    bins = [i / 50 for i in range(51)]
    for label, values in norms.items():
        ax.hist(list(values), bins=bins, histtype="step", linewidth=1.5, label=f"{label} ({len(values)} latents)")
    ax.axvline(0.5, color="grey", linewidth=1)
    for x in () if threshold is None else (threshold, 1 - threshold):
        ax.axvline(x, color="grey", linestyle="--", linewidth=1)
    ax.set_yscale("log")
    ax.set(title=title, xlabel="relative decoder norm  |d_policy| / (|d_base| + |d_policy|)", ylabel="latents",
           xlim=(0, 1))
    ax.annotate("base-only", (0.01, 0.97), xycoords="axes fraction", va="top", fontsize=8)
    ax.annotate("policy-only", (0.99, 0.97), xycoords="axes fraction", va="top", ha="right", fontsize=8)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper center")
    return save_figure(fig, path)


def decoder_cosines(model: BatchTopKCrosscoder, base: int = 0, policy: int = 1) -> Float[Tensor, " latents"]:
    return torch.nn.functional.cosine_similarity(model.W_dec[:, base], model.W_dec[:, policy], dim=-1)


@torch.no_grad()
def latent_scaling(model: BatchTopKCrosscoder, batches: Sequence[Float[Tensor, "_batch streams d"]],
                   base: int = 0, policy: int = 1) -> dict[str, Float[Tensor, " latents"]]:
    """Latent scaling (Minder et al. 2025) for every latent of a (base, policy) crosscoder.

    With d_j the latent's policy decoder direction and f_j its activation, beta is the least-squares
    scale in  target_M(x) ~ beta * f_j(x) * d_j  over held-out tokens, for each model M and two
    targets: M's reconstruction, and M's error plus the latent's own contribution to M. The ratios
    nu = beta_base / beta_policy are near 1 when the base carries the concept too (a shared concept
    wrongly called policy-specific) and near 0 when it does not. Computed in the scaled space."""
    d_pol: Float[Tensor, "m d"] = model.W_dec[:, policy]
    num = {key: torch.zeros(model.n_latents) for key in ("recon_base", "recon_policy", "error_base", "error_policy")}
    f_sq = torch.zeros(model.n_latents)
    for batch in batches:
        x = batch[:, [base, policy]]
        f = model.encode(x)
        y = x * model.out_scale[:, None]  # the scaled space the decoders live in
        recon = einsum(f, model.W_dec, "b m, m t d -> b t d") + model.b_dec
        error = y - recon
        f_sq += (f**2).sum(0)
        for name, t in (("base", base), ("policy", policy)):
            # sum_x f_j(x) <d_j, target(x)> for every latent at once
            num[f"recon_{name}"] += einsum(f, recon[:, t], d_pol, "b m, b d, m d -> m")
            own = (f**2).sum(0) * einsum(model.W_dec[:, t], d_pol, "m d, m d -> m")
            num[f"error_{name}"] += einsum(f, error[:, t], d_pol, "b m, b d, m d -> m") + own
    denom = f_sq * (d_pol**2).sum(-1)
    beta = {key: torch.where(denom > 0, v / denom.clamp(min=1e-12), torch.full_like(v, float("nan"))) for key, v in num.items()}
    ratio = {f"nu_{kind}": beta[f"{kind}_base"] / beta[f"{kind}_policy"].where(beta[f"{kind}_policy"].abs() > 1e-6,
                                                                                torch.tensor(float("nan")))
             for kind in ("recon", "error")}
    return {**{f"beta_{k}": v for k, v in beta.items()}, **ratio}


# Bumped when training changes what a saved crosscoder means: a file from an older recipe (e.g. the
# one that left most latents dead) must be retrained, not silently reused.
RECIPE = 2


def save_crosscoder(model: BatchTopKCrosscoder, path: Path) -> Path:
    from safetensors.torch import save_file

    state = {**{k: v.contiguous() for k, v in model.state_dict().items()}, "k": torch.tensor(model.k),
             "recipe": torch.tensor(RECIPE)}
    return atomic_write(path, lambda tmp: save_file(state, str(tmp)))


def load_crosscoder(path: Path) -> BatchTopKCrosscoder:
    if not Path(path).exists():
        raise UserError(f"no crosscoder at {path} (run the model_diffing stage)")
    state = load_file(str(path))
    if int(state.pop("recipe", torch.tensor(1))) != RECIPE:
        raise UserError(f"{path} was trained by an older crosscoder recipe; delete it and re-run model_diffing")
    n_latents, n_targets, d = state["W_dec"].shape
    model = BatchTopKCrosscoder(state["W_enc"].shape[0], n_targets, d, n_latents, int(state.pop("k")))
    model.load_state_dict(state)
    return model.eval()
