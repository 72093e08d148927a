"""The implicit_reward stage's result (``probes/implicit_reward.json``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from probes.results.ablation import AblationResult
from probes.results.linear_reward import LinearRewardResult
from probes.results.sequence import SequenceProbeResult
from rlhf.artifact import Artifact


@dataclass(frozen=True)
class LinearProbeSet:
    """``fit_linear_reward`` for each model on SAE codes and on raw activations."""

    policy_sae: LinearRewardResult
    policy_activations: LinearRewardResult
    base_sae: LinearRewardResult
    base_activations: LinearRewardResult

    def items(self) -> tuple[tuple[str, LinearRewardResult], ...]:
        return (("policy_sae", self.policy_sae), ("policy_activations", self.policy_activations),
                ("base_sae", self.base_sae), ("base_activations", self.base_activations))


@dataclass(frozen=True)
class ImplicitRewardResult(Artifact):
    """``probes/implicit_reward.json``: every implicit-reward probe of a study."""

    target: Literal["paper", "utility"]  # the linear probes' target
    linear: LinearProbeSet
    ablation: AblationResult
    sequence: SequenceProbeResult
    seconds: float = 0.0

    DIR, FILE = "probes", "implicit_reward.json"
    FIGURES = {"scatter": "implicit_reward_scatter.png", "ablation": "implicit_reward_ablation.png"}
