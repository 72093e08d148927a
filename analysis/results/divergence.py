"""Parameter divergence per layer (``analysis/divergence.json``)."""

from __future__ import annotations

from dataclasses import dataclass

from rlhf.artifact import Artifact


@dataclass(frozen=True)
class DivergenceRow:
    """Summed ||policy - base||_F of a group of tensors, the base tensors' summed norm, and their ratio."""

    divergence: float
    base_norm: float
    normalised: float

    @classmethod
    def of(cls, divergence: float, base_norm: float) -> DivergenceRow:
        return cls(divergence, base_norm, divergence / base_norm if base_norm else 0.0)


@dataclass(frozen=True)
class DivergenceResult(Artifact):
    """``analysis/divergence.json``: parameter divergence by layer and component, and the layers chosen."""

    model: str  # the fine-tuned model compared with the base
    layers: dict[int, dict[str, DivergenceRow]]  # layer -> component (attention, mlp, layer_norm, other) -> row
    total: dict[int, float]  # layer -> summed divergence
    normalised: dict[int, float]  # layer -> divergence / base norm
    outside: dict[str, DivergenceRow]  # tensors outside the layers (embeddings, final norm, unembedding)
    ranking: tuple[int, ...]  # layers, most divergent first
    top_n: int
    chosen_layers: tuple[int, ...]  # the top_n of the ranking, sorted: the layers the later stages analyse
    seconds: float

    DIR, FILE, FIGURES = "analysis", "divergence.json", {"bars": "divergence.png"}

    @property
    def components(self) -> tuple[str, ...]:
        return tuple(sorted({c for comps in self.layers.values() for c in comps}))
