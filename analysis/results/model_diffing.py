"""Model diffing against the known reward (``analysis/model_diffing.json``), with the record types of the diffing
methods that keep their own numbers (the activation-difference lens, stage-wise SAEs, the per-token KL, logit
amplification), which the registry names."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from analysis.results.feature_diff import CardExample
from rlhf.artifact import Artifact, ByName


@dataclass(frozen=True)
class MethodScore:
    """One method's latents at one hook for one dictionary seed, scored against the known reward."""

    seed: int
    latents: tuple[int, ...]
    n: int
    share_tracking_reward: float | None  # None for the KL method (it names tokens, not latents)
    mean_abs_corr: float | None
    precision: float
    recall: float
    reward_change: float | None = None  # when the latents' directions are projected out; None without latents
    kl_per_token: float | None = None
    set_aside: int = 0  # latents of its dictionary that never fire on held-out text: never ranked
    splice: dict[int, SpliceEffect] = field(default_factory=dict)  # k -> its top k directions' share of G
    # At a planted edit's hook (the edit organism): the largest |cosine| of its top directions with the edit's.
    planted_cosine: float | None = None
    # Where the organism's answer has key tokens (the trigger's word): the share of them among the tokens it names.
    key_hit: float | None = None
    named: tuple[str, ...] = ()  # the tokens it names (its directions' top logit tokens, in rank order), as precision reads them


@dataclass(frozen=True)
class SpliceEffect:
    """The policy-minus-base difference projected on k directions at a hook: the share of G it recovers
    added to the base, and removes taken out of the policy (means over the sampling seeds)."""

    recovered: float
    removed: float
    directions: int = 0  # how many were spliced: k, or all a method names where it names fewer


def splice_score(k: int, share: Literal["recovered", "removed"]) -> str:
    """The name a ``SpliceEffect`` share of k directions has among a method's scores (``recovered_top10``):
    the key of ``ModelDiffingResult.summary``, spelled here alone so that its producer and readers agree."""
    return f"{share}_top{k}"


@dataclass(frozen=True)
class AblationEffect:
    reward_change: float
    kl_per_token: float


@dataclass(frozen=True)
class CrosscoderMetrics:
    explained_variance: dict[str, float]  # per model ("base", "policy")
    l0: float
    dead_fraction: float
    n_latents: int
    policy_leaning: int
    policy_specific_after_scaling: int
    difference_dictionary_explained_variance: float
    difference_dictionary_dead_fraction: float


@dataclass(frozen=True)
class LatentStats:
    """Per crosscoder latent: relative decoder norm, decoder cosine, firing frequency, latent scaling (NaN: never fires)."""

    relative_norm: tuple[float, ...]
    cosine: tuple[float, ...]
    frequency: tuple[float, ...]
    nu_error: tuple[float, ...]
    nu_recon: tuple[float, ...]


@dataclass(frozen=True)
class LatentHistogram:
    edges: tuple[float, ...]
    counts: tuple[int, ...]


@dataclass(frozen=True)
class LatentCard:
    """A crosscoder latent's card data; the examples hold what it writes into each model."""

    latent: int
    relative_norm: float
    cosine: float
    nu_error: float
    nu_recon: float
    frequency: float
    top_logit_tokens: tuple[str, ...]
    bottom_logit_tokens: tuple[str, ...]
    histogram: LatentHistogram
    examples: tuple[CardExample, ...]


@dataclass(frozen=True)
class LayerDiffing:
    hook: str
    methods: dict[str, tuple[MethodScore, ...]]  # method name (analysis.diffing.METHODS) -> one row per seed
    random_directions: AblationEffect
    crosscoder: dict[int, CrosscoderMetrics]  # per training seed
    latents: LatentStats  # of the first seed's crosscoder
    cards: tuple[LatentCard, ...]
    cards_set_aside: int = 0  # that crosscoder's latents never firing on held-out text: never carded
    random_splice: dict[int, SpliceEffect] = field(default_factory=dict)  # k random directions, the splice's floor
    # The methods' own records at this hook (the lens's reading, stage-wise SAEs), by method, per dictionary seed
    records: Annotated[dict[str, tuple[Any, ...]], ByName("analysis.diffing.registry:record_type")] = field(
        default_factory=dict)


@dataclass(frozen=True)
class KLTokens:
    positions: int
    mean_kl: float
    top_positions_mean_kl: float
    tokens: tuple[str, ...]


@dataclass(frozen=True)
class SeedStat:
    """A score averaged over layers: mean and spread over the dictionary seeds."""

    mean: float
    std: float
    seeds: int


@dataclass(frozen=True)
class ModelDiffingResult(Artifact):
    """``analysis/model_diffing.json``: every diffing method scored against the known reward, per layer and overall."""

    top_k: int
    logit_tokens: int
    seeds: tuple[int, ...]
    corr_threshold: float
    high_utility: float
    relative_norm_threshold: float
    unedited_reward: float
    high_utility_vocabulary: int
    layers: tuple[LayerDiffing, ...]
    summary: dict[str, dict[str, SeedStat]]  # method -> score name -> stat
    seconds: float
    config: dict[str, Any] = field(default_factory=dict)
    unchanged_hooks: tuple[str, ...] = ()  # cached hooks where the policy's activations equal the base's: not diffed
    gain: tuple[float, ...] = ()  # the exact reward gain G per sampling seed, which the splice shares divide
    # What the methods' once-per-run steps found (the per-token KL's numbers, logit amplification), by method
    per_run: Annotated[dict[str, Any], ByName("analysis.diffing.registry:per_run_type")] = field(default_factory=dict)

    # relative_norms: one hook's crosscoder relative decoder norms (live latents, every seed)
    DIR, FILE = "analysis", "model_diffing.json"
    FIGURES = {"scores": "model_diffing.png", "relative_norms": "model_diffing_relative_norms_{hook}.png",
               "steering": "model_diffing_steering.png", "amplification": "model_diffing_amplification.png"}




@dataclass(frozen=True)
class LensPosition:
    """The mean policy-minus-base activation at one text position, read through the policy's logit lens."""

    position: int  # 0 = the first text token (after BOS, when the tokenizer adds one)
    norm: float  # ||mean difference||
    relative_norm: float  # over the mean ||base activation|| at that position
    cosine_to_mean: float  # with the difference averaged over the positions (the steering direction)
    promoted: tuple[str, ...]  # the logit lens's top tokens, most promoted first
    high_utility_share: float  # share of them in the high-utility vocabulary


@dataclass(frozen=True)
class SteeringPoint:
    """The base sampled with alpha * (typical activation norm) * (unit difference direction) added at the hook."""

    alpha: float
    reward: tuple[float, ...]  # the base's mean utility, per sampling seed
    reward_change: float  # mean over seeds, against alpha = 0
    share_of_gain: float | None  # reward_change / G; None without G
    kl_per_token: float  # steered base against the unsteered base, on the steered samples
    example: str


@dataclass(frozen=True)
class ActivationDifferenceLens:
    """Minder et al. 2025's activation-difference lens at one hook, and steering the base with it."""

    hook: str
    texts: int  # unrelated texts averaged over
    activation_norm: float  # mean ||base activation|| over the lens positions: the steering scale
    positions: tuple[LensPosition, ...]
    promoted: tuple[str, ...]  # the logit lens of the direction averaged over positions
    high_utility_share: float
    steering: tuple[SteeringPoint, ...]
    gain: float | None  # G the steering shares are taken of
    gain_source: str  # "given" (e.g. the exact G of analysis.reward_gain) or "sampled" (policy - base, same prompts and seeds)


@dataclass(frozen=True)
class MovedLatent:
    """A latent of the base's SAE after fine-tuning it on the policy's activations."""

    latent: int
    movement: float  # 1 - min(encoder cosine, decoder cosine): the ranking score
    encoder_cosine: float  # fine-tuned vs base encoder vector
    decoder_cosine: float
    decoder_norm_change: float  # (||d_after|| - ||d_before||) / ||d_before||
    frequency: float  # firing frequency on the policy's held-out tokens, fine-tuned SAE


@dataclass(frozen=True)
class StagewiseSAE:
    """Bricken et al. 2024's stage-wise diffing at one hook: the base SAE fine-tuned on the policy's activations."""

    hook: str
    training_tokens: int
    seed: int
    latents: int
    live: int  # latents that fire on the policy's held-out tokens: the only ones ranked
    set_aside: int  # latents that never fire there (training artefacts, not differences)
    explained_variance_before: float  # the base SAE on the policy's held-out activations
    explained_variance_after: float  # the fine-tuned one
    top: tuple[MovedLatent, ...]  # live latents, most moved first


@dataclass(frozen=True)
class AmplifiedSamples:
    """Samples from softmax(logits_base + a (logits_policy - logits_base)) on held-out prompts."""

    a: float
    utility: tuple[float, ...]  # mean VADER utility of the completions, per seed
    mean_length: float  # completion tokens before end-of-text
    repeated_bigram_share: float
    high_utility_token_share: float  # share of the sampled tokens in the high-utility vocabulary
    rising_tokens: tuple[str, ...]  # tokens whose frequency rises most over the policy's own (a = 1) samples
    rising_token_ids: tuple[int, ...]
    precision: float  # share of the rising tokens in the high-utility vocabulary
    recall: float  # share of the high-utility vocabulary among the rising tokens
    example: str


@dataclass(frozen=True)
class LogitAmplification:
    """Logit-diff amplification: which tokens and behaviours exaggerating the fine-tune exposes."""

    prompts: int
    seeds: tuple[int, ...]
    max_new_tokens: int
    high_utility: float  # VADER valence at or above which a token is in the high-utility vocabulary
    high_utility_vocabulary: int
    samples: tuple[AmplifiedSamples, ...]  # by a, ascending; a = 1 (the policy) always among them


@dataclass(frozen=True)
class AmplificationRuns:
    """Logit-diff amplification once per dictionary seed (as its sampling seed)."""

    runs: tuple[LogitAmplification, ...]

    def by_a(self) -> list[tuple[float, list[AmplifiedSamples]]]:
        """Each a's samples, one per seed, by a ascending."""
        by: dict[float, list[AmplifiedSamples]] = {}
        for run in self.runs:
            for sample in run.samples:
                by.setdefault(sample.a, []).append(sample)
        return sorted(by.items())
