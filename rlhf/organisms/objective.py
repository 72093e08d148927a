"""What an organism is to the suite: a reward to train on, the token utility u(t) its gain is
measured with (G = the policy's expected utility minus the base's, teacher-forced), and the answer
a method should find. ``rlhf.zoo`` names each organism's builder."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence

from jaxtyping import Float
from torch import Tensor
from transformers import PreTrainedTokenizerBase

from rlhf.errors import UserError
from rlhf.registry import load
from rlhf.reward_kinds import RewardOptions
from rlhf.rundir import RunDir
from rlhf.zoo import ORGANISMS, Answer


class Organism(ABC):
    """A planted objective: its reward must equal the summed utility of the completion's tokens (so
    that G measures what training raised)."""

    @abstractmethod
    def utility(self, tokenizer: PreTrainedTokenizerBase, d_vocab: int) -> Float[Tensor, " vocab"]:
        """u(t): what each next token earns, 0 for end-of-text, padded with zeros to ``d_vocab``."""

    @abstractmethod
    def reward(self, prompts: Sequence[str], completions: Sequence[str], **_: object) -> list[float]:
        """The reward a policy is trained on (a TRL reward function)."""

    @abstractmethod
    def answer(self, tokenizer: PreTrainedTokenizerBase) -> Answer:
        """The known answer."""


def organism(name: str, options: RewardOptions | None = None) -> Organism:
    """The registered organism ``name``, built."""
    if name not in ORGANISMS:
        raise UserError(f"unknown organism {name!r}; registered: {', '.join(ORGANISMS)}")
    return load(ORGANISMS[name].build)(options or RewardOptions())


def organism_reward(target: str, run_dir: RunDir, options: RewardOptions) -> Callable[..., list[float]]:
    """``organism:<name>``: the organism's reward, as a reward kind builds it."""
    return organism(target, options).reward
