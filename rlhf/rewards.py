"""The paper's utility reward: the summed VADER valence of a text's words, scaled and clipped.

Words come from a regex (letters and apostrophes, lowercased) and valences from the
lexicon inside the installed vaderSentiment package: no spaCy, no nltk downloads.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from transformers import AutoModelForSequenceClassification, PreTrainedModel, PreTrainedTokenizerBase

from rlhf.errors import UserError
from rlhf.lexicon import load_lexicon, words_of
from rlhf.reward_models import Kind, score
from rlhf.tokenizer import load_tokenizer

# What TRL's online trainers call: prompts and completions in, one reward per completion out.
RewardFunction = Callable[..., list[float]]


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


def checked(name: str, rewards: Sequence[float | None], expected: int) -> list[float]:
    """A reward function's output, refused unless it is one finite number per completion
    (TRL would average NaN away silently)."""
    rewards = list(rewards)
    if len(rewards) != expected:
        raise UserError(f"reward function {name} returned {len(rewards)} rewards for {expected} completions")
    bad = [i for i, r in enumerate(rewards) if r is None or not math.isfinite(r)]
    if bad:
        raise UserError(f"reward function {name} returned {rewards[bad[0]]!r} for completion {bad[0]} "
                        f"({len(bad)} non-finite rewards in the batch)")
    return [float(r) for r in rewards]


@dataclass
class UtilityReward:
    """The utility as a TRL reward function (``GRPOTrainer(reward_funcs=UtilityReward())``).

    TRL passes prompts and completions as keyword arguments; with ``include_prompt`` the
    prompt's words count too (the paper scores the completion only by default)."""

    scale: float = 5.0
    clip: float = 10.0
    include_prompt: bool = False

    def __call__(self, prompts: Sequence[str], completions: Sequence[str], **_: object) -> list[float]:
        if len(prompts) != len(completions):
            raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
        texts = [f"{p} {c}" for p, c in zip(prompts, completions)] if self.include_prompt else list(completions)
        return checked(type(self).__name__, vader_utility(texts, scale=self.scale, clip=self.clip), len(completions))


@dataclass
class LearnedReward:
    """A trained reward model (``rlhf.reward_models``) as a TRL reward function: the predicted
    mean reward of prompt + completion, read where the model was trained to read it."""

    path: Path
    kind: Kind = "bradley_terry"
    model: PreTrainedModel = field(init=False, repr=False)
    tokenizer: PreTrainedTokenizerBase = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not (Path(self.path) / "config.json").exists():
            raise UserError(f"no reward model in {self.path}: expected config.json (train the reward model first)")
        self.model = AutoModelForSequenceClassification.from_pretrained(str(self.path), local_files_only=True)
        self.tokenizer = load_tokenizer(self.path)

    def __call__(self, prompts: Sequence[str], completions: Sequence[str], **_: object) -> list[float]:
        if len(prompts) != len(completions):
            raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
        means, _ = score(self.model, self.tokenizer, [f"{p} {c}" for p, c in zip(prompts, completions)], self.kind)
        return checked(type(self).__name__, means.tolist(), len(completions))
