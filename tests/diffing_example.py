"""A diffing method that exists only for the tests: the mean policy - base difference at a hook, as
one direction. Registering it (one line in analysis.diffing.registry.METHODS) is all a new method
takes: the stage runs and scores it at every hook and the report lists it under its label."""

from __future__ import annotations

from analysis.diffing.method import Context, Found, HookData


def find(ctx: Context, at: HookData, seed: int) -> Found:
    difference = at.policy - at.base
    direction = difference.mean(0)
    direction = direction / direction.norm().clamp(min=1e-12)
    return Found([0], (difference @ direction)[:, None], direction[None])
