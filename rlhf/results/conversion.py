"""Every model's conversion to TransformerLens, checked against HF (``analysis/conversion.json``)."""

from __future__ import annotations

from dataclasses import dataclass

from rlhf.artifact import Artifact


@dataclass(frozen=True)
class ConvertedModel:
    architecture: str
    max_abs_logit_diff: float
    n_layers: int
    d_model: int
    d_vocab: int
    seconds: float


@dataclass(frozen=True)
class ConversionResult(Artifact):
    """``analysis/conversion.json``: each converted model's (TransformerBridge) logits against the HF model's."""

    atol: float
    models: dict[str, ConvertedModel]

    DIR, FILE = "analysis", "conversion.json"
