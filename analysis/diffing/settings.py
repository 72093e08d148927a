"""The diffing methods' own settings, one dataclass per method that has any, read from
``[model_diffing.methods.<name>]``. Light on purpose (no torch): configs are checked with them
before any method's module loads; the registry names each method's settings type."""

from __future__ import annotations

from dataclasses import dataclass

from rlhf.configtypes import NonNegativeFloat, PositiveFloat, PositiveInt, ProbabilityFloat


@dataclass(frozen=True)
class MMCSDiffConfig:
    size: str = "1x"  # the SAE width compared (a size the dictionaries stage trained)
    match_threshold: ProbabilityFloat = 0.7  # policy features whose best base cosine is lower count as new


@dataclass(frozen=True)
class DifferenceConfig:
    # Fewer tokens than the crosscoder (whose dead latents need 500k): dictionary training was most of the stage's time.
    tokens: PositiveInt = 200_000


@dataclass(frozen=True)
class LensConfig:
    texts: PositiveInt = 400  # held-out corpus texts the mean difference is taken over
    positions: PositiveInt = 5  # first text positions averaged over
    steering_alphas: tuple[NonNegativeFloat, ...] = (0.5, 1.0, 2.0)  # steering the base, x the typical activation norm


@dataclass(frozen=True)
class StagewiseConfig:
    size: str = "1x"  # the base SAE's width that is fine-tuned
    tokens: PositiveInt = 100_000  # policy tokens the base's SAE is fine-tuned on
    learning_rate: PositiveFloat = 1e-3


@dataclass(frozen=True)
class KLConfig:
    texts: PositiveInt = 400  # held-out texts on which the per-token KL is measured


@dataclass(frozen=True)
class AmplificationConfig:
    alphas: tuple[PositiveFloat, ...] = (2.0, 4.0)  # a in logits_base + a (logits_policy - logits_base); a = 1 is the policy
    prompts: PositiveInt = 64  # the first of the held-out prompts, sampled at every a and seed
