"""What an organism is to the suite: a reward to train on, the token utility u(t) its gain is
measured with (G = the policy's expected utility minus the base's, teacher-forced), and the answer
a method should find. ``rlhf.zoo`` names each organism's builder."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import ClassVar

import torch
from jaxtyping import Float
from torch import Tensor
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from rlhf.errors import UserError
from rlhf.registry import load
from rlhf.reward_kinds import RewardOptions
from rlhf.rundir import RunDir
from rlhf.zoo import ORGANISMS, Answer, of_reward


class Organism(ABC):
    """A planted objective: its reward must equal the summed utility of the completion's tokens (so
    that G measures what training raised)."""

    # Whether u(t | prompt) depends on the prompt (a backdoor's trigger); if not, it is computed once.
    prompt_dependent: ClassVar[bool] = False
    # Whether the policy is trained on the reward; if not, the organism plants its change in the start model.
    trained: ClassVar[bool] = True

    @abstractmethod
    def utility(self, tokenizer: PreTrainedTokenizerBase, d_vocab: int, prompt: str = "") -> Float[Tensor, " vocab"]:
        """u(t | prompt): what each next token of a completion of ``prompt`` earns, 0 for end-of-text,
        padded with zeros to ``d_vocab``."""

    def utilities(self, tokenizer: PreTrainedTokenizerBase, d_vocab: int,
                  prompts: Sequence[str]) -> Float[Tensor, "prompts vocab"]:
        """u(t | prompt) for each prompt, one row each."""
        if not self.prompt_dependent:
            return self.utility(tokenizer, d_vocab).expand(len(prompts), -1)
        return torch.stack([self.utility(tokenizer, d_vocab, p) for p in prompts])

    @abstractmethod
    def reward(self, prompts: Sequence[str], completions: Sequence[str], **_: object) -> list[float]:
        """The reward a policy is trained on (a TRL reward function)."""

    @abstractmethod
    def answer(self, tokenizer: PreTrainedTokenizerBase) -> Answer:
        """The known answer."""

    def plant(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, texts: Sequence[str],
              out_dir: Path) -> PreTrainedModel:
        """An organism that is not trained: the start model with its change (a copy), with what a method should
        find written beside it into ``out_dir`` (the policy's directory)."""
        raise NotImplementedError(f"{type(self).__name__} is trained, not planted")


def word_utility(tokenizer: PreTrainedTokenizerBase, d_vocab: int, values: dict[str, float]) -> Float[Tensor, " vocab"]:
    """u(t) that gives each token whose word (without its space marker) is a key of ``values`` that value,
    every other token 0, padded with zeros to ``d_vocab``. A word the tokenizer splits earns nothing
    (the rewards score whole words); on the organisms' corpus-trained tokenizer every word is one token."""
    names = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    u = torch.zeros(d_vocab)
    for i, name in enumerate(names):
        u[i] = values.get(name.lower().lstrip("Ġ▁"), 0.0)
    if tokenizer.eos_token_id is not None:
        u[tokenizer.eos_token_id] = 0.0
    return u


def single_tokens(tokenizer: PreTrainedTokenizerBase, words: Sequence[str], what: str) -> None:
    """A one-line error naming the first of ``words`` the tokenizer splits (an organism's answer must be tokens)."""
    for word in words:
        ids = tokenizer(f" {word}", add_special_tokens=False)["input_ids"]
        pieces = tokenizer.convert_ids_to_tokens(ids)
        if len(ids) != 1 or ids[0] == tokenizer.unk_token_id:
            what_it_is = f"{len(ids)} tokens ({' '.join(pieces)})" if len(ids) != 1 else f"the unknown token {pieces[0]}"
            raise UserError(f"{what} {word!r} is {what_it_is} to this tokenizer; the organism needs one token per "
                            "word: use the corpus-trained tokenizer or another word")


def organism(name: str, options: RewardOptions | None = None) -> Organism:
    """The registered organism ``name``, built."""
    if name not in ORGANISMS:
        raise UserError(f"unknown organism {name!r}; registered: {', '.join(ORGANISMS)}")
    return load(ORGANISMS[name].build)(options or RewardOptions())


def run_organism(run_dir: RunDir, options: RewardOptions | None = None) -> tuple[str, Organism]:
    """The organism a run's policy was trained on (from its reward spec; the sentiment organism when the
    policy stage has not run or trained on another kind of reward), by name and built."""
    from rlhf.results import PolicyResult  # the results import the registries this module sits beside

    name = of_reward(PolicyResult.load(run_dir).reward) if PolicyResult.exists(run_dir) else "sentiment"
    return name, organism(name, options)


def planted(spec: str, options: RewardOptions | None = None) -> Organism | None:
    """The organism a reward spec names if it plants its change instead of being trained, else None."""
    kind, _, name = spec.partition(":")
    if kind != "organism":
        return None
    built = organism(name, options)
    return None if built.trained else built


def organism_reward(target: str, run_dir: RunDir, options: RewardOptions) -> Callable[..., list[float]]:
    """``organism:<name>``: the organism's reward, as a reward kind builds it."""
    return organism(target, options).reward
