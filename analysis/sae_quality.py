"""How good is a dictionary? Reconstruction and LM-loss metrics on held-out tokens.

Explained variance, MSE, L0 and the dead-feature fraction come from the cached
held-out activations. LM loss recovered splices the SAE's reconstruction into the
model through a TransformerLens hook: (loss with the hook zeroed - loss with the
reconstruction) / (loss zeroed - clean loss), so 1 means the dictionary loses nothing
the model uses and 0 means it is no better than deleting the activation.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Float
from sae_lens import SAE
from torch import Tensor
from transformer_lens import HookedTransformer

from analysis.activations import INDEX, hook_dir, load_shards
from analysis.dictionaries import load_sae
from rlhf.hooked import to_hooked
from rlhf.plots import plt, save_figure
from rlhf.rundir import RunDir, atomic_write_json, read_json


@torch.no_grad()
def reconstruction_metrics(sae: SAE, activations: Sequence[Float[Tensor, "tokens d"]]) -> dict[str, float]:
    """Explained variance, MSE, mean L0 and dead-feature fraction over held-out activations."""
    n, sse, l0 = 0, 0.0, 0.0
    total, total_sq = None, None
    fired = torch.zeros(sae.cfg.d_sae, dtype=torch.bool)
    for x in activations:
        codes = sae.encode(x)
        sse += float(((sae.decode(codes) - x) ** 2).sum())
        l0 += float((codes > 0).sum())
        fired |= (codes > 0).any(0)
        total = x.sum(0) if total is None else total + x.sum(0)
        total_sq = (x**2).sum() if total_sq is None else total_sq + (x**2).sum()
        n += len(x)
    variance = float(total_sq - (total**2).sum() / n)  # sum of squared deviations from the mean
    return {"explained_variance": 1 - sse / variance, "mse": sse / (n * sae.cfg.d_in), "l0": l0 / n,
            "dead_fraction": float((~fired).float().mean()), "tokens": n}


@torch.no_grad()
def lm_loss_with(model: HookedTransformer, texts: Sequence[str], hook: str | None,
                 edit: Callable[[Tensor], Tensor] | None, batch_size: int = 128) -> float:
    """Mean next-token loss over real tokens, with ``edit`` applied at ``hook`` to every
    position but BOS (the dictionaries never saw BOS)."""
    total, count = 0.0, 0
    for start in range(0, len(texts), batch_size):
        enc = model.tokenizer(list(texts[start : start + batch_size]), padding=True, return_tensors="pt")
        tokens, mask = enc["input_ids"], enc["attention_mask"]
        keep_bos = (tokens == model.tokenizer.bos_token_id)[..., None]

        def splice(act: Tensor, hook: object = None, keep: Tensor = keep_bos) -> Tensor:
            return torch.where(keep, act, edit(act))

        hooks = [(hook, splice)] if hook and edit else []
        loss = model.run_with_hooks(tokens, return_type="loss", loss_per_token=True, fwd_hooks=hooks)
        target_mask = mask[:, 1:].float()
        total += float((loss * target_mask).sum())
        count += int(target_mask.sum())
    return total / count


def lm_loss_recovered(model: HookedTransformer, sae: SAE, hook: str, texts: Sequence[str],
                      clean: float | None = None, zero: float | None = None) -> dict[str, float]:
    clean = lm_loss_with(model, texts, None, None) if clean is None else clean
    zero = lm_loss_with(model, texts, hook, torch.zeros_like) if zero is None else zero
    spliced = lm_loss_with(model, texts, hook, lambda a: sae.decode(sae.encode(a)))
    return {"clean_loss": clean, "spliced_loss": spliced, "zero_ablated_loss": zero,
            "lm_loss_recovered": (zero - spliced) / (zero - clean) if zero != clean else float("nan")}


@dataclass(frozen=True)
class QualityConfig:
    held_out_texts: int = 500  # validation texts for the LM-loss splice
    min_explained_variance: float = 0.8
    min_loss_recovered: float = 0.8
    max_dead_fraction: float = 0.2


def quality_stage(cfg: QualityConfig, run_dir: RunDir) -> dict:
    """Stage: metrics of every SAE on held-out tokens; ``analysis/sae_metrics.json`` and plots."""
    started = time.time()
    saes = read_json(run_dir.root / "saes" / INDEX)["saes"]
    texts = run_dir.texts("val")[: cfg.held_out_texts]
    rows, models, baselines = [], {}, {}
    for entry in saes:
        name, hook = entry["model"], entry["hook"]
        model = models.setdefault(name, to_hooked(run_dir.root / "models" / name))
        if (name, None) not in baselines:
            baselines[(name, None)] = lm_loss_with(model, texts, None, None)
        if (name, hook) not in baselines:
            baselines[(name, hook)] = lm_loss_with(model, texts, hook, torch.zeros_like)
        sae = load_sae(run_dir.root / entry["path"])
        row = {**entry, "d_sae": sae.cfg.d_sae,
               **reconstruction_metrics(sae, load_shards(hook_dir(run_dir, name, hook, "val"))),
               **lm_loss_recovered(model, sae, hook, texts, baselines[(name, None)], baselines[(name, hook)])}
        row["passes"] = bool(row["explained_variance"] >= cfg.min_explained_variance
                             and row["lm_loss_recovered"] >= cfg.min_loss_recovered
                             and row["dead_fraction"] <= cfg.max_dead_fraction)
        rows.append(row)
    result = {"saes": rows, "bars": {"explained_variance": cfg.min_explained_variance,
                                     "lm_loss_recovered": cfg.min_loss_recovered, "dead_fraction": cfg.max_dead_fraction},
              "all_pass": all(r["passes"] for r in rows), "seconds": time.time() - started}
    atomic_write_json(run_dir.analysis / "sae_metrics.json", result)
    _plot(rows, run_dir)
    return result


def _plot(rows: list[dict], run_dir: RunDir) -> None:
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.2), dpi=110)
    labels = [f"{r['model'][0]}:{r['hook'].split('.')[1]}:{r['size']}" for r in rows]
    for ax, key, title in zip(axes, ("explained_variance", "lm_loss_recovered", "l0"),
                              ("explained variance", "LM loss recovered", "L0 (active features)")):
        ax.bar(range(len(rows)), [r[key] for r in rows], color=["#1f77b4" if r["model"] == "base" else "#ff7f0e" for r in rows])
        ax.set_xticks(range(len(rows)), labels, rotation=90, fontsize=6)
        ax.set_title(title, fontsize=9)
    save_figure(fig, run_dir.analysis / "sae_metrics.png")
