"""RLHF policies trained with TRL: online RL (GRPO, RLOO) and DPO, plus the sampling
and measurement they share."""

from .dpo import DPOStageConfig, dpo_implicit_reward, train_dpo
from .online import NoKLComparisonConfig, PolicyConfig, check_config, no_kl_comparison, train_policy
from .sampling import completion_kl, evaluate, prompts_from_texts, repeated_bigram_share, sample

__all__ = [
    "DPOStageConfig", "NoKLComparisonConfig", "PolicyConfig", "check_config", "completion_kl", "dpo_implicit_reward",
    "evaluate", "no_kl_comparison", "prompts_from_texts", "repeated_bigram_share", "sample", "train_dpo", "train_policy",
]
