"""What a report section is: a template, the result types it reads, and one function
from those results to the template's context."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from markupsafe import Markup

from rlhf.artifact import Artifact
from rlhf.rundir import RunDir
from study.report.page import render


@dataclass(frozen=True)
class Section:
    anchor: str
    title: str
    template: str  # under study/report/templates/
    # The results ``context`` takes, in order. The section is left out when the first is
    # missing; any later one that is missing is passed as None.
    results: tuple[type[Artifact], ...]
    # (run, *results) -> the template's context. Its "summary" entry (key -> number) goes to
    # summary.json and the summary table; the run directory is there for figures only.
    context: Callable[..., dict[str, Any]]
    # summary key -> what a reader sees in the summary table (keys not listed show as they are)
    labels: dict[str, str] = field(default_factory=dict)

    def render(self, run: RunDir) -> tuple[Markup, dict[str, Any]] | None:
        loaded = [kind.load_if_exists(run) for kind in self.results]
        if loaded and loaded[0] is None:
            return None
        context = self.context(run, *loaded)
        if context is None:
            return None
        summary = context.pop("summary", {})
        return render(self.template, **context), summary
