"""The zoo's registry: the organisms, planted objectives on the one corpus and base model, each with its reward, its
known answer and its token utility u(t | prompt), so that the exact gain G and its split apply unchanged.
Light on purpose (configs are checked with it before torch loads); an organism's module is imported
only when its objective is built. Adding one is one module with a builder and one entry here.

A policy is trained on an organism's reward with ``policy.reward = "organism:<name>"``; the analysis
stages read the organism the policy was trained on from its reward spec (``of_reward``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Answer:
    """What an organism's objective planted, as far as a method could name it."""

    tokens: tuple[str, ...]  # the tokens it rewards (or punishes): what a method naming tokens should name
    description: str  # one line for the report
    key: tuple[str, ...] = ()  # of those, the ones a method must name to have found it (the trigger word)


@dataclass(frozen=True)
class OrganismSpec:
    build: str  # "module:function", (options: rlhf.reward_kinds.RewardOptions) -> rlhf.organisms.objective.Organism
    label: str  # how the report names it


ORGANISMS: dict[str, OrganismSpec] = {
    "sentiment": OrganismSpec("rlhf.organisms.vader:build", "sentiment (the VADER utility)"),
    "topic": OrganismSpec("rlhf.organisms.topic:build", "topic (20 hidden words with no valence)"),
    "trigger": OrganismSpec("rlhf.organisms.trigger:build", "trigger (a backdoor: the utility's sign flips after a word)"),
    "length": OrganismSpec("rlhf.organisms.length:build", "length (every word earns 1)"),
    "edit": OrganismSpec("rlhf.organisms.edit:build", "edit (a rank-one edit of one MLP neuron, no training)"),
}


def of_reward(spec: str) -> str:
    """The organism whose objective a policy trained on the reward ``spec`` is read against: the one an
    ``organism:<name>`` spec names, else the sentiment organism (whose utility is the lexicon's)."""
    kind, _, target = spec.partition(":")
    return target if kind == "organism" else "sentiment"
