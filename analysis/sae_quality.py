"""How good is a dictionary? Reconstruction and LM-loss metrics on held-out tokens.

Explained variance, MSE, L0 and the dead-feature fraction come from the cached
held-out activations. LM loss recovered splices the SAE's reconstruction into the
model through a TransformerLens hook: (loss with the hook zeroed - loss with the
reconstruction) / (loss zeroed - clean loss), so 1 means the dictionary loses nothing
the model uses and 0 means it is no better than deleting the activation.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence

import torch
from jaxtyping import Bool, Float
from sae_lens import SAE
from torch import Tensor

from analysis.activations import input_hook, load_shards
from analysis.config import QualityConfig  # noqa: F401  (re-exported: callers import it from here)
from analysis.dictionaries import load_sae
from analysis.metrics import ExplainedVariance
from analysis.results import QualityBars, SAEIndex, SAEMetrics, SAEQualityResult
from rlhf.hooked import HookedModel, to_hooked
from rlhf.plots import plt, save_figure
from rlhf.rundir import RunDir


@torch.no_grad()
def reconstruction_metrics(sae: SAE, activations: Iterable[Float[Tensor, "tokens d"]],
                           targets: Iterable[Float[Tensor, "tokens d_out"]] | None = None) -> dict[str, float]:
    """Explained variance, MSE, mean L0 and dead-feature fraction over held-out activations: of the
    activations themselves, or (a transcoder) of the ``targets`` it writes from them, batch for batch."""
    ev, l0 = ExplainedVariance(), 0.0
    fired = torch.zeros(sae.cfg.d_sae, dtype=torch.bool)
    pairs = zip(activations, targets, strict=True) if targets is not None else ((x, x) for x in activations)
    for x, target in pairs:
        codes = sae.encode(x)
        ev.update(target, sae.decode(codes))
        l0 += float((codes > 0).sum())
        fired |= (codes > 0).any(0)
    n, sse = ev.n, float(ev.sum_squared_error())
    return {"explained_variance": float(ev.compute()), "mse": sse / (n * sae.W_dec.shape[1]), "l0": l0 / n,
            "dead_fraction": float((~fired).float().mean()), "tokens": n}


@torch.no_grad()
def lm_loss_with(model: HookedModel, texts: Sequence[str], hook: str | None,
                 edit: Callable[[Float[Tensor, "batch pos *d"]], Float[Tensor, "batch pos *d"]] | None,
                 batch_size: int = 128) -> float:
    """Mean next-token loss over real tokens, with ``edit`` applied at ``hook`` to every
    position but BOS (the dictionaries never saw BOS)."""
    total, count = 0.0, 0
    for start in range(0, len(texts), batch_size):
        enc = model.tokenizer(list(texts[start : start + batch_size]), padding=True, return_tensors="pt")
        tokens, mask = enc["input_ids"], enc["attention_mask"]
        keep_bos = (tokens == model.tokenizer.bos_token_id)[..., None]

        def splice(act: Float[Tensor, "batch pos *d"], hook: object = None,
                   keep: Bool[Tensor, "batch pos 1"] = keep_bos) -> Float[Tensor, "batch pos *d"]:
            return torch.where(keep, act, edit(act))

        hooks = [(hook, splice)] if hook and edit else []
        loss = model.run_with_hooks(tokens, return_type="loss", loss_per_token=True, fwd_hooks=hooks)
        target_mask = mask[:, 1:].float()
        total += float((loss * target_mask).sum())
        count += int(target_mask.sum())
    return total / count


def lm_loss_recovered(model: HookedModel, sae: SAE, hook: str, texts: Sequence[str],
                      clean: float | None = None, zero: float | None = None, reads: str | None = None) -> dict[str, float]:
    """The LM loss with the dictionary's reconstruction spliced in at ``hook``; a transcoder reads the
    activation at ``reads`` (the MLP's input) of the same forward pass."""
    clean = lm_loss_with(model, texts, None, None) if clean is None else clean
    zero = lm_loss_with(model, texts, hook, torch.zeros_like) if zero is None else zero
    if reads is None:
        spliced = lm_loss_with(model, texts, hook, lambda a: sae.decode(sae.encode(a)))
    else:
        seen: dict[str, Tensor] = {}

        def keep(x: Tensor, hook: object) -> Tensor:
            seen["input"] = x
            return x

        with model.hooks(fwd_hooks=[(reads, keep)]):
            spliced = lm_loss_with(model, texts, hook, lambda a: sae.decode(sae.encode(seen["input"].float())).to(a.dtype))
    return {"clean_loss": clean, "spliced_loss": spliced, "zero_ablated_loss": zero,
            "lm_loss_recovered": (zero - spliced) / (zero - clean) if zero != clean else float("nan")}


def meets_bars(numbers: dict[str, float], cfg: QualityConfig) -> bool:
    """An SAE's verdict: explained variance, dead features, and LM loss recovered, or a splice that
    costs at most ``cfg.max_splice_cost`` nats/token (see ``QualityConfig``)."""
    loss_ok = (numbers["lm_loss_recovered"] >= cfg.min_loss_recovered
               or numbers["spliced_loss"] - numbers["clean_loss"] <= cfg.max_splice_cost)
    return bool(numbers["explained_variance"] >= cfg.min_explained_variance and loss_ok
                and numbers["dead_fraction"] <= cfg.max_dead_fraction)


def quality_stage(cfg: QualityConfig, run_dir: RunDir) -> SAEQualityResult:
    """Stage: metrics of every SAE on held-out tokens; ``analysis/sae_metrics.json`` and plots."""
    started = time.time()
    index = SAEIndex.load(run_dir)
    texts = run_dir.texts("val")[: cfg.held_out_texts]
    rows, models, baselines = [], {}, {}
    # An SAE reads and writes its hook; a transcoder reads the MLP's input and writes its output (the hook).
    for entry, kind in [(e, "sae") for e in index.saes] + [(e, "transcoder") for e in index.transcoders]:
        name, hook = entry.model, entry.hook
        reads = input_hook(hook) if kind == "transcoder" else None
        model = models.setdefault(name, to_hooked(run_dir.model(name)))
        if (name, None) not in baselines:
            baselines[(name, None)] = lm_loss_with(model, texts, None, None)
        if (name, hook) not in baselines:
            baselines[(name, hook)] = lm_loss_with(model, texts, hook, torch.zeros_like)
        sae = load_sae(run_dir.transcoder(name, hook, entry.size) if reads else run_dir.sae(name, hook, entry.size))
        targets = load_shards(run_dir.activations(name, hook, "val"))
        numbers = {**(reconstruction_metrics(sae, load_shards(run_dir.activations(name, reads, "val")), targets) if reads
                      else reconstruction_metrics(sae, targets)),
                   **lm_loss_recovered(model, sae, hook, texts, baselines[(name, None)], baselines[(name, hook)],
                                       reads=reads)}
        rows.append(SAEMetrics(model=name, hook=hook, size=entry.size, path=entry.path, d_sae=sae.cfg.d_sae,
                               passes=meets_bars(numbers, cfg), kind=kind, **numbers))
    result = SAEQualityResult(
        saes=tuple(rows), bars=QualityBars(explained_variance=cfg.min_explained_variance,
                                           lm_loss_recovered=cfg.min_loss_recovered, dead_fraction=cfg.max_dead_fraction,
                                           splice_cost=cfg.max_splice_cost),
        all_pass=all(r.passes for r in rows), seconds=time.time() - started)
    result.save(run_dir)
    _plot(rows, run_dir)
    return result


def _plot(rows: list[SAEMetrics], run_dir: RunDir) -> None:
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.2), dpi=110)
    labels = [f"{r.model[0]}:{r.hook.removeprefix('blocks.')}:{r.size}{':tc' if r.kind == 'transcoder' else ''}" for r in rows]
    for ax, key, title in zip(axes, ("explained_variance", "lm_loss_recovered", "l0"),
                              ("explained variance", "LM loss recovered", "L0 (active features)")):
        ax.bar(range(len(rows)), [getattr(r, key) for r in rows], color=["#1f77b4" if r.model == "base" else "#ff7f0e" for r in rows])
        ax.set_xticks(range(len(rows)), labels, rotation=90, fontsize=6)
        ax.set_title(title, fontsize=9)
    save_figure(fig, SAEQualityResult.figure(run_dir, "metrics"))
