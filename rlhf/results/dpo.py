"""The DPO stage's result (``training/dpo.json``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rlhf.artifact import Artifact
from rlhf.results.policy import Curve, PolicyEvaluation


@dataclass(frozen=True)
class DPOExample:
    prompt: str
    chosen: str
    rejected: str
    chosen_reward: float
    rejected_reward: float
    implicit_chosen: float
    implicit_rejected: float


@dataclass(frozen=True)
class DPOResult(Artifact):
    """``training/dpo.json``: the DPO policy, its implicit reward's held-out accuracy and its evaluation."""

    config: dict[str, Any]
    beta: float  # the implicit reward's scale: beta * log(pi / pi_ref)
    steps: int
    train_pairs: int
    held_out_pairs: int
    implicit_reward_accuracy: float
    base: PolicyEvaluation
    policy: PolicyEvaluation
    reward_gain: float
    curves: dict[str, Curve]  # loss, rewards/accuracies, rewards/margins
    examples: tuple[DPOExample, ...]
    seconds: float
    reward: str = "vader"  # the reward spec that ranked the pairs

    DIR, FILE, FIGURES = "training", "dpo.json", {"accuracy": "dpo_accuracy.png"}
