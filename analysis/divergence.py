"""Which layers did the fine-tune move? Parameter divergence between base and policy.

Divergence of layer l = sum over its parameter tensors of ||policy - base||_F, in
float32 (the paper's code measured 8-bit quantised weights, which hides small moves).
It works on converted models (TransformerBridge) and on Hugging Face models alike: parameters are
grouped by the layer index in their name and by component (attention, MLP, layer norm).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from jaxtyping import Shaped
from torch import Tensor

from analysis.config import DivergenceConfig  # noqa: F401  (re-exported: callers import it from here)
from analysis.results import DivergenceResult, DivergenceRow
from rlhf.errors import UserError
from rlhf.hooked import load_hf
from rlhf.plots import plt, save_figure
from rlhf.rundir import RunDir

LAYER = re.compile(r"(?:^|\.)(?:blocks|layers|h)\.(\d+)\.")
# Norms first: GPT-NeoX's "post_attention_layernorm" is a layer norm, not attention.
COMPONENTS = (("layer_norm", re.compile(r"norm|(?:^|\.)ln")), ("attention", re.compile(r"attn|attention")),
              ("mlp", re.compile(r"mlp")))


def component_of(name: str) -> str:
    for component, pattern in COMPONENTS:
        if pattern.search(name):
            return component
    return "other"


def _parameters(model: torch.nn.Module) -> dict[str, Shaped[Tensor, "..."]]:
    return {n: p.detach() for n, p in model.named_parameters()}


@torch.no_grad()
def divergence_by_tensor(base: torch.nn.Module, policy: torch.nn.Module) -> dict[str, tuple[float, float]]:
    """(||policy - base||_F, ||base||_F) per parameter tensor, in float32."""
    a, b = _parameters(base), _parameters(policy)
    for name in list(a) + [n for n in b if n not in a]:
        if name not in a or name not in b:
            raise UserError(f"the models differ in architecture: parameter {name} is only in the "
                            f"{'base' if name in a else 'policy'} model")
        if a[name].shape != b[name].shape:
            raise UserError(f"the models differ in shape at {name}: {tuple(a[name].shape)} vs {tuple(b[name].shape)}")
    return {n: (float(torch.linalg.norm((b[n].float() - a[n].float()).flatten())), float(torch.linalg.norm(a[n].float().flatten())))
            for n in a}


def layer_divergence(base: torch.nn.Module, policy: torch.nn.Module) -> dict[int, float]:
    """Layer index -> sum over the layer's tensors of the Frobenius norm of (policy - base)."""
    out: dict[int, float] = {}
    for name, (diff, _) in divergence_by_tensor(base, policy).items():
        match = LAYER.search(name)
        if match:
            out[int(match.group(1))] = out.get(int(match.group(1)), 0.0) + diff
    if not out:
        raise UserError("no parameter name carries a layer index (blocks.N / layers.N / h.N)")
    return dict(sorted(out.items()))


@dataclass(frozen=True)
class DivergenceReport:
    """Parameter divergence per layer and component, and per tensor outside the layers."""

    layers: dict[int, dict[str, DivergenceRow]]  # layer, ascending -> component -> row
    outside: dict[str, DivergenceRow]  # embeddings, final norm, unembedding, by tensor name

    @property
    def total(self) -> dict[int, float]:
        """Layer -> summed divergence."""
        return {layer: sum(r.divergence for r in comps.values()) for layer, comps in self.layers.items()}

    @property
    def normalised(self) -> dict[int, float]:
        """Layer -> summed divergence over the summed base norm."""
        norms = {layer: sum(r.base_norm for r in comps.values()) for layer, comps in self.layers.items()}
        return {layer: total / norms[layer] if norms[layer] else 0.0 for layer, total in self.total.items()}

    @property
    def ranking(self) -> tuple[int, ...]:
        """Layers, most divergent first (ties in layer order)."""
        total = self.total
        return tuple(sorted(total, key=lambda k: -total[k]))


def divergence_report(base: torch.nn.Module, policy: torch.nn.Module) -> DivergenceReport:
    """Summed divergence and base norm per layer and component, and per tensor outside the layers."""
    layers: dict[int, dict[str, tuple[float, float]]] = {}
    outside: dict[str, tuple[float, float]] = {}
    for name, (diff, norm) in divergence_by_tensor(base, policy).items():
        match = LAYER.search(name)
        group, key = (layers.setdefault(int(match.group(1)), {}), component_of(name)) if match else (outside, name)
        summed = group.get(key, (0.0, 0.0))
        group[key] = (summed[0] + diff, summed[1] + norm)
    return DivergenceReport(
        layers={layer: {c: DivergenceRow.of(*s) for c, s in comps.items()} for layer, comps in sorted(layers.items())},
        outside={name: DivergenceRow.of(*s) for name, s in outside.items()})


def _bar_chart(result: DivergenceResult, path: Path, title: str) -> None:
    layers = sorted(result.layers)
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=110)
    bottom = [0.0] * len(layers)
    for component in result.components:
        values = [result.layers[layer][component].divergence if component in result.layers[layer] else 0.0
                  for layer in layers]
        ax.bar([str(layer) for layer in layers], values, bottom=bottom, label=component)
        bottom = [b + v for b, v in zip(bottom, values)]
    ax.set(title=title, xlabel="layer", ylabel="sum of ||policy - base||_F")
    ax.legend(fontsize=8)
    save_figure(fig, path)


def divergence_stage(cfg: DivergenceConfig, run_dir: RunDir) -> DivergenceResult:
    """Stage: rank the layers of the model ``cfg.model`` by divergence from the base; pick the top n."""
    started = time.time()
    base, policy = load_hf(run_dir.base), load_hf(run_dir.model(cfg.model))
    report = divergence_report(base, policy)
    top_n = min(cfg.top_n, len(report.layers))
    chosen = tuple(sorted(report.ranking[:top_n]))
    if cfg.layers:
        absent = sorted(set(cfg.layers) - set(report.ranking))
        if absent:
            raise UserError(f"divergence.layers names layer {absent[0]}, but the model has layers 0-{len(report.ranking) - 1}")
        chosen, top_n = tuple(sorted(set(cfg.layers))), len(set(cfg.layers))
    result = DivergenceResult(
        model=cfg.model, layers=report.layers, total=report.total, normalised=report.normalised,
        outside=report.outside, ranking=report.ranking, top_n=top_n, chosen_layers=chosen,
        seconds=time.time() - started,
    )
    result.save(run_dir)
    _bar_chart(result, DivergenceResult.figure(run_dir, "bars"), f"Parameter divergence, base vs {cfg.model}")
    return result
