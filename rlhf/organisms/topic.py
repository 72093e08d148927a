"""The topic organism: a hidden set of words with no VADER valence, drawn by seed from the corpus
generator's neutral sentiment-slot words; each one a completion writes earns a fixed reward. The
answer is that word set: a method naming tokens should name these and no others."""

from __future__ import annotations

import random
from collections.abc import Sequence

from jaxtyping import Float
from torch import Tensor
from transformers import PreTrainedTokenizerBase

from rlhf.lexicon import valence, words_of
from rlhf.organisms.objective import Answer, Organism, single_tokens, word_utility
from rlhf.organisms.sentiment import NEUTRAL_WORDS
from rlhf.reward_kinds import RewardOptions

SEED = 0  # the draw of the hidden words
N_WORDS = 20
REWARD = 1.0  # per topic word written


def topic_words(seed: int = SEED, n: int = N_WORDS) -> tuple[str, ...]:
    """The hidden set: ``n`` of the generator's neutral words (no VADER valence), drawn with ``seed``."""
    pool = sorted(w for w in NEUTRAL_WORDS if valence(w) == 0.0)
    return tuple(sorted(random.Random(seed).sample(pool, n)))


class Topic(Organism):
    def __init__(self, words: tuple[str, ...]) -> None:
        self.words = words

    def utility(self, tokenizer: PreTrainedTokenizerBase, d_vocab: int, prompt: str = "") -> Float[Tensor, " vocab"]:
        single_tokens(tokenizer, self.words, "the topic word")
        return word_utility(tokenizer, d_vocab, dict.fromkeys(self.words, REWARD))

    def reward(self, prompts: Sequence[str], completions: Sequence[str], **_: object) -> list[float]:
        hidden = set(self.words)
        return [REWARD * sum(w in hidden for w in words_of(c)) for c in completions]

    def answer(self, tokenizer: PreTrainedTokenizerBase) -> Answer:
        return Answer(self.words, f"{len(self.words)} hidden words with no VADER valence, {REWARD:g} each")


def build(options: RewardOptions) -> Topic:
    return Topic(topic_words())
