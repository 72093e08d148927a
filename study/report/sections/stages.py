"""Stage timings and library versions, from the pipeline's manifests."""

from __future__ import annotations

from typing import Any

from rlhf.rundir import RunDir
from study.manifest import Manifest, read_manifests
from study.report.section import Section


def context(run: RunDir) -> dict[str, Any] | None:
    manifests: list[Manifest] = sorted(read_manifests(run), key=lambda m: m.finished)
    if not manifests:
        return None
    return {"rows": [(m.stage, m.seconds, m.finished, m.fingerprint) for m in manifests],
            "versions": ", ".join(f"{k} {v}" for k, v in manifests[0].versions.items())}


SECTION = Section("stages", "Stages", "stages.html.j2", (), context)
