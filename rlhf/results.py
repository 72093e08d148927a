"""The typed results of the rlhf stages (corpus, tokenizer, pretraining, policies,
reward models, digits, conversion): what later stages and the report read.

Light on purpose (no torch import): the report and the command lines load these.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlhf.artifact import Artifact
from rlhf.policy.config import PolicyConfig
from rlhf.rundir import RunDir

# A logged metric: (step, value) pairs.
Curve = tuple[tuple[int, float], ...]


@dataclass(frozen=True)
class SplitStats:
    reviews: int
    tokens: int
    positive_share: float | None = None
    entropy_floor: float | None = None  # exact entropy of the generator per predicted token (organism only)


@dataclass(frozen=True)
class CorpusResult(Artifact):
    """``corpus/stats.json``: where the texts came from and how many there are."""

    source: str  # "organism" or the dataset's path
    vocabulary_size: int
    train: SplitStats
    val: SplitStats
    test: SplitStats

    DIR, FILE = "corpus", "stats.json"

    @property
    def splits(self) -> dict[str, SplitStats]:
        return {"train": self.train, "val": self.val, "test": self.test}


@dataclass(frozen=True)
class PretrainResult(Artifact):
    """``training/pretrain.json``: the base model's training and its held-out loss against the floor."""

    steps: int
    stopped_early: bool
    resumed: bool
    parameters: int
    train_curve: Curve
    val_curve: Curve
    test_loss: float
    perplexity: float
    seconds: float
    entropy_floor: float | None = None  # None for an adopted model or a real dataset
    loss_over_floor: float | None = None
    from_model: str = ""  # the adopted pretrained model; empty when trained here

    DIR, FILE, FIGURES = "training", "pretrain.json", {"loss": "pretrain.png"}


@dataclass(frozen=True)
class PolicyEvaluation:
    """One model's completions on held-out prompts: reward, exact KL to the base, repetition, length."""

    mean_reward: float
    mean_kl_per_token: float
    repeated_bigrams: float
    mean_length: float


@dataclass(frozen=True)
class PolicySample:
    prompt: str
    base: str
    base_reward: float
    policy: str
    policy_reward: float


@dataclass(frozen=True)
class PolicyResult(Artifact):
    """``training/<name>.json``: an online RL policy (``policy`` for the stage) and its evaluation.

    It records its whole config (typed), so the beta = 0 run can repeat it."""

    name: str
    config: PolicyConfig
    algorithm: str
    beta: float
    steps: int
    resumed: bool
    stopped_at_kl_budget: bool
    base: PolicyEvaluation
    policy: PolicyEvaluation
    reward_gain: float
    curves: dict[str, Curve]  # reward, kl, exact_kl, beta, completions/mean_length, repeated_bigrams
    samples: tuple[PolicySample, ...]
    seconds: float
    reward: str = "vader"  # the reward spec that trained it (the default: results written before rewards were pluggable)
    # The step of the model handed on (the last, or the last checkpoint within the KL budget) and why.
    kept_step: int = 0
    kept_reason: str = ""
    final_beta: float | None = None  # the KL coefficient at the end (it adapts when config.kl_target > 0)

    # A policy trained under another name (``rloo``, a digits run's ``policy_beta0``) is its own file;
    # its curves' figures are ``<name>_<curve>.png``, the KL with and without the penalty side by side.
    DIR, FILE, KEY = "training", "{name}.json", {"name": "policy"}
    FIGURES = {"curve": "{name}_{curve}.png", "kl_beta_comparison": "kl_beta_comparison.png"}


@dataclass(frozen=True)
class NoKLResult(PolicyResult):
    """``training/policy_beta0.json``: the main policy's config again with beta = 0."""

    KEY = {"name": "policy_beta0"}


@dataclass(frozen=True)
class DPOExample:
    prompt: str
    chosen: str
    rejected: str
    chosen_reward: float
    rejected_reward: float
    implicit_chosen: float
    implicit_rejected: float


@dataclass(frozen=True)
class DPOResult(Artifact):
    """``training/dpo.json``: the DPO policy, its implicit reward's held-out accuracy and its evaluation."""

    config: dict[str, Any]
    beta: float  # the implicit reward's scale: beta * log(pi / pi_ref)
    steps: int
    train_pairs: int
    held_out_pairs: int
    implicit_reward_accuracy: float
    base: PolicyEvaluation
    policy: PolicyEvaluation
    reward_gain: float
    curves: dict[str, Curve]  # loss, rewards/accuracies, rewards/margins
    examples: tuple[DPOExample, ...]
    seconds: float
    reward: str = "vader"  # the reward spec that ranked the pairs

    DIR, FILE, FIGURES = "training", "dpo.json", {"accuracy": "dpo_accuracy.png"}


@dataclass(frozen=True)
class SFTSample:
    prompt: str
    completion: str
    reward: float


@dataclass(frozen=True)
class SFTResult(Artifact):
    """``training/sft.json``: rejection-sampling SFT of the base model, evaluated like the RL policy."""

    config: dict[str, Any]
    n_samples: int
    top_fraction: float
    rows: int
    reward_threshold: float | None  # None when the model was adopted (sft.from_model), not trained here
    mean_reward_of_rows: float | None
    base: PolicyEvaluation
    sft: PolicyEvaluation
    reward_gain: float
    loss_curve: Curve
    samples: tuple[SFTSample, ...]
    seconds: float

    DIR, FILE = "training", "sft.json"


@dataclass(frozen=True)
class WordSpreads:
    """Per word: the reward model's learned mean and spread beside the lexicon's mean and raters' std."""

    word: tuple[str, ...]
    learned_mean: tuple[float, ...]
    learned_std: tuple[float, ...]
    lexicon_mean: tuple[float, ...]
    lexicon_std: tuple[float, ...]


@dataclass(frozen=True)
class CategoricalDistribution:
    word: str
    lexicon_mean: float
    lexicon_std: float
    probabilities: tuple[float, ...]


@dataclass(frozen=True)
class RewardModelFit:
    pairwise_accuracy: float  # against the drawn raters' labels
    agrees_with_lexicon_means: float
    mean_vs_lexicon_mean_spearman: float
    r_squared: float
    std_vs_lexicon_std_spearman: float | None = None  # distributional models only
    words: WordSpreads | None = None
    distributions: dict[str, CategoricalDistribution] | None = None  # categorical only


@dataclass(frozen=True)
class PerWordFit:
    std_vs_lexicon_std_spearman: float
    mean_vs_lexicon_mean_spearman: float


@dataclass(frozen=True)
class HiddenContextResult(Artifact):
    """``training/hidden_context.json``: reward models on rater-drawn preferences, against the lexicon."""

    config: dict[str, Any]
    read_at: str  # where the reward models read a text: "eos" or "last_token"
    n_train_pairs: int
    n_test_pairs: int
    n_words: int
    models: dict[str, RewardModelFit]  # by kind
    per_word_fit: PerWordFit
    seconds: float

    DIR, FILE, FIGURES = "training", "hidden_context.json", {"fits": "hidden_context.png"}


def digits_run(run: RunDir) -> RunDir:
    """The digits stage's own run directory (corpus, models, training) inside the study's."""
    return RunDir(run.stage_dir("digits"))


@dataclass(frozen=True)
class DigitsSFT:
    test_loss: float
    entropy_floor: float
    loss_over_floor: float
    steps: int


@dataclass(frozen=True)
class DigitsRewardModel:
    kind: str
    train_pairs: int
    test_pairs: int
    held_out_accuracy: float


@dataclass(frozen=True)
class DigitsSample:
    prompt: str
    completion: str


@dataclass(frozen=True)
class DigitsMeasure:
    """One model's completions on held-out prompts against the known preference and rule."""

    first_correct: float
    first_correct_probability: float
    rule_following_by_position: tuple[float, ...]
    well_formed: float
    kl_by_position: tuple[float, ...]  # the last entry is the end-of-text token
    mean_kl_per_token: float
    mean_reward: float
    samples: tuple[DigitsSample, ...]


@dataclass(frozen=True)
class DigitsExample:
    prompt: str
    outputs: tuple[int, ...]
    preferred: int
    distributions: dict[str, tuple[tuple[float, ...], ...]]  # model -> [output position][digit]


@dataclass(frozen=True)
class DigitsResult(Artifact):
    """``digits/training/digits.json``: the SFT -> reward model -> RL loop on the digits organism."""

    config: dict[str, Any]
    policy_beta: float  # the main RL run's KL coefficient
    n_output: int  # output digits per sequence
    sft: DigitsSFT
    reward_model: DigitsRewardModel
    base_rate: float  # how often the rule alone meets the preference on the held-out prompts
    models: dict[str, DigitsMeasure]  # base, policy, policy_beta0, sft_baseline
    policy_steps: dict[str, int]
    kl_curves: dict[str, Curve]
    reward_curves: dict[str, Curve]
    sft_loss_curve: Curve
    example: DigitsExample
    seconds: float

    FILE = "digits.json"
    FIGURES = {"first_correct": "first_correct.png", "kl_by_position": "kl_by_position.png", "kl_curves": "kl_curves.png",
               "distributions": "distributions.png"}

    @classmethod
    def directory(cls, run: RunDir) -> Path:
        return digits_run(run).training

    def later_mean(self, model: str, measure: str) -> float:
        """A per-position measure averaged over output positions 2..n (the end-of-text token left out)."""
        values = getattr(self.models[model], measure)[1 : self.n_output]
        return sum(values) / len(values)


@dataclass(frozen=True)
class DigitsAttention(Artifact):
    """``digits/training/attention.json``: attention patterns of the SFT model and the policy on one text."""

    tokens: tuple[str, ...]
    models: dict[str, list[list[list[list[float]]]]]  # model -> [layer][head][query][key]

    FILE = "attention.json"

    @classmethod
    def directory(cls, run: RunDir) -> Path:
        return digits_run(run).training


@dataclass(frozen=True)
class ConvertedModel:
    architecture: str
    max_abs_logit_diff: float
    n_layers: int
    d_model: int
    d_vocab: int
    seconds: float


@dataclass(frozen=True)
class ConversionResult(Artifact):
    """``analysis/conversion.json``: each model's HookedTransformer logits against the HF model's."""

    atol: float
    models: dict[str, ConvertedModel]

    DIR, FILE = "analysis", "conversion.json"
