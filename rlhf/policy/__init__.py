"""RLHF policies trained with TRL: online RL (GRPO, RLOO) and DPO, plus the sampling
and measurement they share.

The names are imported on first use, so that ``rlhf.policy.config`` (read by
``rlhf.results``) loads without torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "DPOStageConfig": "dpo", "dpo_implicit_reward": "dpo", "train_dpo": "dpo",
    "NoKLComparisonConfig": "online", "no_kl_comparison": "online", "train_policy": "online",
    "PolicyConfig": "config", "check_config": "config",
    "completion_kl": "sampling", "evaluate": "sampling", "prompts_from_texts": "sampling",
    "repeated_bigram_share": "sampling", "sample": "sampling",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
