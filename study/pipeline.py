"""The study pipeline: run each stage in order, skip the finished ones, resume the rest.

A stage is finished when its manifest records the same fingerprint as now: a hash of
its own config section and of the fingerprints of the stages it reads from. Changing
one section therefore re-runs that stage and everything downstream of it, nothing else.
A stage that was killed left no manifest (it is written last), so it runs again and
picks up whatever its partial directory holds.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from analysis.activations import cache_stage
from analysis.autointerp import autointerp_stage
from analysis.dictionaries import dictionaries_stage
from analysis.divergence import divergence_stage
from analysis.feature_diff import feature_diff_stage
from analysis.mmcs import mmcs_stage
from analysis.model_diffing import model_diffing_stage
from analysis.render import build_report
from analysis.sae_quality import quality_stage
from probes.implicit_reward import implicit_reward_stage
from probes.valence import valence_probe
from rlhf.corpus import build_corpus
from rlhf.digits_loop import digits_loop_stage
from rlhf.errors import UserError
from rlhf.hidden_context import hidden_context_stage
from rlhf.hooked import conversion_stage
from rlhf.policy import no_kl_comparison, train_dpo, train_policy
from rlhf.policy.sft import sft_stage
from rlhf.pretrain import pretrain
from rlhf.rundir import RunDir, atomic_write_json, atomic_write_text, read_json
from rlhf.tokenizer import tokenizer_stage
from rlhf.training import process_state
from study.config import StudyConfig

LIBRARIES = ("torch", "transformers", "trl", "transformer-lens", "sae-lens", "circuitsvis", "vaderSentiment")


@dataclass(frozen=True)
class Stage:
    name: str
    section: str | None  # the StudyConfig field this stage is configured by
    after: tuple[str, ...]  # stages whose artifacts it reads
    run: Callable[[Any, RunDir], Any]
    outputs: tuple[str, ...]  # paths relative to the run directory that must exist when done
    # Work a killed run resumes from (checkpoints, cache shards); cleared when the stage
    # starts over with another config or is forced, so nothing stale is resumed.
    scratch: tuple[str, ...] = ()
    # Runs in every process of an ``accelerate launch`` (data-parallel training, sharded
    # caching); the others run in the main process while the rest wait.
    distributed: bool = False
    # Trains with a Hugging Face trainer in one process: under a multi-process launch that
    # trainer would wait for peers that never join, so such a run is refused.
    one_process: bool = False


STAGES: tuple[Stage, ...] = (
    Stage("corpus", "corpus", (), build_corpus, ("corpus/train.txt", "corpus/stats.json")),
    Stage("tokenizer", "tokenizer", ("corpus",), tokenizer_stage, ("models/tokenizer/tokenizer.json",)),
    Stage("pretrain", "pretrain", ("tokenizer",), pretrain, ("models/base/config.json", "training/pretrain.json"),
          ("models/.base.partial",), distributed=True),
    Stage("policy", "policy", ("pretrain",), train_policy, ("models/policy/config.json", "training/policy.json"),
          ("models/.policy.partial",), distributed=True),
    Stage("policy_beta0", "policy_beta0", ("policy",), no_kl_comparison, (), ("models/.policy_beta0.partial",), distributed=True),
    Stage("dpo", "dpo", ("pretrain",), train_dpo, (), ("models/.dpo.partial",), distributed=True),
    Stage("divergence", "divergence", ("policy",), divergence_stage, ("analysis/divergence.json",)),
    Stage("activations", "activations", ("divergence",), cache_stage, ("activations/index.json",), ("activations",),
          distributed=True),
    Stage("dictionaries", "dictionaries", ("activations",), dictionaries_stage, ("saes/index.json",), ("saes",)),
    Stage("sae_quality", "sae_quality", ("dictionaries",), quality_stage, ("analysis/sae_metrics.json",)),
    Stage("mmcs", "mmcs", ("dictionaries",), mmcs_stage, ("analysis/mmcs.json",)),
    Stage("feature_diff", "feature_diff", ("dictionaries",), feature_diff_stage, ("analysis/feature_diff.json",)),
    Stage("model_diffing", "model_diffing", ("dictionaries",), model_diffing_stage, (), ("model_diffing",)),
    Stage("autointerp", "autointerp", ("mmcs", "feature_diff"), autointerp_stage, ()),
    Stage("conversion", "conversion", ("pretrain", "policy"), conversion_stage, ("analysis/conversion.json",)),
    Stage("valence_probe", "valence_probe", ("pretrain",), valence_probe, ("probes/valence_base.json",)),
    Stage("implicit_reward", "implicit_reward", ("dictionaries", "dpo"), implicit_reward_stage, ()),
    Stage("hidden_context", "hidden_context", ("pretrain",), hidden_context_stage, (), distributed=True),
    Stage("sft", "sft", ("pretrain",), sft_stage, (), ("models/.sft.partial",), one_process=True),
    Stage("digits", "digits", (), digits_loop_stage, (), ("digits",), one_process=True),
)
STAGE_NAMES = tuple(s.name for s in STAGES)


def _versions() -> dict[str, str]:
    out = {}
    for lib in LIBRARIES:
        try:
            out[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            out[lib] = "not installed"
    return out


def fingerprints(cfg: StudyConfig) -> dict[str, str]:
    out: dict[str, str] = {}
    for stage in STAGES:
        section = asdict(getattr(cfg, stage.section)) if stage.section else None
        payload = json.dumps({"config": section, "after": [out[a] for a in stage.after]}, sort_keys=True)
        out[stage.name] = hashlib.sha256(payload.encode()).hexdigest()[:16]
    return out


def _manifest_path(run_dir: RunDir, stage: str) -> Path:
    return run_dir.manifests / f"{stage}.json"


def _started_path(run_dir: RunDir, stage: str) -> Path:
    return run_dir.manifests / f".{stage}.started"


def _prepare_scratch(run_dir: RunDir, stage: Stage, fingerprint: str, *, forced: bool, log: Callable[[str], None]) -> None:
    """Keep a killed run's work only when it was started with the same config; else clear it."""
    marker = _started_path(run_dir, stage.name)
    resumable = not forced and marker.exists() and marker.read_text().strip() == fingerprint
    if not resumable:
        for rel in stage.scratch:
            path = run_dir.root / rel
            if path.exists():
                log(f"[{stage.name}] clearing {rel} (started over)")
                shutil.rmtree(path)
    atomic_write_text(marker, fingerprint)


def _last_before(name: str) -> str:
    """The last stage before the first one-process stage at or before ``name``: where a launch should stop."""
    first = next(i for i, s in enumerate(STAGES) if s.one_process)
    return STAGES[max(0, min(first, STAGE_NAMES.index(name)) - 1)].name


def is_done(run_dir: RunDir, stage: Stage, fingerprint: str) -> bool:
    path = _manifest_path(run_dir, stage.name)
    if not path.exists():
        return False
    try:
        manifest = read_json(path)
    except json.JSONDecodeError:
        return False
    return manifest.get("fingerprint") == fingerprint and all((run_dir.root / o).exists() for o in stage.outputs)


def run_study(
    cfg: StudyConfig,
    *,
    force: tuple[str, ...] = (),
    until: str | None = None,
    log: Callable[[str], None] = print,
) -> RunDir:
    """Run every stage that is not already done; then assemble the report."""
    for name in (*force, *([until] if until else []), *cfg.stages):
        if name not in STAGE_NAMES:
            raise UserError(f"unknown stage {name!r}; stages: {', '.join(STAGE_NAMES)}")
    chosen = set(cfg.stages or STAGE_NAMES)
    for stage in STAGES:
        missing = [a for a in stage.after if stage.name in chosen and a not in chosen]
        if missing:
            raise UserError(f"stages lists {stage.name!r} but not {missing[0]!r}, whose artifacts it reads")
    # Under ``accelerate launch`` every process runs this loop: distributed stages run in all of
    # them, the rest in the main process only, and only the main process writes manifests.
    state = process_state()
    main = state.is_main_process
    log = log if main else (lambda _: None)
    run_dir = RunDir(cfg.run_dir)
    if main:
        run_dir.root.mkdir(parents=True, exist_ok=True)
        atomic_write_json(run_dir.root / "config.json", cfg.to_dict())
    state.wait_for_everyone()
    prints = fingerprints(cfg)
    ran: set[str] = set()
    for stage in STAGES:
        if stage.name not in chosen:
            continue
        stale_input = any(a in ran for a in stage.after)
        if stage.name not in force and not stale_input and is_done(run_dir, stage, prints[stage.name]):
            log(f"[{stage.name}] done already, skipped")
        else:
            if stage.one_process and state.num_processes > 1:
                raise UserError(f"stage {stage.name} trains in a single process and cannot run under a "
                                f"{state.num_processes}-process accelerate launch; launch with --until "
                                f"{_last_before(stage.name)}, then run the rest with `python -m study run`")
            log(f"[{stage.name}] running")
            if main:
                _manifest_path(run_dir, stage.name).unlink(missing_ok=True)
                _prepare_scratch(run_dir, stage, prints[stage.name], forced=stage.name in force, log=log)
            state.wait_for_everyone()
            started = time.time()
            section = getattr(cfg, stage.section) if stage.section else cfg
            if stage.distributed or main:
                stage.run(section, run_dir)
            state.wait_for_everyone()
            seconds = time.time() - started
            if main:
                atomic_write_json(_manifest_path(run_dir, stage.name), {
                    "stage": stage.name, "fingerprint": prints[stage.name],
                    "config": asdict(section) if stage.section else None,
                    "versions": _versions(), "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
                    "seconds": seconds, "processes": state.num_processes if stage.distributed else 1,
                })
                _started_path(run_dir, stage.name).unlink(missing_ok=True)
            state.wait_for_everyone()
            ran.add(stage.name)
            log(f"[{stage.name}] finished in {seconds:.1f} s")
        if stage.name == until:
            break
    if main:
        log(f"[report] {build_report(run_dir)}")
    return run_dir


def status(run_dir: RunDir) -> list[dict[str, Any]]:
    """Each stage's manifest (or that it has not finished) for a run directory."""
    if not run_dir.root.is_dir():
        raise UserError(f"run directory {run_dir.root} does not exist")
    rows = []
    for stage in STAGES:
        path = _manifest_path(run_dir, stage.name)
        rows.append(read_json(path) if path.exists() else {"stage": stage.name, "finished": None})
    return rows
