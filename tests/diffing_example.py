"""A diffing method that exists only for the tests: the mean policy - base difference at a hook, as
one direction, with a setting, a record per hook and a once-per-run step. Registering it (one line in
analysis.diffing.registry.METHODS) is all a new method takes: its settings load from
[model_diffing.methods.mean_difference], the stage runs and scores it at every hook and keeps its records,
and the report lists it under its label."""

from __future__ import annotations

from dataclasses import dataclass

from analysis.diffing.method import Context, Found, HookData
from rlhf.configtypes import NonNegativeInt


@dataclass(frozen=True)
class MeanDifferenceConfig:
    skip: NonNegativeInt = 0  # held-out tokens left out of the mean, from the first


@dataclass(frozen=True)
class MeanDifference:
    """Its record at one hook."""

    hook: str
    tokens: int  # averaged over
    norm: float  # of the mean difference


@dataclass(frozen=True)
class Largest:
    """Its once-per-run record: where the mean difference is largest."""

    hook: str
    norm: float


def find(ctx: Context, at: HookData, seed: int) -> Found:
    difference = (at.policy - at.base)[ctx.cfg.method("mean_difference").skip :]
    direction = difference.mean(0)
    record = MeanDifference(at.hook, len(difference), float(direction.norm()))
    direction = direction / direction.norm().clamp(min=1e-12)
    return Found([0], ((at.policy - at.base) @ direction)[:, None], direction[None], record=record)


def once(ctx: Context, records: dict[str, tuple[MeanDifference, ...]]) -> Largest:
    top = max((r for rows in records.values() for r in rows), key=lambda r: r.norm)
    return Largest(top.hook, top.norm)
