"""Pretraining's result (``training/pretrain.json``)."""

from __future__ import annotations

from dataclasses import dataclass

from rlhf.artifact import Artifact
from rlhf.results.policy import Curve


@dataclass(frozen=True)
class PretrainResult(Artifact):
    """``training/pretrain.json``: the base model's training and its held-out loss against the floor."""

    steps: int
    stopped_early: bool
    resumed: bool
    parameters: int
    train_curve: Curve
    val_curve: Curve
    test_loss: float
    perplexity: float
    seconds: float
    entropy_floor: float | None = None  # None for an adopted model or a real dataset
    loss_over_floor: float | None = None
    from_model: str = ""  # the adopted pretrained model; empty when trained here

    DIR, FILE, FIGURES = "training", "pretrain.json", {"loss": "pretrain.png"}
