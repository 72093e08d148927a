"""Where the reward lives (``analysis/reward_attribution.json``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rlhf.artifact import Artifact
from rlhf.zoo import Answer


@dataclass(frozen=True)
class GainEstimate:
    """One sampling seed: the exact expected reward of each model's next-token choices on the
    policy's teacher-forced completions, G and its split, beside the sampled rewards."""

    seed: int
    expected_base: float
    expected_policy: float
    gain: float  # G = expected_policy - expected_base
    utility_part: float  # what the chosen tokens earn (G = utility_part + ending_part)
    ending_part: float  # ending less often, and what the extra tokens earn
    eos_base: float  # mean P(end of text) at completion positions
    eos_policy: float
    sampled_base: float  # mean utility reward of each model's own samples of the same prompts
    sampled_policy: float
    sampled_gain: float
    length_base: float  # mean sampled completion length in tokens
    length_policy: float


@dataclass(frozen=True)
class SiteFractions:
    """One patching or weight-swap site: fraction of G recovered in the base and removed from the policy, per seed."""

    site: str
    layer: int | None
    component: str
    recovered: tuple[float, ...]
    removed: tuple[float, ...]


@dataclass(frozen=True)
class Curve:
    """Splicing the top-k latents of one ranking of one dictionary at one hook: fraction of G per k, per seed."""

    hook: str
    dictionary: str
    ranking: str  # "attribution", "random", "implicit_reward_probe", "writer_probe"
    ks: tuple[int, ...]
    recovered: tuple[tuple[float, ...], ...]  # k -> seed -> fraction (random: mean over the sets)
    removed: tuple[tuple[float, ...], ...]

    @property
    def method(self) -> str:
        return f"{self.dictionary} by {self.ranking}"


@dataclass(frozen=True)
class LatentShare:
    """A top latent by attribution: its estimated and direct shares of G (first seed)."""

    hook: str
    dictionary: str
    latent: int
    attribution: float  # attribution patching's estimate, as a fraction of G
    direct: float  # the direct path's (final norm and unembedding) estimate, as a fraction of G
    recovered: float  # real splicing of this latent alone into the base
    removed: float  # and out of the policy


@dataclass(frozen=True)
class DictionaryInfo:
    hook: str
    dictionary: str
    latents: int
    live: int  # latents with a nonzero difference on the completions (the others are set aside)


@dataclass(frozen=True)
class WriterProbeSummary:
    seed: int
    kendall_tau: float
    r2: float
    untrained_tau: float
    untrained_tau_std: float


@dataclass(frozen=True)
class SampledIntervention:
    """One sampling seed: the policy's sampled reward as it is and with the best ranking's top k latents
    projected out at their hook, with the edit's KL per token to the unedited policy."""

    hook: str
    dictionary: str
    k: int
    seed: int
    reward_policy: float
    reward_edited: float
    kl_per_token: float


@dataclass(frozen=True)
class RewardAttributionResult(Artifact):
    """``analysis/reward_attribution.json``: where the policy's reward gain lives."""

    seeds: tuple[int, ...]
    n_prompts: int
    gain: tuple[GainEstimate, ...]  # per seed
    patching: tuple[SiteFractions, ...]  # activation patching
    weight_swap: tuple[SiteFractions, ...]
    curves: tuple[Curve, ...]
    dictionaries: tuple[DictionaryInfo, ...]
    top_latents: tuple[LatentShare, ...]
    writer: tuple[WriterProbeSummary, ...]  # per seed; empty when the writer probe read no SAE
    divergence_ranking: tuple[int, ...]  # layers by parameter divergence, most first
    dictionary_seed: int  # model diffing's training seed of the crosscoder and difference dictionaries
    seconds: float
    config: dict[str, Any] = field(default_factory=dict)
    organism: str = "sentiment"  # the objective G is measured by (rlhf.zoo), as the policy's reward names it
    answer: Answer | None = None  # what that objective planted
    target: str = "utility"  # what G measures: "utility" or "log_ratio" (analysis.reward_gain)
    interventions: tuple[SampledIntervention, ...] = ()  # per sampling seed

    DIR, FILE = "analysis", "reward_attribution.json"
    FIGURES = {"patching": "reward_attribution_patching.png", "curves": "reward_attribution_curves.png"}
