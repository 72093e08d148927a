"""Types that config fields are annotated with, so that a config is checked when it loads.

``study.config`` reads these annotations: a ``Literal`` field takes only its listed values,
an ``Annotated[int, Positive]`` field only positive ones, a ``HookName`` only a hook that a
converted model (TransformerBridge in compatibility mode) has. Each failure names the key, the bad value and what is allowed.
This module imports nothing heavy: configs are checked before torch is imported.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal


@dataclass(frozen=True)
class Range:
    """A number's allowed interval; None leaves that side open."""

    gt: float | None = None
    ge: float | None = None
    le: float | None = None
    lt: float | None = None

    def check(self, value: Any) -> str | None:
        """Why ``value`` is out of range, or None."""
        if value != value:  # NaN
            return "must be a number, got nan"
        for bound, ok, word in ((self.gt, lambda b: value > b, ">"), (self.ge, lambda b: value >= b, ">="),
                                (self.le, lambda b: value <= b, "<="), (self.lt, lambda b: value < b, "<")):
            if bound is not None and not ok(bound):
                return f"must be {word} {bound:g}, got {value!r}"
        return None


@dataclass(frozen=True)
class Hook:
    """A TransformerLens hook name, or a template with ``{layer}`` (``blocks.{layer}.hook_mlp_out``)."""

    def check(self, value: Any) -> str | None:
        if not isinstance(value, str) or not is_hook_name(value):
            return f"is not a TransformerLens hook name: {value!r}; valid: {', '.join(HOOK_EXAMPLES)}"
        return None


@dataclass(frozen=True)
class NonEmpty:
    """A list that needs at least one item (a stage with no widths or no seeds has nothing to do)."""

    def check(self, value: Any) -> str | None:
        return "must list at least one value, got []" if len(value) == 0 else None


@dataclass(frozen=True)
class OneOf:
    """One of a list that a registry holds, read when the value is checked (so an entry registered
    after this module loaded counts)."""

    choices: Callable[[], Sequence[str]]

    def check(self, value: Any) -> str | None:
        allowed = self.choices()
        return None if value in allowed else f"must be one of {', '.join(map(repr, allowed))}; got {value!r}"


@dataclass(frozen=True)
class Sections:
    """A table of sub-tables, one per entry of a registry, each read as that entry's settings type
    (``[model_diffing.methods.<name>]``). ``types`` gives the registry's names and their settings
    types (None: the entry takes no settings), read when the config loads."""

    types: Callable[[], dict[str, type | None]]


@dataclass(frozen=True)
class Layer:
    """Marks a layer index, checked against the model's depth once the whole config is read
    (``study.config``): one field alone does not know how many layers there are."""


def is_lexicon(spec: str) -> bool:
    """Whether the reward is the VADER lexicon utility (the stages that score against it need it)."""
    return spec in ("vader", "organism:sentiment")


Positive = Range(gt=0)
NonNegative = Range(ge=0)
Fraction = Range(gt=0, le=1)  # a share of something, e.g. a split
Probability = Range(ge=0, le=1)

PositiveInt = Annotated[int, Positive]
NonNegativeInt = Annotated[int, NonNegative]
PositiveFloat = Annotated[float, Positive]
NonNegativeFloat = Annotated[float, NonNegative]
FractionFloat = Annotated[float, Fraction]
ProbabilityFloat = Annotated[float, Probability]
HookName = Annotated[str, Hook()]
LayerIndex = Annotated[int, NonNegative, Layer()]
Layers = tuple[LayerIndex, ...]

DType = Literal["float32", "bfloat16", "float16"]

# HookedTransformer's hook points of a block and of the model around the blocks, as the bridge's
# compatibility mode names them (TransformerLens 3.9; a rotary model's hook_pos_embed never fires,
# parallel-attention blocks have no hook_resid_mid: conversion reports those against the real model).
BLOCK_HOOKS = (
    "hook_resid_pre", "hook_resid_mid", "hook_resid_post", "hook_attn_in", "hook_q_input", "hook_k_input",
    "hook_v_input", "hook_mlp_in", "hook_attn_out", "hook_mlp_out",
    "ln1.hook_scale", "ln1.hook_normalized", "ln2.hook_scale", "ln2.hook_normalized",
    "attn.hook_q", "attn.hook_k", "attn.hook_v", "attn.hook_z", "attn.hook_attn_scores", "attn.hook_pattern",
    "attn.hook_result", "attn.hook_rot_q", "attn.hook_rot_k", "mlp.hook_pre", "mlp.hook_post", "mlp.hook_pre_linear",
)
MODEL_HOOKS = ("hook_embed", "hook_pos_embed", "hook_tokens", "ln_final.hook_scale", "ln_final.hook_normalized")
HOOK_EXAMPLES = ("blocks.{layer}.hook_mlp_out", "blocks.{layer}.hook_resid_post", "blocks.{layer}.hook_attn_out",
                 "blocks.3.mlp.hook_post", "hook_embed", "... (any TransformerLens hook)")

_BLOCK = re.compile(r"blocks\.(\{layer\}|\d+)\.(.+)")


def is_hook_name(name: str) -> bool:
    match = _BLOCK.fullmatch(name)
    return match.group(2) in BLOCK_HOOKS if match else name in MODEL_HOOKS
