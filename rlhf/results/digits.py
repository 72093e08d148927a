"""The digits loop's results, in the stage's own run directory (``digits/training/``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlhf.artifact import Artifact
from rlhf.results.policy import Curve
from rlhf.rundir import RunDir


def digits_run(run: RunDir) -> RunDir:
    """The digits stage's own run directory (corpus, models, training) inside the study's."""
    return RunDir(run.stage_dir("digits"))


@dataclass(frozen=True)
class DigitsSFT:
    test_loss: float
    entropy_floor: float
    loss_over_floor: float
    steps: int


@dataclass(frozen=True)
class DigitsRewardModel:
    kind: str
    train_pairs: int
    test_pairs: int
    held_out_accuracy: float


@dataclass(frozen=True)
class DigitsSample:
    prompt: str
    completion: str


@dataclass(frozen=True)
class DigitsMeasure:
    """One model's completions on held-out prompts against the known preference and rule."""

    first_correct: float
    first_correct_probability: float
    rule_following_by_position: tuple[float, ...]
    well_formed: float
    kl_by_position: tuple[float, ...]  # the last entry is the end-of-text token
    mean_kl_per_token: float
    mean_reward: float
    samples: tuple[DigitsSample, ...]


@dataclass(frozen=True)
class DigitsExample:
    prompt: str
    outputs: tuple[int, ...]
    preferred: int
    distributions: dict[str, tuple[tuple[float, ...], ...]]  # model -> [output position][digit]


@dataclass(frozen=True)
class DigitsResult(Artifact):
    """``digits/training/digits.json``: the SFT -> reward model -> RL loop on the digits organism."""

    config: dict[str, Any]
    policy_beta: float  # the main RL run's KL coefficient
    n_output: int  # output digits per sequence
    sft: DigitsSFT
    reward_model: DigitsRewardModel
    base_rate: float  # how often the rule alone meets the preference on the held-out prompts
    models: dict[str, DigitsMeasure]  # base, policy, policy_beta0, sft_baseline
    policy_steps: dict[str, int]
    kl_curves: dict[str, Curve]
    reward_curves: dict[str, Curve]
    sft_loss_curve: Curve
    example: DigitsExample
    seconds: float

    FILE = "digits.json"
    FIGURES = {"first_correct": "first_correct.png", "kl_by_position": "kl_by_position.png", "kl_curves": "kl_curves.png",
               "distributions": "distributions.png"}

    @classmethod
    def directory(cls, run: RunDir) -> Path:
        return digits_run(run).training

    def later_mean(self, model: str, measure: str) -> float:
        """A per-position measure averaged over output positions 2..n (the end-of-text token left out)."""
        values = getattr(self.models[model], measure)[1 : self.n_output]
        return sum(values) / len(values)


@dataclass(frozen=True)
class DigitsAttention(Artifact):
    """``digits/training/attention.json``: attention patterns of the SFT model and the policy on one text."""

    tokens: tuple[str, ...]
    models: dict[str, list[list[list[list[float]]]]]  # model -> [layer][head][query][key]

    FILE = "attention.json"

    @classmethod
    def directory(cls, run: RunDir) -> Path:
        return digits_run(run).training
