"""How each analysis stage runs: divergence, the activation cache, dictionaries and their quality,
MMCS, feature diffs, model diffing, autointerp. Imports nothing heavy: study configs are checked before torch loads."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from analysis.dictionary_kinds import DictionaryKindName
from analysis.diffing.registry import METHODS, dictionaries, method_settings
from rlhf.configtypes import (
    DType,
    HookName,
    Layers,
    NonEmpty,
    NonNegativeFloat,
    NonNegativeInt,
    OneOf,
    PositiveFloat,
    PositiveInt,
    ProbabilityFloat,
    Sections,
)

# A dictionary reward attribution reads: the SAE pair, or one that model diffing registers (analysis.diffing.registry).
DictionaryName = Annotated[str, OneOf(lambda: ("sae_policy", "sae_base", "transcoder_policy", "transcoder_base",
                                               *dictionaries()))]


@dataclass(frozen=True)
class DivergenceConfig:
    top_n: PositiveInt = 5  # layers the later stages analyse (the paper: 5), capped by the model's depth
    layers: Layers = ()  # analyse these layers instead of the top_n most diverged
    model: str = "policy"  # the fine-tuned model (a directory under the run's models)


@dataclass(frozen=True)
class ActivationCacheConfig:
    hook: HookName = "blocks.{layer}.hook_mlp_out"  # any TransformerLens hook; {layer} = each chosen layer
    # More hook kinds cached at the same layers in the same forward passes, each with its own dictionaries
    # (e.g. "blocks.{layer}.hook_resid_post", where the demo's reward gain lives). Reward attribution, model
    # diffing, MMCS, the SAE quality bars and circuits read every kind; feature diffs, autointerp and the
    # probes read ``hook``.
    extra_hooks: tuple[HookName, ...] = ()
    # Also cache each MLP's input (blocks.{layer}.ln2.hook_normalized) where its output (hook_mlp_out) is
    # cached: what dictionaries.transcoders reads. Nothing else reads it.
    transcoder_inputs: bool = False
    models: tuple[str, ...] = ("base", "policy")
    train_texts: PositiveInt = 12_000  # corpus texts cached for training dictionaries
    held_out_texts: PositiveInt = 1_000  # validation texts for dictionary metrics
    batch_size: PositiveInt = 128  # texts per forward pass
    shard_texts: PositiveInt = 2_048  # texts per shard: memory is bounded by two (one computed, one being written)
    dtype: DType = "float32"  # how activations are stored: "bfloat16" or "float16" halve the disk
    model_dtype: DType = "float32"  # the models while caching: "bfloat16" / "float16" for large models on a GPU


@dataclass(frozen=True)
class DictionaryConfig:
    architecture: DictionaryKindName = "standard"  # a kind of analysis.dictionary_kinds; "standard": L1, the paper's
    widths: Annotated[tuple[PositiveFloat, ...], NonEmpty()] = (1.0, 2.0)  # multiples of d_model
    # Widths at the hook kinds of activations.extra_hooks; empty: ``widths``. Their readers (reward attribution
    # and circuits, at one size) need one; MMCS reads only hooks with a small and a big width.
    extra_widths: tuple[PositiveFloat, ...] = ()
    # Sparsity settings: each kind reads the ones its DictionaryKind.reads lists (standard: l1_coefficient;
    # topk, batchtopk: k).
    l1_coefficient: NonNegativeFloat = 5.0
    k: PositiveInt = 16
    training_tokens: PositiveInt = 1_000_000
    batch_size: PositiveInt = 4096
    learning_rate: PositiveFloat = 1e-3
    seed: NonNegativeInt = 0
    # Also train an MLP transcoder (ln2.hook_normalized -> hook_mlp_out, ReLU with the L1 penalty above) per
    # model, layer and width where activations.transcoder_inputs cached the MLP's input.
    transcoders: bool = False


@dataclass(frozen=True)
class QualityConfig:
    held_out_texts: PositiveInt = 500  # validation texts for the LM-loss splice
    min_explained_variance: float = 0.8
    min_loss_recovered: float = 0.8
    # nats/token: an SAE whose splice costs no more passes the LM-loss bar whatever its ratio. The ratio
    # is ill-conditioned where zeroing the hook costs little: at the demo policy's last MLP zeroing costs
    # 0.008 nats, so a splice costing 0.0035 "recovers" 0.55, while at its first MLP (zeroing: 3.07) a
    # splice costing 0.018, five times more, recovers 0.99 and passes.
    max_splice_cost: NonNegativeFloat = 0.01
    max_dead_fraction: ProbabilityFloat = 0.2


@dataclass(frozen=True)
class MMCSConfig:
    top_k: PositiveInt = 20  # shared features listed per model and layer (the paper's Dg)
    random_draws: PositiveInt = 10  # random-direction dictionaries for the null's confidence interval
    seed_null: bool = True  # also train the small SAE with another seed: the reproducibility reference


@dataclass(frozen=True)
class FeatureDiffConfig:
    size: str = "1x"  # which dictionary width to compare (a size the dictionaries stage trained)
    match_threshold: ProbabilityFloat = 0.7  # policy features whose best base cosine is lower count as new
    top_n: PositiveInt = 10
    cards_per_ranking: NonNegativeInt = 3  # features per ranking that get a full card (examples, histogram)
    examples_per_card: NonNegativeInt = 3  # top-activating held-out texts shown on a card
    context: PositiveInt = 24  # tokens shown before the strongest activation of an example
    histogram_bins: PositiveInt = 20


@dataclass(frozen=True)
class CrosscoderConfig:
    # Defaults measured on the demo (d 128, activations spanning ~10 dimensions): 128 latents keep
    # <= 10% dead; 512 leave 40-60% with nothing to explain. See bench/crosscoder.py.
    expansion: PositiveFloat = 1.0  # latents per activation dimension
    k: PositiveInt = 16  # mean active latents per token (BatchTopK over the batch)
    learning_rate: PositiveFloat = 2.26e-3  # the BatchTopK recipe's 2e-4 / sqrt(latents / 2^14) at 128 latents
    training_tokens: PositiveInt = 500_000
    batch_size: PositiveInt = 1024
    aux_coefficient: NonNegativeFloat = 1.0  # AuxK loss that revives dead latents
    dead_after_tokens: PositiveInt = 5_000  # a latent silent this long counts as dead for the AuxK loss
    aux_k: PositiveInt = 1  # dead latents per token in the AuxK reconstruction: one must explain the whole
    # residual, and so grow a contribution large enough to win a BatchTopK slot back
    seed: int = 0
    init_norm: PositiveFloat = 0.1  # decoder rows' starting norm (the encoder starts as their transpose)
    warmup_fraction: ProbabilityFloat = 0.05  # of the steps, linear learning-rate warm-up
    decay_fraction: ProbabilityFloat = 0.2  # of the steps, final linear decay to 0
    init_from_data: bool = True  # decoders start at training tokens' directions instead of random ones


@dataclass(frozen=True)
class ModelDiffingConfig:
    enabled: bool = True
    crosscoder: CrosscoderConfig = field(default_factory=lambda: CrosscoderConfig(training_tokens=500_000))
    layers: Layers = ()  # cached layers to diff; empty: all of them
    seeds: Annotated[tuple[int, ...], NonEmpty()] = (0, 1, 2)  # training seeds of the crosscoder, the difference dictionaries, stage-wise SAEs
    top_k: PositiveInt = 10  # latents per method and layer
    relative_norm_threshold: ProbabilityFloat = 0.7  # crosscoder latents above it lean to the policy
    max_nu: NonNegativeFloat = 0.5  # latent scaling: a leaning latent whose ratios stay below this is policy-specific
    corr_threshold: ProbabilityFloat = 0.2  # |correlation with token valence| that counts as tracking the reward
    high_utility: float = 2.0  # tokens with at least this VADER valence are the high-utility vocabulary (the sentiment organism; another organism is scored against its answer)
    logit_tokens: PositiveInt = 10  # top logit tokens per latent
    # Held-out prompts, completed under each ablation and steering edit, and by the policy for the
    # splice's G. One sampling seed: sampling is most of the stage's time, and the spreads that the
    # leaderboard compares are over dictionary seeds.
    n_prompts: PositiveInt = 128
    max_new_tokens: PositiveInt = 19
    sampling_seeds: Annotated[tuple[int, ...], NonEmpty()] = (0,)
    cards: NonNegativeInt = 4  # crosscoder latents per layer with a feature card
    context: PositiveInt = 24
    # Causal score: the share of G recovered (removed) when the policy-minus-base difference projected
    # on a method's top k directions is added to the base (taken out of the policy), per k.
    splice_ks: Annotated[tuple[PositiveInt, ...], NonEmpty()] = (10, 30)
    # Each method's own settings, [model_diffing.methods.<name>] (analysis.diffing.settings); a method left
    # out keeps its defaults.
    methods: Annotated[dict[str, Any], Sections(method_settings)] = field(default_factory=dict)

    def method(self, name: str) -> Any:
        """The settings of the registered method ``name``: the config's, else its defaults."""
        return self.methods[name] if name in self.methods else METHODS[name].config()

@dataclass(frozen=True)
class AutointerpConfig:
    base_url: str = ""  # an OpenAI-compatible endpoint, e.g. https://api.openai.com/v1; empty: the stage is skipped
    model: str = "gpt-4o-mini"
    api_key_env: str = "OPENAI_API_KEY"  # the key is read from this environment variable, never from a file
    top_k: PositiveInt = 5  # MMCS-shared features per model and hook
    size: str = "1x"
    n_explain: PositiveInt = 8  # top-activating texts shown to the explainer
    n_random: NonNegativeInt = 3  # random texts shown to the explainer
    n_score: NonNegativeInt = 4  # held-out top-activating texts to simulate and detect (plus as many random ones)
    context: PositiveInt = 12  # tokens before the strongest activation in a window
    max_concurrency: PositiveInt = 4
    max_retries: NonNegativeInt = 4
    backoff_seconds: NonNegativeFloat = 1.0  # doubles on every retry
    timeout_seconds: PositiveFloat = 60.0
    # USD per million (input, output) tokens, for the cost estimate.
    prices: dict[str, list[float]] = field(default_factory=lambda: {"gpt-4o-mini": [0.15, 0.60], "gpt-4o": [2.5, 10.0]})


@dataclass(frozen=True)
class RewardAttributionConfig:
    enabled: bool = True
    n_prompts: PositiveInt = 64  # held-out prompts; the policy's completions of them are teacher-forced
    max_new_tokens: PositiveInt = 19
    seeds: Annotated[tuple[NonNegativeInt, ...], NonEmpty()] = (0, 1, 2)  # sampling seeds of the completions: every fraction's spread
    layers: Layers = ()  # cached layers whose dictionaries are attributed; empty: all
    # Dictionaries to attribute: the SAE pair (sae_policy, sae_base, at `size`), the MLP transcoders where the
    # dictionaries stage trained them (transcoder_policy, transcoder_base, at hook_mlp_out), and model diffing's
    # crosscoder, SAE on differences and difference dictionary (its first training seed).
    dictionaries: tuple[DictionaryName, ...] = (
        "sae_policy", "sae_base", "transcoder_policy", "crosscoder", "difference_sae", "difference_dictionary")
    size: str = "1x"  # the SAE width (a size the dictionaries stage trained)
    ks: Annotated[tuple[PositiveInt, ...], NonEmpty()] = (1, 3, 10, 30, 100)  # latents spliced; each must fit every dictionary
    # Sets of k random live latents beside each ranking, per sampling seed (each seed draws its own):
    # random splices were most of the stage's time, and the random curve's spread is over seeds.
    random_sets: PositiveInt = 1
    writer_features: Literal["sae", "activations"] = "sae"  # what the writer probe reads
    scale: PositiveFloat = 5.0  # the utility reward's scale: u(t) = valence / scale
    # What G measures: "utility", the exact expected utility of the objective the policy was trained on (the
    # lexicon's, an organism's); "log_ratio", log p_policy(y|x) - log p_base(y|x) over the policy's own
    # completions, for a pair with any reward or none; "auto": utility where the policy's reward has one.
    target: Literal["auto", "utility", "log_ratio"] = "auto"
    intervention_k: PositiveInt = 30  # the sampled reward under the best ranking's top k latents taken out


@dataclass(frozen=True)
class CircuitsConfig:
    enabled: bool = True
    # Whose dictionaries at every layer's blocks.{layer}.hook_resid_post are the nodes: cache that kind
    # (activations.hook or activations.extra_hooks) at every layer.
    dictionary: Literal["sae_policy", "sae_base"] = "sae_policy"
    size: str = "1x"  # the SAE width (a size the dictionaries stage trained)
    # Training seeds of the dictionaries: the dictionaries stage's own seed reads its SAEs, any other is trained
    # here with the settings it recorded. Every figure's spread is over these.
    dictionary_seeds: Annotated[tuple[NonNegativeInt, ...], NonEmpty()] = (0, 1, 2)
    budgets: Annotated[tuple[PositiveInt, ...], NonEmpty()] = (10, 30, 100, 300)  # nodes in a circuit
    n_prompts: PositiveInt = 64  # held-out prompts; the policy's completions of them are teacher-forced
    max_new_tokens: PositiveInt = 19
    sampling_seed: NonNegativeInt = 0
    ig_steps: PositiveInt = 8  # integrated gradients: interpolation points per site
    checked_nodes: PositiveInt = 10  # top nodes of each estimate whose estimate is checked by real patching
    graph_budget: PositiveInt = 30  # the circuit drawn in the report, with its edges
    top_tokens: PositiveInt = 3  # tokens shown beside each drawn node
    scale: PositiveFloat = 5.0  # the utility reward's scale: u(t) = valence / scale
    target: Literal["auto", "utility", "log_ratio"] = "auto"  # what G measures, as reward_attribution.target
