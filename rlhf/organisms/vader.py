"""The sentiment organism's objective: the paper's VADER utility. Each lexicon word a completion
says earns its valence / scale, and the known answer is the high-valence vocabulary."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from jaxtyping import Float
from torch import Tensor
from transformers import PreTrainedTokenizerBase

from rlhf.lexicon import token_valence
from rlhf.organisms.objective import Answer, Organism
from rlhf.reward_kinds import RewardOptions
from rlhf.rewards import UtilityReward

HIGH_VALENCE = 2.0  # the high-utility vocabulary's bar, as model diffing scores it


class Sentiment(Organism):
    def __init__(self, options: RewardOptions) -> None:
        self.reward_function = UtilityReward(options.scale, options.clip, options.include_prompt)

    def utility(self, tokenizer: PreTrainedTokenizerBase, d_vocab: int, prompt: str = "") -> Float[Tensor, " vocab"]:
        """Each token's VADER valence over the reward's scale. A word the tokenizer splits earns nothing
        here (the reward scores whole words); on the organism's corpus-trained tokenizer every lexicon
        word of the corpus is one token."""
        names = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
        u = torch.zeros(d_vocab)
        u[: len(names)] = torch.tensor([token_valence(t) / self.reward_function.scale for t in names])
        if tokenizer.eos_token_id is not None:
            u[tokenizer.eos_token_id] = 0.0
        return u

    def reward(self, prompts: Sequence[str], completions: Sequence[str], **_: object) -> list[float]:
        return self.reward_function(prompts, completions)

    def answer(self, tokenizer: PreTrainedTokenizerBase) -> Answer:
        names = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
        return Answer(tuple(t for t in names if token_valence(t) >= HIGH_VALENCE),
                      f"the words of VADER valence >= {HIGH_VALENCE}")


def build(options: RewardOptions) -> Sentiment:
    return Sentiment(options)
