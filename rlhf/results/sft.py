"""The supervised baseline's result (``training/sft.json``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rlhf.artifact import Artifact
from rlhf.results.policy import Curve, PolicyEvaluation


@dataclass(frozen=True)
class SFTSample:
    prompt: str
    completion: str
    reward: float


@dataclass(frozen=True)
class SFTResult(Artifact):
    """``training/sft.json``: rejection-sampling SFT of the base model, evaluated like the RL policy."""

    config: dict[str, Any]
    n_samples: int
    top_fraction: float
    rows: int
    reward_threshold: float | None  # None when the model was adopted (sft.from_model), not trained here
    mean_reward_of_rows: float | None
    base: PolicyEvaluation
    sft: PolicyEvaluation
    reward_gain: float
    loss_curve: Curve
    samples: tuple[SFTSample, ...]
    seconds: float

    DIR, FILE = "training", "sft.json"
