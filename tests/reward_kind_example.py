"""A reward kind that exists only for the tests: ``word:<w>``, how often the completion says the word w.
Registering it (one entry in rlhf.reward_kinds.REWARD_KINDS) is all a new kind takes: configs accept it
and check its target, the policy trains against it, the result and the report name it."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from rlhf.reward_kinds import RewardOptions
from rlhf.rundir import RunDir


def build(target: str, run_dir: RunDir, options: RewardOptions) -> Callable[..., list[float]]:
    def word_count(prompts: Sequence[str], completions: Sequence[str], **_: object) -> list[float]:
        return [float(c.split().count(target)) for c in completions]

    return word_count
