"""The probe's features switched off inside the policy, against random ones."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RewardRun:
    """One sampling seed under one condition (``analysis.interventions.reward_under_hooks``)."""

    seed: int
    mean_reward: float
    kl_per_token: float  # to the unedited policy, per completion token
    example: str = ""  # the first completion


@dataclass(frozen=True)
class ConditionStats:
    """One condition over its runs: the reward, its change against nothing switched off (same seed), the KL."""

    mean_reward: float
    reward_change: float
    reward_change_std: float
    kl_per_token: float
    runs: tuple[RewardRun, ...]


@dataclass(frozen=True)
class AblationComparison:
    """The probe's top k features switched off against k random live ones."""

    k: int
    probe_top_k: ConditionStats
    random_k: ConditionStats
    probe_lowers_reward_more_than_random: bool


@dataclass(frozen=True)
class AblationResult:
    """The headline comparison (at ``AblationConfig.k``), with the features it switched off,
    the baselines, and the sweep over k (the headline k included), sorted by k."""

    k: int
    features: dict[str, tuple[int, ...]]  # hook -> the probe's top features switched off
    random_sets: tuple[dict[str, tuple[int, ...]], ...]  # each: hook -> random live features
    probe_top_k: ConditionStats
    random_k: ConditionStats
    probe_lowers_reward_more_than_random: bool
    none: ConditionStats  # nothing switched off
    whole_dictionary: dict[str, ConditionStats]  # hook -> every feature of its dictionary off (the ceiling)
    sweep: tuple[AblationComparison, ...]
