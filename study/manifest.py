"""A stage's manifest: what the pipeline records when a stage finishes (its config
fingerprint, library versions, wall time), read back by the skip check and the report."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from rlhf.artifact import from_json, to_json
from rlhf.errors import UserError
from rlhf.rundir import RunDir, atomic_write_json, read_json


@dataclass(frozen=True)
class Manifest:
    stage: str
    fingerprint: str
    config: dict[str, Any] | None
    versions: dict[str, str]
    finished: str
    seconds: float
    processes: int = 1
    # This finish's identity, and the identity of each input stage's finish it read: a stage re-run
    # with the same config gets a new id, so what was built on its old artifacts shows as stale.
    run_id: str = ""
    inputs: dict[str, str] = field(default_factory=dict)

    def save(self, run: RunDir) -> None:
        atomic_write_json(run.manifest(self.stage), to_json(self))

    @classmethod
    def load(cls, run: RunDir, stage: str) -> Manifest | None:
        """The stage's manifest; None when it has not finished (or a crash left it unreadable)."""
        path = run.manifest(stage)
        if not path.exists():
            return None
        try:
            return from_json(cls, read_json(path), str(path))
        except (json.JSONDecodeError, UserError, TypeError, ValueError):
            return None


def read_manifests(run: RunDir) -> list[Manifest]:
    """Every finished stage's manifest in the run directory."""
    paths = sorted(run.manifests.glob("*.json")) if run.manifests.is_dir() else []
    return [m for p in paths if (m := Manifest.load(run, p.stem)) is not None]
