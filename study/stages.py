"""The pipeline's stages, declared once: name (also the config section), config type, the function
that runs it, what it reads and writes. The config's stage names, its sections, the pipeline's order
and the report's extra sections all derive from ``STAGES``; adding a stage is one module and one
entry here (``register``). Light on purpose: configs are checked with it before torch loads."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from analysis.results import DivergenceResult, FeatureDiffResult, MMCSResult, SAEQualityResult
from probes.results import ValenceProbeResult
from rlhf.registry import load
from rlhf.results import ConversionResult, CorpusResult, PolicyResult, PretrainResult
from rlhf.reward_kinds import parse
from rlhf.rundir import RunDir

if TYPE_CHECKING:
    from study.config import StudyConfig

Paths = Callable[[RunDir], tuple[Path, ...]]


@dataclass(frozen=True)
class Stage:
    name: str  # also its config section: [name] in the TOML, StudyConfig.section(name)
    after: tuple[str, ...]  # stages whose artifacts it reads
    function: str  # "module:function", imported when the stage runs (the command line stays fast)
    outputs: Paths = lambda run: ()  # what must exist when the stage is done
    # Work a killed run resumes from (checkpoints, cache shards); cleared when the stage
    # starts over with another config or is forced, so nothing stale is resumed.
    scratch: Paths = lambda run: ()
    # Runs in every process of an ``accelerate launch`` (data-parallel training, sharded
    # caching); the others run in the main process while the rest wait.
    distributed: bool = False
    # Trains with a Hugging Face trainer in one process: under a multi-process launch that
    # trainer would wait for peers that never join, so such a run is refused.
    one_process: bool = False
    # Stages it reads only under some configs (the policy reads the SFT model when RL starts from it).
    reads: Callable[[StudyConfig], tuple[str, ...]] = lambda cfg: ()

    # A stage beyond the built-in ones (whose sections are StudyConfig's typed fields, and whose report
    # sections are study.report.build.ORDER) brings its section's dataclass and its report section:
    # "module:ATTR" of a study.report.section.Section, shown after the built-in ones.
    config: type | None = None
    report: str = ""

    def inputs(self, cfg: StudyConfig) -> tuple[str, ...]:
        """The stages whose artifacts this one reads under ``cfg``."""
        return (*self.after, *self.reads(cfg))

    def run(self, section: Any, run_dir: RunDir) -> Any:
        return load(self.function)(section, run_dir)


def _trains(cfg: StudyConfig, stage: str) -> bool:
    """Whether the study runs ``stage`` (an optional model's stage: listed, or all listed, and enabled)."""
    return (not cfg.stages or stage in cfg.stages) and cfg.section(stage).enabled


def _reward_stage(reward: str) -> tuple[str, ...]:
    """The stage that trains the reward (a ``study:`` reward: the hidden_context stage's reward models)."""
    kind, _ = parse(reward)
    return (kind.trains,) if kind and kind.trains else ()


STAGES: list[Stage] = [
    Stage("corpus", (), "rlhf.corpus:build_corpus", lambda r: (r.split_file("train"), CorpusResult.path(r))),
    Stage("tokenizer", ("corpus",), "rlhf.tokenizer:tokenizer_stage", lambda r: (r.tokenizer / "tokenizer.json",)),
    Stage("pretrain", ("tokenizer",), "rlhf.pretrain:pretrain",
          lambda r: (r.base / "config.json", PretrainResult.path(r)), lambda r: (r.model_partial("base"),),
          distributed=True),
    Stage("hidden_context", ("pretrain",), "rlhf.hidden_context:hidden_context_stage",
          distributed=True),
    Stage("sft", ("pretrain",), "rlhf.policy.sft:sft_stage", scratch=lambda r: (r.model_partial("sft"),),
          distributed=True),
    Stage("policy", ("pretrain",), "rlhf.policy:train_policy",
          lambda r: (r.policy / "config.json", PolicyResult.path(r)), lambda r: (r.model_partial("policy"),),
          distributed=True, reads=lambda cfg: (*(("sft",) if cfg.policy.init == "sft" else ()), *_reward_stage(cfg.policy.reward))),
    Stage("policy_beta0", ("policy",), "rlhf.policy:no_kl_comparison",
          scratch=lambda r: (r.model_partial("policy_beta0"),), distributed=True),
    Stage("dpo", ("pretrain",), "rlhf.policy:train_dpo", scratch=lambda r: (r.model_partial("dpo"),),
          distributed=True, reads=lambda cfg: _reward_stage(cfg.dpo.reward)),
    Stage("divergence", ("policy",), "analysis.divergence:divergence_stage",
          lambda r: (DivergenceResult.path(r),)),
    Stage("activations", ("divergence",), "analysis.activations:cache_stage",
          lambda r: (r.activations_index,), lambda r: (r.activations_root,), distributed=True),
    Stage("dictionaries", ("activations",), "analysis.dictionaries:dictionaries_stage",
          lambda r: (r.saes_index,), lambda r: (r.saes_root,)),
    Stage("sae_quality", ("dictionaries",), "analysis.sae_quality:quality_stage",
          lambda r: (SAEQualityResult.path(r),)),
    Stage("mmcs", ("dictionaries",), "analysis.mmcs:mmcs_stage", lambda r: (MMCSResult.path(r),)),
    Stage("feature_diff", ("dictionaries",), "analysis.feature_diff:feature_diff_stage",
          lambda r: (FeatureDiffResult.path(r),)),
    Stage("model_diffing", ("dictionaries",), "analysis.diffing.stage:model_diffing_stage",
          scratch=lambda r: (r.stage_dir("model_diffing"),)),
    Stage("autointerp", ("mmcs", "feature_diff"), "analysis.autointerp:autointerp_stage"),
    Stage("conversion", ("pretrain", "policy"), "rlhf.hooked:conversion_stage",
          lambda r: (ConversionResult.path(r),),
          reads=lambda cfg: tuple(n for n in ("policy_beta0", "dpo", "sft") if _trains(cfg, n))),
    Stage("valence_probe", ("pretrain",), "probes.valence:valence_probe",
          lambda r: (ValenceProbeResult.path(r),)),
    Stage("implicit_reward", ("dictionaries",), "probes.implicit_reward:implicit_reward_stage",
          reads=lambda cfg: ("dpo",) if _trains(cfg, "dpo") else ()),
    # It splices the implicit-reward probe's ranking beside the others where the study runs the probe.
    Stage("reward_attribution", ("model_diffing",), "study.reward_attribution:reward_attribution_stage",
          reads=lambda cfg: ("implicit_reward",) if not cfg.stages or "implicit_reward" in cfg.stages else ()),
    # It draws the single-hook splicing curves of reward attribution beside its own where that stage ran.
    # No outputs declared: where the residual stream is not cached it is skipped, and stays done.
    Stage("circuits", ("dictionaries",), "analysis.circuits_stage:circuits_stage",
          reads=lambda cfg: ("reward_attribution",) if not cfg.stages or "reward_attribution" in cfg.stages else ()),
    Stage("digits", (), "rlhf.digits_loop:digits_loop_stage", scratch=lambda r: (r.stage_dir("digits"),),
          one_process=True),
]


def stage_names() -> tuple[str, ...]:
    """Every stage's name, in the order they run."""
    return tuple(s.name for s in STAGES)


def stage(name: str) -> Stage:
    return next(s for s in STAGES if s.name == name)


def register(new: Stage, *, before: str | None = None) -> None:
    """Add a stage to the pipeline: before ``before`` (a stage's name), or last. Its config section is
    ``[new.name]`` of new.config's type, its report section ``new.report``."""
    if new.config is None:
        raise ValueError(f"stage {new.name!r} needs its config dataclass (Stage.config)")
    if new.name in stage_names():
        raise ValueError(f"a stage named {new.name!r} exists already")
    STAGES.insert(stage_names().index(before) if before else len(STAGES), new)
