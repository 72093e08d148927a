"""An organism that exists only for the tests: every "and" a completion says earns 1. Registering it
(one entry in rlhf.zoo.ORGANISMS) is all a new organism takes: configs accept
``policy.reward = "organism:<its name>"``, the policy trains on its reward, reward attribution
measures G with its utility, and the result and the report name it and its answer."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from jaxtyping import Float
from torch import Tensor
from transformers import PreTrainedTokenizerBase

from rlhf.organisms.objective import Organism
from rlhf.reward_kinds import RewardOptions
from rlhf.zoo import Answer

WORD = "and"


class Conjunction(Organism):
    def utility(self, tokenizer: PreTrainedTokenizerBase, d_vocab: int, prompt: str = "") -> Float[Tensor, " vocab"]:
        u = torch.zeros(d_vocab)
        u[tokenizer.convert_tokens_to_ids(WORD)] = 1.0
        return u

    def reward(self, prompts: Sequence[str], completions: Sequence[str], **_: object) -> list[float]:
        return [float(c.split().count(WORD)) for c in completions]

    def answer(self, tokenizer: PreTrainedTokenizerBase) -> Answer:
        return Answer((WORD,), f"the word {WORD!r}")


def build(options: RewardOptions) -> Conjunction:
    return Conjunction()
