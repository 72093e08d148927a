"""How each probe is fitted and scored: the valence probe, the implicit-reward probes and their
ablation, the sequence-level probes. Imports nothing heavy: study configs are checked before torch loads."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Literal

from rlhf.configtypes import (
    FractionFloat,
    Layers,
    NonEmpty,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    ProbabilityFloat,
)


@dataclass(frozen=True)
class ValenceProbeConfig:
    model: str = "base"  # which model of the study: "base" or "policy" (or any other it trained)
    examples_per_word: PositiveInt = 4
    train_fraction: FractionFloat = 0.7  # of the sentiment words the probe is fitted on
    seed: NonNegativeInt = 0
    min_word_tau: ProbabilityFloat = 0.8  # the acceptance bar: held-out words, at the word
    min_last_token_tau: ProbabilityFloat = 0.7  # held-out words, at the review's last token


@dataclass(frozen=True)
class AblationConfig:
    k: PositiveInt = 10  # features switched off (the headline comparison)
    # More sizes, each probe's top-k against k random features: does any number of the probe's
    # features do what the same number of random ones does not? Sizes beyond the ranking are skipped.
    sweep: tuple[PositiveInt, ...] = (3, 30, 100)
    random_sets: PositiveInt = 2  # sets of k random (live) features to compare with
    n_prompts: PositiveInt = 128
    max_new_tokens: PositiveInt = 19
    seeds: Annotated[tuple[NonNegativeInt, ...], NonEmpty()] = (0, 1, 2)  # sampling seeds; every condition uses the same ones
    random_seed: NonNegativeInt = 0  # which random feature sets are drawn


@dataclass(frozen=True)
class SequenceProbeConfig:
    n_prompts: PositiveInt = 800  # each gets one policy and one base completion
    max_new_tokens: PositiveInt = 19
    test_fraction: FractionFloat = 0.3  # of prompts (both their completions are held out together)
    min_reward_gap: NonNegativeFloat = 0.2  # pairs closer than this are no preference
    seed: NonNegativeInt = 0


MIN_TRIPLES = 20  # contrastive triples a probe needs for its splits


@dataclass(frozen=True)
class LinearRewardConfig:
    model: str = "policy"  # whose activations and SAEs: "policy" or "base" (or any model of the study)
    features: Literal["sae", "activations"] = "sae"
    layers: Layers | None = None  # default: the study's chosen layers
    target: Literal["paper", "utility"] = "utility"
    alpha: PositiveFloat | None = None  # ridge penalty; None = chosen by cross-validation
    size: str = "1x"  # which SAE width
    n_triples: PositiveInt = 1500  # per protocol
    test_fraction: FractionFloat = 0.2  # the paper's split of triples
    held_out_word_fraction: FractionFloat = 0.3
    seed: NonNegativeInt = 0


@dataclass(frozen=True)
class ImplicitRewardConfig:
    enabled: bool = True
    target: Literal["utility", "paper"] = "utility"  # the linear probe's target (both protocols are always run)
    n_triples: PositiveInt = 1500
    size: str = "1x"  # which SAE width
    live_frequency: ProbabilityFloat = 1e-3  # a feature firing on fewer held-out tokens counts as dead (not a random pick)
    ablation: AblationConfig = field(default_factory=AblationConfig)
    sequence: SequenceProbeConfig = field(default_factory=SequenceProbeConfig)


@dataclass(frozen=True)
class WriterProbeConfig:
    """The writer probe: from a model's features at each completion position to the expected
    utility of its next token (what that position writes, where the implicit-reward probe reads)."""

    model: str = "policy"
    features: Literal["sae", "activations"] = "sae"
    layers: Layers | None = None  # default: the study's chosen layers
    size: str = "1x"
    n_prompts: PositiveInt = 256  # held-out prompts, one sampled completion each
    max_new_tokens: PositiveInt = 19
    test_fraction: FractionFloat = 0.3  # of prompts: every position of a test prompt is held out
    alpha: PositiveFloat | None = None  # ridge penalty; None = chosen by cross-validation
    seed: NonNegativeInt = 0  # prompts, sampling and the split
    scale: PositiveFloat = 5.0  # the utility reward's scale: u(t) = valence / scale
