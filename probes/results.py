"""The typed results of the probe stages (valence probe, implicit-reward probes, ablation,
sequence-level probes): what the report and the command lines read.

Light on purpose (no torch import at module level).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from rlhf.artifact import Artifact

# -- rankings ---------------------------------------------------------------------------------

NAN = float("nan")


@dataclass(frozen=True)
class RankMetrics:
    """How well predictions rank the truth (``probes.metrics.rank_metrics``). A part with
    too few points to rank (fewer than 3 words of one polarity) holds NaN and its size."""

    kendall_tau: float
    spearman: float
    sign_accuracy: float = NAN
    pairwise_accuracy: float = NAN
    n: int = 0


@dataclass(frozen=True)
class FittedRankMetrics(RankMetrics):
    """The ranking of a fitted ridge probe, with the penalty cross-validation chose."""

    alpha: float = NAN


# -- the linear (implicit-reward) probe ----------------------------------------------------------

ProbeKind = Literal["probe", "untrained", "raw_activations", "embedding_only"]
FeatureKind = Literal["sae", "activations", "embedding"]


@dataclass(frozen=True)
class PerWord:
    """A probe's mean prediction per test word beside the word's VADER valence."""

    words: tuple[str, ...]
    valence: tuple[float, ...]
    prediction: tuple[float, ...]


@dataclass(frozen=True)
class ProbeMetrics:
    """One probe of one protocol, scored per word against VADER."""

    kind: ProbeKind
    features: FeatureKind  # what the probe reads
    all: RankMetrics
    positive: RankMetrics  # the positive words only
    negative: RankMetrics
    r2: float  # on the test variants' targets
    alpha: float | None = None  # the ridge penalty used (fitted probes)
    per_word: PerWord | None = None  # fitted probes
    draws: int | None = None  # untrained: random weight vectors averaged over
    kendall_tau_std: float | None = None  # untrained: spread of tau over the draws

    @property
    def label(self) -> str:
        """What a reader sees: "probe (sae)", "untrained (null)", "raw activations", "embedding only"."""
        return {"probe": f"probe ({self.features})", "untrained": "untrained (null)",
                "raw_activations": "raw activations", "embedding_only": "embedding only"}[self.kind]


@dataclass(frozen=True)
class ProtocolResult:
    """Every probe scored under one protocol: the fitted probe on the chosen features, the
    untrained null, the raw-activation probe (when the probe reads SAE codes) and the embedding."""

    probe: ProbeMetrics
    untrained: ProbeMetrics
    embedding_only: ProbeMetrics
    raw_activations: ProbeMetrics | None = None

    def rows(self) -> tuple[ProbeMetrics, ...]:
        """The probes in reading order."""
        extra = (self.raw_activations,) if self.raw_activations is not None else ()
        return (self.probe, self.untrained, *extra, self.embedding_only)


@dataclass(frozen=True)
class Protocols:
    paper: ProtocolResult  # the paper's 80/20 split of triples (test words may have been seen)
    held_out_words: ProtocolResult  # the probe never saw the test words

    def items(self) -> tuple[tuple[str, ProtocolResult], ...]:
        return (("paper", self.paper), ("held_out_words", self.held_out_words))


@dataclass(frozen=True)
class TopFeature:
    hook: str
    feature: int  # index in the hook's dictionary (or activation dimension)
    coefficient: float  # standardised units
    index: int  # index in the concatenated features


@dataclass(frozen=True)
class LinearRewardResult(Artifact):
    """``probes/linear_reward_<model>_<features>.json``: what ``fit_linear_reward`` returns."""

    model: str  # whose activations and SAEs
    features: Literal["sae", "activations"]
    target: Literal["paper", "utility"]
    size: str  # the SAE width
    alpha: float | None  # the configured ridge penalty (None: cross-validated)
    n_triples: int
    seed: int
    run_dir: str
    hooks: tuple[str, ...]
    n_features: int
    protocols: Protocols
    top_features: tuple[TopFeature, ...]  # the largest coefficients, best first (standardised units)
    scatter: PerWord  # held-out words: the fitted probe's predictions
    seconds: float = 0.0
    notes: tuple[str, ...] = ()

    DIR, FILE, KEY = "probes", "linear_reward_{model}_{features}.json", {"model": "policy", "features": "sae"}

    def table(self) -> str:
        """A plain-text table of the headline numbers, one row per protocol and probe."""
        lines = [f"{'protocol':<15} {'probe':<22} {'tau':>7} {'tau+':>7} {'tau-':>7} {'rho':>7} {'sign':>6} {'pair':>6} {'R2':>7}"]
        for protocol, probes in self.protocols.items():
            for m in probes.rows():
                a, p, n = m.all, m.positive, m.negative
                lines.append(f"{protocol:<15} {m.label:<22} {a.kendall_tau:7.3f} {p.kendall_tau:7.3f} {n.kendall_tau:7.3f} "
                             f"{a.spearman:7.3f} {a.sign_accuracy:6.3f} {a.pairwise_accuracy:6.3f} {m.r2:7.3f}")
        return "\n".join(lines)


@dataclass(frozen=True)
class WriterProbeResult(Artifact):
    """``probes/writer_probe_<model>_<features>.json``: a ridge probe from a model's features at each
    completion position to the expected utility of the next token, scored on held-out prompts."""

    model: str
    features: Literal["sae", "activations"]
    size: str
    hooks: tuple[str, ...]
    n_features: int
    n_prompts: int
    train_positions: int
    test_positions: int
    alpha: float  # the ridge penalty used
    kendall_tau: float  # held-out positions: prediction vs expected next-token utility
    r2: float
    untrained_tau: float  # mean over random-weight probes (no fitting)
    untrained_tau_std: float
    untrained_r2: float
    top_features: tuple[TopFeature, ...]  # largest positive coefficients: features that write utility
    seed: int
    seconds: float = 0.0

    DIR, FILE, KEY = "probes", "writer_probe_{model}_{features}.json", {"model": "policy", "features": "sae"}


# -- feature ablation ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RewardRun:
    """One sampling seed under one condition (``analysis.interventions.reward_under_hooks``)."""

    seed: int
    mean_reward: float
    kl_per_token: float  # to the unedited policy, per completion token
    example: str = ""  # the first completion


@dataclass(frozen=True)
class ConditionStats:
    """One condition over its runs: the reward, its change against nothing switched off (same seed), the KL."""

    mean_reward: float
    reward_change: float
    reward_change_std: float
    kl_per_token: float
    runs: tuple[RewardRun, ...]


@dataclass(frozen=True)
class AblationComparison:
    """The probe's top k features switched off against k random live ones."""

    k: int
    probe_top_k: ConditionStats
    random_k: ConditionStats
    probe_lowers_reward_more_than_random: bool


@dataclass(frozen=True)
class AblationResult:
    """The headline comparison (at ``AblationConfig.k``), with the features it switched off,
    the baselines, and the sweep over k (the headline k included), sorted by k."""

    k: int
    features: dict[str, tuple[int, ...]]  # hook -> the probe's top features switched off
    random_sets: tuple[dict[str, tuple[int, ...]], ...]  # each: hook -> random live features
    probe_top_k: ConditionStats
    random_k: ConditionStats
    probe_lowers_reward_more_than_random: bool
    none: ConditionStats  # nothing switched off
    whole_dictionary: dict[str, ConditionStats]  # hook -> every feature of its dictionary off (the ceiling)
    sweep: tuple[AblationComparison, ...]


# -- sequence-level probes ----------------------------------------------------------------------


@dataclass(frozen=True)
class RidgeByHook:
    """A ridge probe per hook from the completion's last token to its reward; the hook chosen
    on the training split. ``best`` and ``prediction`` are the chosen hook's."""

    best_hook: str
    best: RankMetrics
    per_hook: dict[str, RankMetrics]
    prediction: tuple[float, ...]  # on the test completions

    @property
    def kendall_tau(self) -> float:
        return self.best.kendall_tau

    @property
    def spearman(self) -> float:
        return self.best.spearman


@dataclass(frozen=True)
class LogisticResult:
    """Chosen vs rejected completion of each held-out pair, from activations averaged over the text."""

    accuracy: float
    auroc: float
    pairwise_accuracy: float
    n_train_pairs: int
    n_test_pairs: int


@dataclass(frozen=True)
class SequenceModelProbes:
    last_token: RidgeByHook
    logistic: LogisticResult | None = None  # None: too few pairs


@dataclass(frozen=True)
class DPOComparison:
    """DPO's implicit reward beta * log(pi / pi_ref) against the truth and the probe, on the test completions."""

    beta: float
    implicit_vs_true: RankMetrics
    probe_vs_true: RankMetrics
    probe_vs_implicit: RankMetrics


@dataclass(frozen=True)
class SequenceProbeResult:
    n_completions: int
    n_test: int
    reward_mean: float
    reward_std: float
    models: dict[str, SequenceModelProbes]  # model name -> its probes
    true_reward_test: tuple[float, ...]
    dpo: DPOComparison | None = None  # where the study trained a DPO policy
    seconds: float = 0.0


# -- the implicit_reward stage ------------------------------------------------------------------


@dataclass(frozen=True)
class LinearProbeSet:
    """``fit_linear_reward`` for each model on SAE codes and on raw activations."""

    policy_sae: LinearRewardResult
    policy_activations: LinearRewardResult
    base_sae: LinearRewardResult
    base_activations: LinearRewardResult

    def items(self) -> tuple[tuple[str, LinearRewardResult], ...]:
        return (("policy_sae", self.policy_sae), ("policy_activations", self.policy_activations),
                ("base_sae", self.base_sae), ("base_activations", self.base_activations))


@dataclass(frozen=True)
class ImplicitRewardResult(Artifact):
    """``probes/implicit_reward.json``: every implicit-reward probe of a study."""

    target: Literal["paper", "utility"]  # the linear probes' target
    linear: LinearProbeSet
    ablation: AblationResult
    sequence: SequenceProbeResult
    seconds: float = 0.0

    DIR, FILE = "probes", "implicit_reward.json"
    FIGURES = {"scatter": "implicit_reward_scatter.png", "ablation": "implicit_reward_ablation.png"}


# -- does a model know sentiment? ---------------------------------------------------------------


@dataclass(frozen=True)
class ValenceProbes:
    """Held-out-word metrics per hook of one model (trained or randomly initialised)."""

    word: dict[str, FittedRankMetrics]  # hook -> read at the sentiment word
    last_token: dict[str, FittedRankMetrics]  # hook -> read at the review's last token
    n_train_words: int
    n_held_out_words: int
    n_examples: int


@dataclass(frozen=True)
class ValenceSummary:
    best_word_hook: str
    word_tau: float
    embedding_tau: float
    best_last_token_hook: str
    last_token_tau: float
    random_init_word_tau: float
    passes: bool


@dataclass(frozen=True)
class ValenceBars:
    word_tau: float
    last_token_tau: float


@dataclass(frozen=True)
class ValenceProbeResult(Artifact):
    """``probes/valence_<model>.json``: does ``model`` know sentiment? (``path(run)`` is the base model's)."""

    model: str
    summary: ValenceSummary
    trained: ValenceProbes
    random_init: ValenceProbes
    bars: ValenceBars
    seconds: float = 0.0

    DIR, FILE, KEY = "probes", "valence_{model}.json", {"model": "base"}
    FIGURES = {"layers": "valence_{model}.png"}  # the per-layer plot beside it
