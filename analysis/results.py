"""The typed results of the analysis stages (divergence, activation caches, dictionaries,
their quality, MMCS, feature diffs, model diffing, autointerp): what later stages and
the report read.

Light on purpose (no torch import): the report and the command lines load these.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlhf.artifact import Artifact
from rlhf.rundir import INDEX, RunDir

# -- divergence (analysis/divergence.json) ---------------------------------------------------


@dataclass(frozen=True)
class DivergenceRow:
    """Summed ||policy - base||_F of a group of tensors, the base tensors' summed norm, and their ratio."""

    divergence: float
    base_norm: float
    normalised: float


@dataclass(frozen=True)
class DivergenceResult(Artifact):
    """``analysis/divergence.json``: parameter divergence by layer and component, and the layers chosen."""

    model: str  # the fine-tuned model compared with the base
    layers: dict[int, dict[str, DivergenceRow]]  # layer -> component (attention, mlp, layer_norm, other) -> row
    total: dict[int, float]  # layer -> summed divergence
    normalised: dict[int, float]  # layer -> divergence / base norm
    outside: dict[str, DivergenceRow]  # tensors outside the layers (embeddings, final norm, unembedding)
    ranking: tuple[int, ...]  # layers, most divergent first
    top_n: int
    chosen_layers: tuple[int, ...]  # the top_n of the ranking, sorted: the layers the later stages analyse
    seconds: float

    DIR, FILE, FIGURES = "analysis", "divergence.json", {"bars": "divergence.png"}

    @property
    def components(self) -> tuple[str, ...]:
        return tuple(sorted({c for comps in self.layers.values() for c in comps}))


# -- activation caches (activations/index.json, activations/<model>/<hook>/<split>/index.json) --


@dataclass(frozen=True)
class CachedHook:
    """One cached (model, hook, split): its shards, token and text counts. Not an Artifact: it lives
    in the cache directory itself (``run.activations(model, hook, split)``)."""

    hook: str
    shards: tuple[str, ...]  # file names inside the directory
    n_tokens: int
    n_texts: int
    d: int  # width of the activations (d_model)
    dtype: str  # storage dtype

    FILE = INDEX  # in each cached hook's directory

    @classmethod
    def read(cls, directory: Path) -> CachedHook:
        from rlhf.artifact import from_json
        from rlhf.errors import UserError
        from rlhf.rundir import read_json

        path = Path(directory) / cls.FILE
        if not path.exists():
            raise UserError(f"{path} does not exist: run the activations stage first")
        return from_json(cls, read_json(path), where=str(path))

    def write(self, directory: Path) -> Path:
        from rlhf.artifact import to_json
        from rlhf.rundir import atomic_write_json

        return atomic_write_json(Path(directory) / self.FILE, to_json(self))


@dataclass(frozen=True)
class ActivationIndex(Artifact):
    """``activations/index.json``: which hooks of which models are cached, and how many tokens."""

    hooks: tuple[str, ...]  # one per chosen layer, in the order of ``layers``
    layers: tuple[int, ...]
    models: dict[str, dict[str, dict[str, int]]]  # model -> split ("train", "val") -> hook -> cached tokens
    dtype: str = "float32"  # storage dtype of the shards
    d_model: int = 0  # width of the cached activations
    texts: dict[str, int] = field(default_factory=dict)  # split -> texts cached

    @classmethod
    def path(cls, run: RunDir) -> Path:
        return run.activations_index

    @property
    def model_names(self) -> tuple[str, ...]:
        return tuple(self.models)

    @property
    def by_layer(self) -> dict[int, str]:
        """Layer -> its cached hook."""
        return dict(zip(self.layers, self.hooks, strict=True))

    def hooks_at(self, layers: tuple[int, ...] | list[int] | None) -> tuple[str, ...]:
        """The cached hooks of ``layers`` (all when None or empty); a layer not cached is a UserError."""
        if not layers:
            return self.hooks
        missing = [layer for layer in layers if layer not in self.by_layer]
        if missing:
            from rlhf.errors import UserError

            raise UserError(f"layer(s) {missing} are not cached; cached layers: {sorted(self.by_layer)}")
        return tuple(self.by_layer[layer] for layer in layers)

    def tokens(self, model: str, split: str, hook: str | None = None) -> int:
        """Cached tokens of ``model``'s ``split`` at ``hook`` (the first hook by default; every hook
        of a model holds the same token stream)."""
        per_hook = self.models[model][split]
        return per_hook[hook] if hook is not None else next(iter(per_hook.values()))


# -- dictionaries (saes/index.json) ------------------------------------------------------------


def size_name(width: float) -> str:
    """A dictionary's size as it names its directory: width 2.0 -> "2x"."""
    return f"{width:g}x"


@dataclass(frozen=True)
class SAETraining:
    """The dictionaries stage's training settings, recorded so that a later stage (MMCS's
    other-seed SAE) trains one more dictionary exactly like these. Same fields as
    ``analysis.dictionaries.DictionaryConfig``."""

    architecture: str
    widths: tuple[float, ...]
    l1_coefficient: float
    k: int
    training_tokens: int
    batch_size: int
    learning_rate: float
    seed: int


@dataclass(frozen=True)
class SAEEntry:
    model: str
    hook: str
    size: str  # size_name(width): the directory name under run.sae(...)
    path: str  # the SAE's directory, relative to the run directory (use run.sae(model, hook, size))
    width: float = 0.0  # multiple of d_model
    d_in: int = 0
    d_sae: int = 0


@dataclass(frozen=True)
class SAEIndex(Artifact):
    """``saes/index.json``: every trained dictionary and the settings they were trained with."""

    architecture: str
    config: SAETraining
    saes: tuple[SAEEntry, ...]

    @classmethod
    def path(cls, run: RunDir) -> Path:
        return run.saes_index

    @property
    def models(self) -> tuple[str, ...]:
        return tuple(sorted({e.model for e in self.saes}))

    @property
    def hooks(self) -> tuple[str, ...]:
        return tuple(sorted({e.hook for e in self.saes}))

    @property
    def sizes(self) -> tuple[str, ...]:
        return tuple(size_name(w) for w in sorted(self.config.widths))

    @property
    def small(self) -> str:
        return size_name(min(self.config.widths))

    @property
    def big(self) -> str:
        return size_name(max(self.config.widths))

    def entries(self, model: str | None = None, hook: str | None = None, size: str | None = None) -> tuple[SAEEntry, ...]:
        """The entries matching every given field."""
        return tuple(e for e in self.saes if (model is None or e.model == model) and (hook is None or e.hook == hook)
                     and (size is None or e.size == size))

    def find(self, model: str, hook: str, size: str) -> SAEEntry:
        """The one entry of (model, hook, size); a UserError naming what exists when there is none."""
        found = self.entries(model, hook, size)
        if not found:
            from rlhf.errors import UserError

            raise UserError(f"no {size} SAE for model {model!r} at {hook}; trained: models {', '.join(self.models)}, "
                            f"hooks {', '.join(self.hooks)}, sizes {', '.join(self.sizes)}")
        return found[0]


# -- SAE quality (analysis/sae_metrics.json) -----------------------------------------------------


@dataclass(frozen=True)
class SAEMetrics:
    """One dictionary's held-out metrics."""

    model: str
    hook: str
    size: str
    path: str
    d_sae: int
    explained_variance: float
    mse: float
    l0: float
    dead_fraction: float
    tokens: int
    clean_loss: float
    spliced_loss: float
    zero_ablated_loss: float
    lm_loss_recovered: float
    passes: bool

    @property
    def splice_cost(self) -> float:
        """What splicing the reconstruction in costs, in nats/token of held-out LM loss."""
        return self.spliced_loss - self.clean_loss


@dataclass(frozen=True)
class QualityBars:
    explained_variance: float  # at least
    lm_loss_recovered: float  # at least
    dead_fraction: float  # at most
    splice_cost: float = 0.0  # nats/token: a splice costing no more passes the LM-loss bar whatever its ratio


@dataclass(frozen=True)
class SAEQualityResult(Artifact):
    """``analysis/sae_metrics.json``: every SAE's reconstruction and LM-loss metrics against the bars."""

    saes: tuple[SAEMetrics, ...]
    bars: QualityBars
    all_pass: bool
    seconds: float

    DIR, FILE, FIGURES = "analysis", "sae_metrics.json", {"metrics": "sae_metrics.png"}

    def find(self, model: str, hook: str, size: str) -> SAEMetrics:
        for row in self.saes:
            if (row.model, row.hook, row.size) == (model, hook, size):
                return row
        raise KeyError((model, hook, size))


# -- MMCS (analysis/mmcs.json) -----------------------------------------------------------------


@dataclass(frozen=True)
class Interval:
    """A mean and its 95% normal-approximation confidence interval over ``n`` draws."""

    mean: float
    low: float
    high: float
    n: int


@dataclass(frozen=True)
class SharedFeature:
    feature: int  # row of the small dictionary
    mcs: float  # its largest cosine with a row of the big one
    big_match: int  # that row


@dataclass(frozen=True)
class MMCSWithin:
    """Small-into-big MMCS of one model's dictionaries at one hook."""

    model: str
    hook: str
    small: str
    big: str
    mmcs: float
    mmcs_hungarian: float
    random_null: Interval
    shared: tuple[SharedFeature, ...]  # the top-k features by MCS
    other_seed_mmcs: float | None = None  # small into an other-seed small SAE (None when not trained)


@dataclass(frozen=True)
class MMCSAcross:
    """Base-vs-policy MMCS of the same-size dictionaries at one hook."""

    hook: str
    size: str
    policy_into_base: float
    base_into_policy: float


@dataclass(frozen=True)
class MMCSResult(Artifact):
    """``analysis/mmcs.json``."""

    within: tuple[MMCSWithin, ...]
    base_vs_policy: tuple[MMCSAcross, ...]

    DIR, FILE = "analysis", "mmcs.json"


# -- feature diffs (helper "diffing") --------------------------------------------------------------------------


@dataclass(frozen=True)
class CardExample:
    """One held-out text on a card: its tokens and a value per token for each model."""

    tokens: tuple[str, ...]
    policy: tuple[float, ...]
    base: tuple[float, ...]


@dataclass(frozen=True)
class FeatureHistogram:
    """Counts of a feature's non-zero held-out activations on shared bins, for the policy feature and its base match."""

    edges: tuple[float, ...]
    policy: tuple[int, ...]
    base_match: tuple[int, ...]


@dataclass(frozen=True)
class FeatureRow:
    """A policy feature, its closest base feature by decoder cosine, and how each tracks the known reward."""

    feature: int
    base_match: int
    mcs: float
    freq_policy: float
    freq_base_match: float
    mean_policy: float
    mean_base_match: float
    utility_corr: float  # correlation of its activation with the current token's valence
    utility_corr_base_match: float
    logit_alignment: float  # correlation of its direct logit effect with each vocabulary token's valence
    top_logit_tokens: tuple[str, ...]
    bottom_logit_tokens: tuple[str, ...]


@dataclass(frozen=True)
class FeatureCard(FeatureRow):
    """A feature card's data: the row, plus its top held-out texts and activation histograms."""

    examples: tuple[CardExample, ...] = ()
    histogram: FeatureHistogram = FeatureHistogram((), (), ())


@dataclass(frozen=True)
class RewardTracking:
    """Mean (and max) |correlation with token valence|: the diff features against their base matches and all features."""

    diff_features_mean_abs_corr: float
    their_base_matches_mean_abs_corr: float
    all_policy_mean_abs_corr: float
    all_base_mean_abs_corr: float
    policy_max_abs_corr: float
    base_max_abs_corr: float


@dataclass(frozen=True)
class HookFeatureDiff:
    hook: str
    size: str
    n_features: int
    n_new: int  # policy features that fire on held-out text without a base match above the threshold
    new: tuple[FeatureRow, ...]
    changed: tuple[FeatureRow, ...]
    writes_utility: tuple[FeatureRow, ...]
    cards: dict[int, FeatureCard]
    max_abs_utility_corr: float
    reward_tracking: RewardTracking
    set_aside: int = 0  # policy features that never fire on held-out text: not ranked, counted or carded

    def rankings(self) -> dict[str, tuple[FeatureRow, ...]]:
        return {"new": self.new, "changed": self.changed, "writes_utility": self.writes_utility}


@dataclass(frozen=True)
class FeatureDiffResult(Artifact):
    """``analysis/feature_diff.json``: per hook, the policy features ranked three ways, with card data."""

    match_threshold: float
    hooks: tuple[HookFeatureDiff, ...]
    seconds: float
    config: dict[str, Any] = field(default_factory=dict)  # the stage's settings, as a record

    DIR, FILE = "analysis", "feature_diff.json"


# -- model diffing (helper "diffing") --------------------------------------------------------------------------


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


@dataclass(frozen=True)
class SpliceEffect:
    """The policy-minus-base difference projected on k directions at a hook: the share of G it recovers
    added to the base, and removes taken out of the policy (means over the sampling seeds)."""

    recovered: float
    removed: float
    directions: int = 0  # how many were spliced: k, or all a method names where it names fewer


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
    lens: ActivationDifferenceLens | None = None  # the activation-difference lens's reading and steering
    stagewise: tuple[StagewiseSAE, ...] = ()  # stage-wise SAE fine-tuning, per dictionary seed


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
    kl: KLTokens
    layers: tuple[LayerDiffing, ...]
    summary: dict[str, dict[str, SeedStat]]  # method -> score name -> stat
    seconds: float
    config: dict[str, Any] = field(default_factory=dict)
    unchanged_hooks: tuple[str, ...] = ()  # cached hooks where the policy's activations equal the base's: not diffed
    gain: tuple[float, ...] = ()  # the exact reward gain G per sampling seed, which the splice shares divide
    amplification: tuple[LogitAmplification, ...] = ()  # logit-diff amplification, per dictionary seed (as sampling seed)

    # relative_norms: one hook's crosscoder relative decoder norms (live latents, every seed)
    DIR, FILE = "analysis", "model_diffing.json"
    FIGURES = {"scores": "model_diffing.png", "relative_norms": "model_diffing_relative_norms_{hook}.png",
               "steering": "model_diffing_steering.png", "amplification": "model_diffing_amplification.png"}


# -- autointerp (helper "diffing") -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    requests: int = 0
    cached: int = 0  # requests answered from the on-disk cache


@dataclass(frozen=True)
class StepFailure:
    step: str
    error: str


@dataclass(frozen=True)
class FeatureInterpretation:
    """One feature's explanation and scores; a step that failed is in ``failures`` and its score is None."""

    model: str
    hook: str
    feature: int
    reason: str  # "shared top-k" or "diff"
    failures: tuple[StepFailure, ...] = ()
    usage: Usage = Usage()
    explanation: str | None = None
    explanation_utility: float | None = None
    simulation_score: float | None = None
    detection_score: float | None = None
    related_to_objective: bool | None = None
    cost_usd: float | None = None


@dataclass(frozen=True)
class ObjectiveComparison:
    features: int
    mean_explanation_utility: float
    share_related_to_objective: float


@dataclass(frozen=True)
class AutointerpResult(Artifact):
    """``autointerp/results.json``: explanations and scores of the chosen features, tokens and cost."""

    model: str
    base_url: str
    prompt_version: str
    features: tuple[FeatureInterpretation, ...]
    usage: Usage
    cost_usd: float | None
    requests_sent_this_run: int
    failed_features: int
    comparison: dict[str, ObjectiveComparison]
    mean_simulation_score: float
    mean_detection_score: float
    seconds: float
    config: dict[str, Any] = field(default_factory=dict)

    FILE = "results.json"

    @classmethod
    def directory(cls, run: RunDir) -> Path:
        return run.stage_dir("autointerp")

    @classmethod
    def feature_path(cls, run: RunDir, model: str, hook: str, feature: int) -> Path:
        """One finished feature's result, kept so that a killed run does not redo it."""
        return cls.directory(run) / "features" / model / hook / f"{feature}.json"

    @classmethod
    def cache_dir(cls, run: RunDir) -> Path:
        """The request cache: one file per answered prompt."""
        return cls.directory(run) / "cache"

    def explained(self) -> dict[tuple[str, int], FeatureInterpretation]:
        """The policy features with an explanation, by (hook, feature)."""
        return {(f.hook, f.feature): f for f in self.features if f.model == "policy" and f.explanation}


# -- where the reward lives (analysis/reward_attribution.json) -------------------------------------


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

    DIR, FILE = "analysis", "reward_attribution.json"
    FIGURES = {"patching": "reward_attribution_patching.png", "curves": "reward_attribution_curves.png"}


# -- model-diffing methods of analysis/diffing: activation-difference lens, stage-wise SAE, logit amplification --


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
