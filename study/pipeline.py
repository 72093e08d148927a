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
import uuid
from collections.abc import Callable
from dataclasses import asdict
from importlib import metadata
from pathlib import Path

from rlhf.errors import UserError
from rlhf.rundir import RunDir, atomic_write_json, atomic_write_text, read_json
from study.config import StudyConfig, load_config
from study.console import closing_lines, stage_output
from study.manifest import Manifest
from study.preflight import preflight
from study.report import build_report
from study.stages import STAGES, Stage, stage_names

LIBRARIES = ("torch", "transformers", "trl", "transformer-lens", "sae-lens", "circuitsvis", "vaderSentiment")




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
        section = asdict(cfg.section(stage.name))
        payload = json.dumps({"config": section, "after": [out[a] for a in stage.inputs(cfg)]}, sort_keys=True)
        out[stage.name] = hashlib.sha256(payload.encode()).hexdigest()[:16]
    return out


def _prepare_scratch(run_dir: RunDir, stage: Stage, fingerprint: str, *, forced: bool, log: Callable[[str], None]) -> None:
    """Keep a killed run's work only when it was started with the same config; else clear it."""
    marker = run_dir.started_marker(stage.name)
    resumable = not forced and marker.exists() and marker.read_text().strip() == fingerprint
    if not resumable:
        for path in stage.scratch(run_dir):
            if path.exists():
                log(f"[{stage.name}] clearing {path.relative_to(run_dir.root)} (started over)")
                shutil.rmtree(path)
    atomic_write_text(marker, fingerprint)


def _last_before(name: str) -> str:
    """The last stage before the first one-process stage at or before ``name``: where a launch should stop."""
    first = next(i for i, s in enumerate(STAGES) if s.one_process)
    return STAGES[max(0, min(first, stage_names().index(name)) - 1)].name


def is_done(run_dir: RunDir, stage: Stage, fingerprint: str) -> bool:
    manifest = Manifest.load(run_dir, stage.name)
    return manifest is not None and manifest.fingerprint == fingerprint and all(p.exists() for p in stage.outputs(run_dir))


def run_study(
    cfg: StudyConfig,
    *,
    force: tuple[str, ...] = (),
    until: str | None = None,
    log: Callable[[str], None] = print,
    verbose: bool = False,
) -> RunDir:
    """Run every stage that is not already done; then assemble the report. Unless ``verbose``, the
    libraries' warnings, logging and finished progress bars go to ``logs/<stage>.log``, not the console."""
    names = stage_names()
    for name in (*force, *([until] if until else []), *cfg.stages):
        if name not in names:
            raise UserError(f"unknown stage {name!r}; stages: {', '.join(names)}")
    chosen = set(cfg.stages or names)
    for stage in STAGES:
        missing = [a for a in stage.inputs(cfg) if stage.name in chosen and a not in chosen]
        if missing:
            raise UserError(f"stages lists {stage.name!r} but not {missing[0]!r}, whose artifacts it reads")
    preflight(cfg, chosen)
    from rlhf.training import process_state, reporting  # torch: not needed by status and the report

    # Under ``accelerate launch`` every process runs this loop: distributed stages run in all of
    # them, the rest in the main process only, and only the main process writes manifests.
    state = process_state()
    main = state.is_main_process
    log = log if main else (lambda _: None)
    run_dir = RunDir(cfg.run_dir)
    if main:
        run_dir.root.mkdir(parents=True, exist_ok=True)
        atomic_write_json(run_dir.config_file, cfg.to_dict())
    state.wait_for_everyone()
    prints = fingerprints(cfg)
    stale = stale_stages(run_dir, cfg)  # finished, but on artifacts an input has replaced since
    ran: set[str] = set()
    for stage in STAGES:
        if stage.name not in chosen:
            continue
        stale_input = any(a in ran for a in stage.inputs(cfg)) or stage.name in stale
        if stage.name not in force and not stale_input and is_done(run_dir, stage, prints[stage.name]):
            log(f"[{stage.name}] done already, skipped")
        else:
            if stage.one_process and state.num_processes > 1:
                raise UserError(f"stage {stage.name} trains in a single process and cannot run under a "
                                f"{state.num_processes}-process accelerate launch; launch with --until "
                                f"{_last_before(stage.name)}, then run the rest with `python -m study run`")
            log(f"[{stage.name}] running")
            if main:
                run_dir.manifest(stage.name).unlink(missing_ok=True)
                _prepare_scratch(run_dir, stage, prints[stage.name], forced=stage.name in force, log=log)
            state.wait_for_everyone()
            started = time.time()
            section = cfg.section(stage.name)
            if stage.distributed or main:
                logs = run_dir.log(stage.name).parent
                with stage_output(run_dir.log(stage.name), verbose), \
                        reporting(cfg.logging.report_to, logs, cfg.name, stage.name):
                    stage.run(section, run_dir)
            state.wait_for_everyone()
            seconds = time.time() - started
            if main:
                read = {a: m.run_id for a in stage.inputs(cfg) if (m := Manifest.load(run_dir, a)) is not None}
                Manifest(stage=stage.name, fingerprint=prints[stage.name],
                         config=asdict(section), versions=_versions(),
                         finished=time.strftime("%Y-%m-%dT%H:%M:%S"), seconds=seconds,
                         processes=state.num_processes if stage.distributed else 1,
                         run_id=uuid.uuid4().hex[:12], inputs=read).save(run_dir)
                run_dir.started_marker(stage.name).unlink(missing_ok=True)
            state.wait_for_everyone()
            ran.add(stage.name)
            log(f"[{stage.name}] finished in {seconds:.1f} s")
        if stage.name == until:
            break
    if main:
        log(f"[report] {build_report(run_dir, stale_stages(run_dir, cfg))}")
        for line in closing_lines(read_json(run_dir.summary_file)):
            log(line)
    return run_dir


def stale_stages(run_dir: RunDir, cfg: StudyConfig) -> dict[str, str]:
    """Finished stages whose artifacts no longer follow from the current config and the current
    artifacts of the stages they read, each with the reason: its config (or an input's) changed since
    it ran, an input was re-run after it, an input is stale itself, or an input has not finished."""
    prints = fingerprints(cfg)
    manifests = {stage.name: Manifest.load(run_dir, stage.name) for stage in STAGES}
    out: dict[str, str] = {}
    for stage in STAGES:
        manifest = manifests[stage.name]
        if manifest is None:
            continue
        reasons = []
        for a in stage.inputs(cfg):
            read = manifests[a]
            if a in out:
                reasons.append(f"{a} is stale")
            elif read is None:
                reasons.append(f"{a} has not finished")
            elif manifest.run_id and manifest.inputs.get(a) != read.run_id:
                reasons.append(f"{a} was re-run after it")
        if not reasons and manifest.fingerprint != prints[stage.name]:
            reasons.append(f"[{stage.name}] changed since it ran")
        if reasons:
            out[stage.name] = "; ".join(reasons)
    return out


def status(run_dir: RunDir) -> list[tuple[str, Manifest | None, str]]:
    """Each stage with its manifest (None where it has not finished) and why it is stale ("" when it is not)."""
    if not run_dir.root.is_dir():
        raise UserError(f"run directory {run_dir.root} does not exist")
    rows = [(stage.name, Manifest.load(run_dir, stage.name)) for stage in STAGES]
    if not run_dir.config_file.exists() and not any(m for _, m in rows):
        raise UserError(f"{run_dir.root} is not a study's run directory (no config.json, no finished stage); "
                        "start one with `python -m study run --config ...`")
    stale = stale_of(run_dir)
    return [(name, manifest, stale.get(name, "")) for name, manifest in rows]


def stale_of(run_dir: RunDir) -> dict[str, str]:
    """``stale_stages`` against the config the run directory keeps; none when it has none."""
    return stale_stages(run_dir, load_config(run_dir.config_file)) if run_dir.config_file.exists() else {}


def report(run_dir: RunDir) -> Path:
    """Rebuild the report, marking what is stale against the run directory's config."""
    return build_report(run_dir, stale_of(run_dir))
