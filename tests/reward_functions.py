"""Reward functions the tests name as ``python:tests.reward_functions:<name>`` (pluggable rewards, compare)."""

from __future__ import annotations


def count_and(prompts: list[str], completions: list[str]) -> list[float]:
    """How often a completion says "and": a word the tiny base model already uses, so a policy can learn more of it."""
    return [float(c.split().count("and")) for c in completions]


def raises(prompts: list[str], completions: list[str]) -> list[float]:
    raise ValueError("no reward today")


def wrong_length(prompts: list[str], completions: list[str]) -> list[float]:
    return [0.0] * (len(completions) + 1)


def nan(prompts: list[str], completions: list[str]) -> list[float]:
    return [float("nan")] * len(completions)


not_callable = 3
