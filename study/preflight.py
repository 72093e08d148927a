"""What a run checks of its surroundings before any stage starts: files and modules its config
names. A config's own values are checked when it loads (``study.config``); these can change after
a run's config is written (a reward model moved), so they are checked only when a run starts."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from rlhf.config import LOCAL_FORMATS
from rlhf.errors import UserError
from rlhf.reward_kinds import RewardSpec, parse
from study.config import StudyConfig, marked_fields
from study.stages import stage_names


def preflight(cfg: StudyConfig, chosen: set[str]) -> None:
    """A UserError naming the first reward or dataset file of the ``chosen`` stages that is not
    there, within a second of starting rather than minutes later when its stage begins."""
    for key, spec in marked_fields(cfg, RewardSpec()):
        section = key.split(".")[0]
        if section in stage_names() and section not in chosen:
            continue
        kind, target = parse(spec)
        problem = kind.problem(target) if kind and kind.problem else None
        if problem:
            raise UserError(f"{key}: {spec!r}: {problem}")
        if kind and kind.trains and not (kind.trains in chosen and cfg.section(kind.trains).enabled):
            raise UserError(f"{key} = {spec!r} needs the {kind.trains} stage to train it: enable [{kind.trains}]")
        # The hidden_context stage trains only the reward-model kinds it lists.
        model_kind = target.removeprefix("reward_")
        if kind and kind.trains == "hidden_context" and model_kind not in cfg.hidden_context.kinds:
            raise UserError(f"{key} = {spec!r} needs {model_kind!r} in hidden_context.kinds")
    for tracker in cfg.logging.report_to:  # the tracker's package is the trainers' optional dependency
        if importlib.util.find_spec(tracker) is None:
            raise UserError(f"logging.report_to lists {tracker!r}, but the {tracker} package is not installed: "
                            f"pip install {tracker} (or pip install -e '.[logging]')")
    dataset = cfg.corpus.dataset
    if cfg.corpus.source == "dataset" and "corpus" in chosen:
        path = Path(dataset.path)
        if not dataset.path:
            raise UserError("corpus.source is 'dataset' but corpus.dataset.path is empty")
        if path.suffix in LOCAL_FORMATS:
            if not path.is_file():
                raise UserError(f"corpus.dataset.path: the file {path} does not exist")
            with path.open("rb") as f:
                if not f.read(1 << 20).strip():
                    raise UserError(f"corpus.dataset.path: the file {path} is empty; it needs one text per row")
