"""The one interface every diffing method implements, and what the methods share.

A method is a function ``find(ctx, at, seed) -> Found``: given what the stage loaded once
(``Context``), one hook's held-out activations (``HookData``) and a dictionary seed, it names
the latents (or directions) it calls policy-specific, with their activations on the held-out
tokens and their directions in the policy's activation space; a method that names tokens rather
than latents (per-token KL) returns them in ``Found.tokens``. ``analysis.diffing.registry`` lists
the methods.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import torch
from jaxtyping import Bool, Float
from torch import Tensor
from transformers import PreTrainedTokenizerBase

from analysis.activations import load_shards
from analysis.config import ModelDiffingConfig
from analysis.contexts import CachedText, load_cached_text
from analysis.crosscoder import BatchTopKCrosscoder, load_crosscoder, save_crosscoder
from analysis.feature_diff import policy_vocabulary
from rlhf.errors import UserError
from rlhf.hooked import HookedModel, to_hooked
from rlhf.organisms.edit import PLANTED_FILE, PlantedEdit
from rlhf.organisms.objective import Organism, run_organism
from rlhf.policy import prompts_from_texts
from rlhf.reward_kinds import RewardOptions
from rlhf.rewards import UtilityReward
from rlhf.rundir import RunDir, hook_dirname

T = TypeVar("T")
PROMPT_SEED = 11  # draws the held-out prompts


@dataclass
class Found:
    """What a method names at one hook: latents with held-out activations and policy-space directions
    (what the scores and directional ablation read), or, for a method naming tokens, the tokens alone."""

    latents: list[int]
    activations: Float[Tensor, "tokens k"]
    directions: Float[Tensor, "k d"]
    tokens: list[int] = field(default_factory=list)
    set_aside: int = 0  # latents of its dictionary that never fire on held-out text: never ranked
    record: Any = None  # the method's own numbers at this hook and seed (the lens's reading, say), for the artifact

    @classmethod
    def of_tokens(cls, tokens: list[int]) -> Found:
        return cls([], torch.zeros(0, 0), torch.zeros(0, 0), tokens=tokens)

    def top(self, k: int) -> Found:
        """The first ``k`` latents (a method ranks ``Context.depth`` of them; most scores read ``top_k``)."""
        return replace(self, latents=self.latents[:k], activations=self.activations[:, :k], directions=self.directions[:k])


def memo(cache: dict, key: Hashable, compute: Callable[[], T]) -> T:
    """``cache[key]``, computed on first use: two rankings of one dictionary train and evaluate it once."""
    if key not in cache:
        cache[key] = compute()
    return cache[key]


@dataclass
class Context:
    """What every method and score reads, loaded once per stage run: the vocabulary with its known reward."""

    cfg: ModelDiffingConfig
    run_dir: RunDir
    tokenizer: PreTrainedTokenizerBase
    vocab: list[str]
    # What each token earns without a prompt, which latents' activations are correlated with: the VADER valence
    # for the sentiment organism (its utility up to scale), the organism's own u(t) otherwise
    token_utility: Float[Tensor, " vocab"]
    unembed: Float[Tensor, "d vocab"]
    high: set[int]  # what a method naming tokens should name: the high-utility vocabulary, or the organism's answer
    key: set[int]  # of those, what it must name to have found the objective (a backdoor's trigger); empty: no key
    prompts: list[str]  # held-out prompts: every sampled score completes these
    objective: Organism  # the organism the policy was trained on: its reward scores sampled completions
    planted: PlantedEdit | None  # the edit organism's change, where the policy was planted, not trained
    memo: dict = field(default_factory=dict)  # results shared across hooks (the per-token KL, hooked models)

    @property
    def depth(self) -> int:
        """How many latents a method ranks: ``top_k`` for most scores, the largest splice k for the causal one."""
        return max(self.cfg.top_k, *self.cfg.splice_ks)

    def hooked(self, model: str) -> HookedModel:
        """The run's ``model`` ("base" or "policy") as a TransformerLens model, loaded once."""
        return memo(self.memo, ("hooked", model), lambda: to_hooked(self.run_dir.model(model)))

    @classmethod
    def load(cls, cfg: ModelDiffingConfig, run_dir: RunDir) -> Context:
        tokenizer, vocab, token_valence, unembed = policy_vocabulary(run_dir)
        # The sampled scores' reward at its default scale: the units of the unedited reward.
        name, objective = run_organism(run_dir, RewardOptions(scale=UtilityReward().scale))
        answer = objective.answer(tokenizer)
        if name == "sentiment":
            high = {i for i, v in enumerate(token_valence.tolist()) if v >= cfg.high_utility}
            if not high:
                raise UserError(f"no token has valence >= {cfg.high_utility}: lower model_diffing.high_utility")
        else:  # another organism's known answer
            high = _ids_of(tokenizer, answer.tokens)
        utility = token_valence if name == "sentiment" else objective.utility(tokenizer, len(vocab))[: len(vocab)].float()
        return cls(cfg, run_dir, tokenizer, vocab, utility, unembed, high, _ids_of(tokenizer, answer.key),
                   prompts_from_texts(run_dir.texts("test"), cfg.n_prompts, PROMPT_SEED), objective,
                   PlantedEdit.load(run_dir.policy) if (run_dir.policy / PLANTED_FILE).exists() else None)


def _ids_of(tokenizer: PreTrainedTokenizerBase, words: Sequence[str]) -> set[int]:
    """The ids of the tokens spelling ``words``, with or without the tokenizer's space marker."""
    wanted = {w.lstrip("Ġ▁") for w in words}
    return {i for i, t in enumerate(tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))) if t.lstrip("Ġ▁") in wanted}


def held_out(run_dir: RunDir, model: str, hook: str) -> Float[Tensor, "tokens d"]:
    return torch.cat(list(load_shards(run_dir.activations(model, hook, "val"))))


def work_dir(run_dir: RunDir, hook: str) -> Path:
    """Where the stage keeps one hook's trained dictionaries (reused by a re-run)."""
    return run_dir.stage_dir("model_diffing") / hook_dirname(hook)


@dataclass
class HookData:
    """One hook's held-out activations of both models (the same tokens) and their text."""

    hook: str
    base: Float[Tensor, "tokens d"]
    policy: Float[Tensor, "tokens d"]
    text: CachedText
    memo: dict = field(default_factory=dict)  # dictionaries trained at this hook, per seed

    @classmethod
    def load(cls, run_dir: RunDir, hook: str) -> HookData:
        return cls(hook, held_out(run_dir, "base", hook), held_out(run_dir, "policy", hook),
                   load_cached_text(run_dir.activations("policy", hook, "val")))

    @property
    def pair(self) -> Float[Tensor, "tokens 2 d"]:
        """(base, policy) stacked per token, as the crosscoders read them."""
        return torch.stack([self.base, self.policy], 1)


Find = Callable[[Context, HookData, int], Found]  # a method: what it finds at a hook for a dictionary seed


def chunks(x: Float[Tensor, "tokens ..."], size: int = 4096) -> list[Tensor]:
    return [x[i : i + size] for i in range(0, len(x), size)]


@torch.no_grad()
def encode(model: torch.nn.Module, x: Float[Tensor, "tokens ..."]) -> Float[Tensor, "tokens latents"]:
    """A dictionary's codes of held-out tokens, in chunks and without a graph."""
    return torch.cat([model.encode(c) for c in chunks(x)])


def fires(codes: Float[Tensor, "tokens latents"]) -> Bool[Tensor, " latents"]:
    return (codes > 0).any(0)


def pick(ranked: Sequence[int], codes: Float[Tensor, "tokens latents"], directions: Float[Tensor, "latents d"],
         k: int) -> Found:
    """The top ``k`` of a ranking among the latents that fire on held-out text: one that never fires is
    a training artefact, not something the fine-tune added. The others are counted as set aside."""
    live = fires(codes)
    top = [i for i in ranked if live[i]][:k]
    return Found(top, codes[:, top], directions[top], set_aside=int((~live).sum()))


def saved(path: Path, name: str, hook: str) -> Path:
    """``path``, a dictionary model diffing trained, checked to exist for a reader (reward attribution)."""
    if not path.exists():
        raise UserError(f"reward_attribution.dictionaries lists {name!r}, but model diffing trained none at {hook} "
                        f"({path.name}); enable model_diffing for that layer or drop {name!r}")
    return path


def train_or_load(path: Path, train: Callable[[], BatchTopKCrosscoder]) -> BatchTopKCrosscoder:
    """A dictionary saved by an earlier (killed) run of the stage is reused."""
    if path.exists():
        return load_crosscoder(path)
    model = train()
    save_crosscoder(model, path)
    return model
