"""The online policy's configuration: light (no torch), so that ``rlhf.results`` can record
it as a typed field of the policy's result and the beta = 0 run can reuse it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from rlhf.configtypes import FractionFloat, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt
from rlhf.errors import UserError
from rlhf.reward_kinds import Reward, parse

Algorithm = Literal["grpo", "rloo"]
Init = Literal["base", "sft"]


@dataclass(frozen=True)
class PolicyConfig:
    # A hub id or local directory: adopt that fine-tune of the base as the policy instead of training one.
    from_model: str = ""
    init: Init = "base"  # the model RL starts from and whose KL it pays: the base, or the sft stage's model
    reward: Reward = "vader"
    reward_label: str = ""  # for reward = "model:<classifier>": the label whose logit is the reward
    algorithm: Algorithm = "grpo"
    beta: NonNegativeFloat = 0.1  # KL coefficient against the base model (its floor when kl_target > 0); 0 = no penalty
    # Raise beta above its floor while the KL per token is over this, and let it back down while it is under
    # (the adaptive controller of Ziegler et al. 2019); 0 = a fixed beta. No effect with beta = 0 (no penalty at all).
    kl_target: NonNegativeFloat = 0.5
    kl_horizon: PositiveFloat = 5.0  # the controller's time constant in steps: beta moves <= 20% / horizon a step
    learning_rate: PositiveFloat = 1e-4
    max_steps: PositiveInt = 400
    # The handed-on policy's KL per token never exceeds this (nats): training stops at the first exact-KL
    # check past it, and the stage hands on the last model measured within it; 0 = no budget.
    kl_budget: NonNegativeFloat = 1.0
    num_generations: PositiveInt = 8  # completions per prompt (the group)
    batch_size: PositiveInt = 64  # completions per step
    max_completion_length: PositiveInt = 19
    temperature: PositiveFloat = 1.0
    n_prompts: PositiveInt = 4000
    n_eval_prompts: PositiveInt = 256
    reward_scale: PositiveFloat = 5.0
    reward_clip: PositiveFloat = 10.0
    include_prompt: bool = False  # score prompt + completion instead of the completion only
    save_every: PositiveInt = 25
    kl_every: NonNegativeInt = 10  # steps between exact KL measurements on held-out prompts (the budget's checks); 0 = never
    kl_prompts: PositiveInt = 64
    # Recompute activations in the backward to save memory (TRL's default): for a large model on a
    # small GPU. On the demo the recomputation was 7% of GRPO's time and 18% of a reward model's (py-spy).
    gradient_checkpointing: bool = False
    seed: int = 0


def check_config(cfg: PolicyConfig) -> None:
    """What the annotations cannot say: a check across fields."""
    if cfg.batch_size % cfg.num_generations:
        raise UserError(f"policy.batch_size ({cfg.batch_size}) must be a multiple of num_generations ({cfg.num_generations})")
    check_reward_label("policy", cfg.reward, cfg.reward_label)
    if cfg.kl_budget > 0 and cfg.kl_target >= cfg.kl_budget:
        raise UserError(f"policy.kl_target ({cfg.kl_target}) must be below policy.kl_budget ({cfg.kl_budget}): "
                        "the controller aims at the target and the budget is the hard limit")
    if cfg.kl_budget > 0 and not cfg.kl_every:
        raise UserError("policy.kl_budget is checked by the exact KL measurements, but policy.kl_every = 0; "
                        "set kl_every > 0 or kl_budget = 0")
    if cfg.from_model and cfg.init != "base":
        raise UserError(f"policy.from_model adopts a trained policy, so policy.init = {cfg.init!r} has no effect; "
                        "remove one of them")


def check_reward_label(section: str, reward: str, label: str) -> None:
    kind, _ = parse(reward)
    if label and not (kind and kind.labelled):
        raise UserError(f"{section}.reward_label = {label!r} names a classifier's label, but {section}.reward = "
                        f"{reward!r} is not a reward that takes a label ('model:')")


@dataclass(frozen=True)
class DPOStageConfig:
    enabled: bool = True
    from_model: str = ""  # adopt this DPO fine-tune of the base instead of training one
    reward: Reward = "vader"  # ranks each pair of base completions (see PolicyConfig.reward)
    reward_label: str = ""
    beta: PositiveFloat = 0.1
    learning_rate: PositiveFloat = 5e-4
    max_steps: PositiveInt = 200
    batch_size: PositiveInt = 32
    n_pairs: PositiveInt = 3000  # preference pairs sampled from the base model (ties dropped)
    held_out_fraction: FractionFloat = 0.2
    min_reward_gap: NonNegativeFloat = 0.2  # pairs whose utilities differ less than this are too close to call
    max_completion_length: PositiveInt = 19
    save_every: PositiveInt = 50
    gradient_checkpointing: bool = False  # as in PolicyConfig
    seed: int = 0


@dataclass(frozen=True)
class NoKLComparisonConfig:
    """A second run with beta = 0, otherwise as the main policy: without the KL penalty the
    policy drifts further from the base (the minimal-RLHF observation)."""

    enabled: bool = True
    max_steps: NonNegativeInt = 0  # 0: as many steps as the main policy took


@dataclass(frozen=True)
class SFTConfig:
    enabled: bool = True
    from_model: str = ""  # adopt this supervised fine-tune of the base instead of training one
    learning_rate: PositiveFloat = 5e-4
    epochs: PositiveFloat = 2.0
    batch_size: PositiveInt = 32
    n_samples: PositiveInt = 4000  # sentiment: base completions sampled on training prompts
    top_fraction: FractionFloat = 0.25  # sentiment: the best-rewarded share kept for fine-tuning
    max_completion_length: PositiveInt = 19
    n_eval_prompts: PositiveInt = 256
    save_every: PositiveInt = 50
    gradient_checkpointing: bool = False  # as in PolicyConfig
    seed: int = 0
