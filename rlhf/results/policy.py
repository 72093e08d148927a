"""An online RL policy's result (``training/<name>.json``) and the curves every trainer logs."""

from __future__ import annotations

from dataclasses import dataclass

from rlhf.artifact import Artifact
from rlhf.policy.config import PolicyConfig

# A logged metric: (step, value) pairs.
Curve = tuple[tuple[int, float], ...]


@dataclass(frozen=True)
class PolicyEvaluation:
    """One model's completions on held-out prompts: reward, exact KL to the base, repetition, length."""

    mean_reward: float
    mean_kl_per_token: float
    repeated_bigrams: float
    mean_length: float


@dataclass(frozen=True)
class PolicySample:
    prompt: str
    base: str
    base_reward: float
    policy: str
    policy_reward: float


@dataclass(frozen=True)
class PolicyResult(Artifact):
    """``training/<name>.json``: an online RL policy (``policy`` for the stage) and its evaluation.

    It records its whole config (typed), so the beta = 0 run can repeat it."""

    name: str
    config: PolicyConfig
    algorithm: str
    beta: float
    steps: int
    resumed: bool
    stopped_at_kl_budget: bool
    base: PolicyEvaluation
    policy: PolicyEvaluation
    reward_gain: float
    curves: dict[str, Curve]  # reward, kl, exact_kl, beta, completions/mean_length, repeated_bigrams
    samples: tuple[PolicySample, ...]
    seconds: float
    reward: str = "vader"  # the reward spec that trained it (the default: results written before rewards were pluggable)
    # The step of the model handed on (the last, or the last checkpoint within the KL budget) and why.
    kept_step: int = 0
    kept_reason: str = ""
    final_beta: float | None = None  # the KL coefficient at the end (it adapts when config.kl_target > 0)

    # A policy trained under another name (``rloo``, a digits run's ``policy_beta0``) is its own file;
    # its curves' figures are ``<name>_<curve>.png``, the KL with and without the penalty side by side.
    DIR, FILE, KEY = "training", "{name}.json", {"name": "policy"}
    FIGURES = {"curve": "{name}_{curve}.png", "kl_beta_comparison": "kl_beta_comparison.png"}


@dataclass(frozen=True)
class NoKLResult(PolicyResult):
    """``training/policy_beta0.json``: the main policy's config again with beta = 0."""

    KEY = {"name": "policy_beta0"}
