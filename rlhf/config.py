"""How the models under study are made: corpus and organisms, tokenizer, pretraining, conversion, reward
models with hidden context, the digits loop. Imports nothing heavy: study configs are checked before torch loads."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from rlhf.configtypes import (
    FractionFloat,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    ProbabilityFloat,
)
from rlhf.policy.config import PolicyConfig, SFTConfig
from rlhf.reward_kinds import RewardModelKind

Kind = RewardModelKind
# Where a reward model's head reads a text: at an appended EOS (TRL's default) or at the text's own last token.
ReadAt = Literal["eos", "last_token"]


# A local dataset file's suffix -> the ``datasets`` loader that reads it.
LOCAL_FORMATS = {".csv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet", ".txt": "text"}


# Where the trainers' curves may go besides the stage logs: the trainers' own ``report_to`` integrations.
Tracker = Literal["tensorboard", "wandb"]


@dataclass(frozen=True)
class LoggingConfig:
    """[logging]: training curves to TensorBoard (event files in runs/<study>/logs/tensorboard/<stage>/)
    or Weights & Biases (project = the study's name, one run per stage) through every trainer's own
    ``report_to``; off by default. Not part of any stage's fingerprint: switching it re-runs nothing."""

    report_to: tuple[Tracker, ...] = ()


@dataclass(frozen=True)
class DatasetConfig:
    """A real text dataset: a Hugging Face hub id (e.g. "stanfordnlp/imdb", needs the hub)
    or a local .csv/.json/.jsonl/.parquet/.txt file."""

    path: str = ""
    split: str = "train"
    text_column: str = "text"
    max_words: PositiveInt = 48  # texts are cut to their first words (the paper's prompts are short)
    n_train: PositiveInt = 20_000
    n_val: PositiveInt = 1_000
    n_test: PositiveInt = 1_000
    seed: int = 0


@dataclass(frozen=True)
class SentimentConfig:
    """How the review corpus is generated."""

    seed: int = 0
    n_train: PositiveInt = 80_000
    n_val: PositiveInt = 4_000
    n_test: PositiveInt = 4_000
    n_positive: PositiveInt = 600
    n_negative: PositiveInt = 600
    min_abs_valence: NonNegativeFloat = 1.0
    max_sentences: PositiveInt = 5
    p_on_polarity: ProbabilityFloat = 0.8  # a sentiment word agrees with the review's polarity
    p_neutral: ProbabilityFloat = 0.1  # a sentiment slot holds a neutral word
    p_intensifier: ProbabilityFloat = 0.3


@dataclass(frozen=True)
class CorpusConfig:
    source: Literal["organism", "dataset"] = "organism"
    organism: SentimentConfig = field(default_factory=SentimentConfig)
    dataset: DatasetConfig = field(default_factory=DatasetConfig)


@dataclass(frozen=True)
class DigitsConfig:
    n_input: PositiveInt = 4
    n_output: PositiveInt = 6
    n_train: PositiveInt = 20_000
    n_val: PositiveInt = 1_000
    n_test: PositiveInt = 1_000
    seed: int = 0


@dataclass(frozen=True)
class TokenizerConfig:
    source: str = "corpus"  # "corpus": build a word-level one; else a model's hub id or directory
    min_frequency: PositiveInt = 1


@dataclass(frozen=True)
class PretrainConfig:
    # A hub id or local directory: use that pretrained model as the base instead of
    # training one (then tokenizer.source must name the same model).
    from_model: str = ""
    n_layers: PositiveInt = 4
    d_model: PositiveInt = 128
    n_heads: PositiveInt = 4
    d_mlp: PositiveInt = 512
    context: PositiveInt = 64
    rotary_pct: FractionFloat = 0.25
    parallel_residual: bool = True
    batch_size: PositiveInt = 64
    learning_rate: PositiveFloat = 2e-3
    warmup_steps: NonNegativeInt = 50
    max_steps: PositiveInt = 1200
    eval_every: PositiveInt = 100
    patience: PositiveInt = 3  # evaluations without improvement before stopping
    min_improvement: NonNegativeFloat = 0.002  # nats; smaller gains count as a plateau
    eval_reviews: PositiveInt = 1000
    seed: int = 0


@dataclass(frozen=True)
class ConversionConfig:
    atol: PositiveFloat = 1e-4


@dataclass(frozen=True)
class RewardModelConfig:
    kind: Kind = "mean_variance"
    n_atoms: PositiveInt = 10  # categorical only
    learning_rate: PositiveFloat = 5e-4
    epochs: PositiveFloat = 1.0
    batch_size: PositiveInt = 64
    regulariser: NonNegativeFloat = 0.0  # variance penalty (mean_variance) or entropy bonus (categorical)
    read_at: ReadAt = "eos"
    seed: int = 0


@dataclass(frozen=True)
class HiddenContextConfig:
    enabled: bool = True
    n_pairs: PositiveInt = 12_000
    # Words drawn from the organism's sentiment vocabulary (0: all). A word's spread shows only
    # through many comparisons of it: 12,000 pairs over 60 words give each ~300, over all 1,200 ~15.
    n_words: NonNegativeInt = 60
    held_out_fraction: FractionFloat = 0.2
    contexts_per_word: PositiveInt = 8  # sentences per word when reading its learned mean and spread
    kinds: tuple[Kind, ...] = ("bradley_terry", "mean_variance", "categorical")
    # A word's spread is a weaker signal than its mean: it needs ~8 epochs over 9,600 pairs
    # (Spearman with the raters' std 0.48-0.61 over 3 seeds; after 6 epochs one of 3 seeds falls to
    # 0.28, under the bar of 0.3; 0.43 after 4 epochs; 0.08 after 1 at 5e-4).
    reward_model: RewardModelConfig = field(
        default_factory=lambda: RewardModelConfig(read_at="last_token", epochs=8.0, learning_rate=2e-3))
    # The Bradley-Terry model learns a mean only, which needs far fewer: on the demo, over 3 seeds, 2 epochs
    # give held-out accuracy 0.882-0.890 and a Spearman of 0.987-0.989 with the lexicon means (8 epochs:
    # 0.878-0.886 and 0.980-0.985; each seed higher after 2) in a quarter the time.
    bradley_terry_epochs: PositiveFloat = 2.0
    # The categorical model's spread, bounded by its atom grid, follows the raters less and has no bar
    # (Spearman 0.23-0.44 over 3 seeds after 8 epochs, 0.11-0.33 after 4); it trains half as long.
    categorical_epochs: PositiveFloat = 4.0
    seed: int = 0


@dataclass(frozen=True)
class DigitsLoopConfig:
    enabled: bool = True
    organism: DigitsConfig = field(default_factory=DigitsConfig)
    # The SFT model: a tiny GPT-NeoX trained on the language until its loss plateaus.
    sft: PretrainConfig = field(default_factory=lambda: PretrainConfig(
        n_layers=2, d_model=64, n_heads=4, d_mlp=256, context=16, batch_size=64, learning_rate=3e-3,
        warmup_steps=20, max_steps=1500, eval_every=100, patience=3, eval_reviews=1000))
    n_pairs: PositiveInt = 4000
    held_out_fraction: FractionFloat = 0.2
    reward_model: RewardModelConfig = field(default_factory=lambda: RewardModelConfig(
        kind="bradley_terry", learning_rate=1e-3, epochs=2.0, batch_size=64))
    policy: PolicyConfig = field(default_factory=lambda: PolicyConfig(
        beta=0.5, kl_target=0.0, learning_rate=5e-4, max_steps=250, kl_budget=0.0, num_generations=8, batch_size=64,
        max_completion_length=7, n_prompts=4000, n_eval_prompts=512, save_every=50))
    beta0: bool = True  # also train with beta = 0 (same steps) to compare the KL
    sft_baseline: SFTConfig = field(default_factory=lambda: SFTConfig(
        learning_rate=1e-3, epochs=1.0, batch_size=64, max_completion_length=7, n_eval_prompts=512, save_every=100))
