"""The kinds of reward a config's ``reward`` can name, ``<kind>`` or ``<kind>:<target>``: how each is
checked when the config loads, what a run checks as it starts, and which function builds it.
Light on purpose (configs are checked with it before torch loads); a kind's builder is imported
only when a reward is made. Adding a kind is one module with its builder and one entry here."""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from rlhf.configtypes import OneOf
from rlhf.zoo import ORGANISMS

# The reward models' heads the hidden_context stage can train, by name: "module:HEAD", a
# rlhf.reward_models.Head (its outputs, loss, predicted mean and spread), imported when a model trains.
REWARD_HEADS: dict[str, str] = {"bradley_terry": "rlhf.reward_models:BRADLEY_TERRY",
                                "mean_variance": "rlhf.reward_models:MEAN_VARIANCE",
                                "categorical": "rlhf.reward_models:CATEGORICAL"}
RewardModelKind = Annotated[str, OneOf(lambda: tuple(REWARD_HEADS))]


@dataclass(frozen=True)
class RewardOptions:
    """What a config says about its reward besides the spec."""

    label: str = ""  # a classifier's label whose logit is the reward
    scale: float = 5.0  # the VADER utility's divisor
    clip: float = 10.0
    include_prompt: bool = False


@dataclass(frozen=True)
class RewardKind:
    build: str  # "module:function", (target, run_dir, options: RewardOptions) -> a TRL reward function
    syntax: str  # how messages show the spec: "model:<dir or hub id>"
    # The regular expression its target must match (or a function giving it, for a pattern read from
    # a registry when a spec is checked); "": the kind takes no target.
    target: str | Callable[[], str] = ""
    # What a run checks as it starts (files, modules), target -> the problem or None; not at load, so an
    # old run's config stays readable after its reward model moved.
    problem: Callable[[str], str | None] | None = None
    trains: str = ""  # the stage that makes this reward in the run (it then runs before the policy)
    labelled: bool = False  # takes reward_label


def _model_problem(target: str) -> str | None:
    """A name that is no local path is taken for a hub id."""
    path = Path(target).expanduser()
    if path.exists() and not (path / "config.json").is_file():
        return f"{path} has no config.json; name a saved sequence classifier or reward model"
    if not path.exists() and (target.startswith(("/", ".", "~")) or not re.fullmatch(r"[\w.-]+(/[\w.-]+)?", target)):
        return f"no such directory {path}"
    return None


def _python_problem(target: str) -> str | None:
    module = target.partition(":")[0]
    try:
        found = importlib.util.find_spec(module)
    except (ImportError, ValueError):  # a parent package that does not exist
        found = None
    return None if found else f"no module {module!r} on the Python path (run from the directory that holds it)"


REWARD_KINDS: dict[str, RewardKind] = {
    "vader": RewardKind("rlhf.rewards:utility_reward", "vader"),
    "model": RewardKind("rlhf.rewards:classifier_reward", "model:<dir or hub id>", r".+", _model_problem,
                        labelled=True),
    "python": RewardKind("rlhf.rewards:python_reward", "python:package.module:function",
                         r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", _python_problem),
    "organism": RewardKind("rlhf.organisms.objective:organism_reward", "organism:<a registered organism>",
                           lambda: "(" + "|".join(map(re.escape, ORGANISMS)) + ")"),
    "study": RewardKind("rlhf.rewards:study_reward", "study:reward_<a reward model of hidden_context.kinds>",
                        lambda: "reward_(" + "|".join(REWARD_HEADS) + ")", trains="hidden_context"),
}


def parse(spec: str) -> tuple[RewardKind | None, str]:
    """The kind a spec names (None if no registered kind) and its target."""
    kind, _, target = spec.partition(":")
    return REWARD_KINDS.get(kind), target


def spec_problem(spec: str) -> str | None:
    """Why ``spec`` is no reward a registered kind reads, or None."""
    kind, target = parse(spec)
    if kind is None:
        return f"must be one of {', '.join(repr(k.syntax) for k in REWARD_KINDS.values())}; got {spec!r}"
    pattern = kind.target() if callable(kind.target) else kind.target
    if re.fullmatch(pattern, target) if pattern else ":" not in spec:
        return None
    allowed = f" ({spec.partition(':')[0]}:{pattern})" if callable(kind.target) else ""  # the registry's names now
    return f"must be {kind.syntax!r}{allowed}; got {spec!r}"


@dataclass(frozen=True)
class RewardSpec:
    """Which reward scores completions: a kind of ``REWARD_KINDS`` (``vader``, the paper's utility;
    ``model:<dir or hub id>``, a sequence classifier or TRL reward model;
    ``python:package.module:function``, any callable ``(prompts, completions) -> list[float]``;
    ``organism:<name>``, a registered organism's planted objective (``rlhf.zoo``);
    ``study:reward_<kind>``, a reward model of the hidden_context stage)."""

    def check(self, value: Any) -> str | None:
        return spec_problem(str(value))


Reward = Annotated[str, RewardSpec()]
