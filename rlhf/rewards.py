"""The paper's utility reward: the summed VADER valence of a text's words, scaled and clipped.

Words come from a regex (letters and apostrophes, lowercased) and valences from the
lexicon inside the installed vaderSentiment package: no spaCy, no nltk downloads.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from rlhf.lexicon import load_lexicon, words_of


def vader_utility(texts: Sequence[str], *, scale: float = 5.0, clip: float = 10.0) -> list[float]:
    """clip(sum of VADER valences of each text's lowercase words / scale, -clip, clip)."""
    if scale <= 0 or clip <= 0:
        raise ValueError(f"scale and clip must be positive, got scale={scale}, clip={clip}")
    lexicon = load_lexicon()
    out = []
    for text in texts:
        total = sum(lexicon[w].valence for w in words_of(text) if w in lexicon)
        out.append(max(-clip, min(clip, total / scale)))
    return out


@dataclass
class UtilityReward:
    """The utility as a TRL reward function (``GRPOTrainer(reward_funcs=UtilityReward())``).

    TRL passes prompts and completions as keyword arguments; with ``include_prompt`` the
    prompt's words count too (the paper scores the completion only by default)."""

    scale: float = 5.0
    clip: float = 10.0
    include_prompt: bool = False
    __name__: str = "vader_utility"

    def __call__(self, prompts: Sequence[str], completions: Sequence[str], **_: object) -> list[float]:
        if len(prompts) != len(completions):
            raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
        texts = [f"{p} {c}" for p, c in zip(prompts, completions)] if self.include_prompt else list(completions)
        rewards = vader_utility(texts, scale=self.scale, clip=self.clip)
        if any(math.isnan(r) for r in rewards):
            raise FloatingPointError("the utility reward produced NaN")
        return rewards
