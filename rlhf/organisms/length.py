"""The length organism: the reward is the completion's length in words, so every token but the end
of text earns 1. G is then all in its not-ending part (the utility given not ending is 1 under both
models): the answer is the end-of-text token, whose probability the policy lowers."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from jaxtyping import Float
from torch import Tensor
from transformers import PreTrainedTokenizerBase

from rlhf.organisms.objective import Answer, Organism
from rlhf.reward_kinds import RewardOptions


class Length(Organism):
    def utility(self, tokenizer: PreTrainedTokenizerBase, d_vocab: int, prompt: str = "") -> Float[Tensor, " vocab"]:
        """1 for every token the tokenizer has (on the organisms' word-level tokenizer a token is a word or a
        punctuation mark, which the reward counts alike), 0 for end-of-text, the other special tokens and the
        padding of the vocabulary."""
        u = torch.zeros(d_vocab)
        u[: len(tokenizer)] = 1.0
        u[tokenizer.all_special_ids] = 0.0  # end-of-text, and what a decoded completion never shows
        return u

    def reward(self, prompts: Sequence[str], completions: Sequence[str], **_: object) -> list[float]:
        return [float(len(c.split())) for c in completions]

    def answer(self, tokenizer: PreTrainedTokenizerBase) -> Answer:
        return Answer((tokenizer.eos_token,), "the end-of-text token: the policy ends later (G's not-ending part)")


def build(options: RewardOptions) -> Length:
    return Length()
