"""Rewards for the policy stages: the paper's utility (the summed VADER valence of a text's
words, scaled and clipped), a sequence classifier or TRL reward model, a Python function,
or one of the study's own reward models (``make_reward`` picks one from its spec).

Words come from a regex (letters and apostrophes, lowercased) and valences from the
lexicon inside the installed vaderSentiment package: no spaCy, no nltk downloads.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification, PreTrainedModel, PreTrainedTokenizerBase

from rlhf.configtypes import is_lexicon  # noqa: F401  (re-exported: callers import it here)
from rlhf.errors import UserError
from rlhf.lexicon import load_lexicon, words_of
from rlhf.policy.config import check_reward_label
from rlhf.registry import load
from rlhf.reward_kinds import RewardOptions, parse, spec_problem
from rlhf.reward_models import Kind, score
from rlhf.rundir import RunDir
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


def _describe(err: BaseException) -> str:
    """An exception as one line: its type and the first line of its message."""
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0]}" if lines else type(err).__name__


@dataclass
class ClassifierReward:
    """A sequence classifier or TRL reward model (a directory or hub id) scoring prompt + " " +
    completion: its single output, or the logit of ``label`` when it has several (as the paper's
    DistilBERT sentiment reward reads POSITIVE)."""

    source: str
    label: str = ""
    batch_size: int = 64
    model: PreTrainedModel = field(init=False, repr=False)
    tokenizer: PreTrainedTokenizerBase = field(init=False, repr=False)
    index: int = field(init=False)

    def __post_init__(self) -> None:
        if self.source.startswith(("/", ".")) and not Path(self.source).is_dir():
            raise UserError(f"reward model:{self.source}: no such directory")
        try:
            self.model, loading = AutoModelForSequenceClassification.from_pretrained(self.source, output_loading_info=True)
        except (OSError, ValueError) as err:
            raise UserError(f"reward model:{self.source}: cannot load a sequence classifier from it "
                            f"({_describe(err)})") from err
        # A causal LM loads too, with a freshly initialised head: a random reward, refused.
        if loading["missing_keys"]:
            raise UserError(f"reward model:{self.source} is no sequence classifier or reward model: its head "
                            f"({sorted(loading['missing_keys'])[0]}) is not in the checkpoint")
        self.tokenizer = load_tokenizer(self.source, hub=True)
        # Long texts keep their end: the completion is what is being scored.
        self.tokenizer.truncation_side = "left"
        if self.model.config.pad_token_id is None:  # GPT-2 style heads find each text's end by its padding
            self.model.config.pad_token_id = self.tokenizer.pad_token_id
        labels = [self.model.config.id2label[i] for i in range(self.model.config.num_labels)]
        if self.label:
            if self.label not in labels:
                raise UserError(f"reward model:{self.source} has no label {self.label!r}; its labels are {labels}")
            self.index = labels.index(self.label)
        elif len(labels) == 1:
            self.index = 0
        else:
            raise UserError(f"reward model:{self.source} has {len(labels)} outputs: set reward_label to one of {labels}")
        if torch.cuda.is_available():  # the current device: each process's own under a launch
            self.model.to(torch.device("cuda", torch.cuda.current_device()))
        self.model.eval()

    def max_length(self) -> int:
        positions = [getattr(self.model.config, k, None) for k in ("max_position_embeddings", "n_positions")]
        return min([self.tokenizer.model_max_length, *(p for p in positions if p)])

    @torch.no_grad()
    def __call__(self, prompts: Sequence[str], completions: Sequence[str], **_: object) -> list[float]:
        if len(prompts) != len(completions):
            raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
        texts = [f"{p} {c}" for p, c in zip(prompts, completions)]
        out = []
        for start in range(0, len(texts), self.batch_size):
            batch = self.tokenizer(texts[start : start + self.batch_size], padding=True, truncation=True,
                                   max_length=self.max_length(), return_tensors="pt").to(self.model.device)
            out += self.model(**batch).logits[:, self.index].float().cpu().tolist()
        return checked(f"model:{self.source}", out, len(completions))


@dataclass
class PythonReward:
    """``python:package.module:function``: any callable ``(prompts, completions) -> list[float]``,
    its output refused unless it is one finite number per completion."""

    target: str  # package.module:function
    function: Callable[..., object] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        module_name, _, name = self.target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as err:
            raise UserError(f"reward python:{self.target}: cannot import {module_name} ({_describe(err)}); "
                            "is it on PYTHONPATH?") from err
        function = getattr(module, name, None)
        if not callable(function):
            what = "is not callable" if hasattr(module, name) else "does not exist"
            raise UserError(f"reward python:{self.target}: {module_name}.{name} {what}")
        self.function = function

    def __call__(self, prompts: Sequence[str], completions: Sequence[str], **_: object) -> list[float]:
        name = f"python:{self.target}"
        try:
            out = self.function(list(prompts), list(completions))
        except Exception as err:  # noqa: BLE001  (any failure of the user's code is theirs to see, in one line)
            raise UserError(f"reward function {name} raised {_describe(err)}") from err
        try:
            values = [None if v is None else float(v) for v in out]
        except (TypeError, ValueError) as err:
            raise UserError(f"reward function {name} must return a list of numbers, got {type(out).__name__} "
                            f"({_describe(err)})") from err
        return checked(name, values, len(completions))


# The builders rlhf.reward_kinds.REWARD_KINDS names: (target, run_dir, options) -> a TRL reward function.


def utility_reward(target: str, run_dir: RunDir, options: RewardOptions) -> UtilityReward:
    """``vader``: the paper's utility."""
    return UtilityReward(options.scale, options.clip, options.include_prompt)


def classifier_reward(target: str, run_dir: RunDir, options: RewardOptions) -> ClassifierReward:
    """``model:<dir or hub id>``."""
    return ClassifierReward(target, options.label)


def python_reward(target: str, run_dir: RunDir, options: RewardOptions) -> PythonReward:
    """``python:package.module:function``."""
    return PythonReward(target)


def study_reward(target: str, run_dir: RunDir, options: RewardOptions) -> LearnedReward:
    """``study:reward_<kind>``: a reward model the hidden_context stage trained in this run."""
    kind = target.removeprefix("reward_")
    path = run_dir.model(target)
    if not (path / "config.json").exists():
        raise UserError(f"reward study:{target}: no model in {path}; run the hidden_context stage first "
                        f"(with {kind!r} in hidden_context.kinds)")
    return LearnedReward(path, kind)


def make_reward(spec: str, run_dir: RunDir, *, label: str = "", scale: float = 5.0, clip: float = 10.0,
                include_prompt: bool = False) -> RewardFunction:
    """The TRL reward function a config's ``reward`` names (``rlhf.reward_kinds``); ``scale``, ``clip``
    and ``include_prompt`` apply to the VADER utility, ``label`` to a classifier."""
    # The same checks as a config's at load, for callers that build a reward without one.
    problem = spec_problem(spec)
    if problem:
        raise UserError(f"reward {problem}")
    check_reward_label("reward", spec, label)
    kind, target = parse(spec)
    assert kind is not None  # spec_problem refuses unknown kinds
    return load(kind.build)(target, run_dir, RewardOptions(label, scale, clip, include_prompt))
