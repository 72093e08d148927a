"""What a report section is: a template, the result types it reads, and one function
from those results to the template's context."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from markupsafe import Markup

from rlhf.artifact import Artifact
from rlhf.rundir import RunDir
from study.report.checks import Check
from study.report.page import render


@dataclass(frozen=True)
class Rendered:
    """A section as the page shows it, and what it adds to summary.json and to the first screen."""

    body: Markup
    summary: dict[str, Any]
    checks: list[Check]
    key_figures: list[tuple[Path, str]]  # (figure, alt) pairs that carry the story: shown first
    key_text: list[str]  # one-line verdicts shown on the first screen


@dataclass(frozen=True)
class Section:
    anchor: str
    title: str
    template: str  # under study/report/templates/ (a section that is one table can use table.html.j2)
    # The results ``context`` takes, in order. The section is left out when the first is
    # missing; any later one that is missing is passed as None.
    results: tuple[type[Artifact], ...]
    # (run, *results) -> the template's context. Its "summary" entry (key -> number) goes to
    # summary.json and the summary table, its "checks" entry (a list of Check) to the report's
    # first screen (the template sees the checks too), and its "key_figures" and "key_text"
    # entries to the first screen only. The run directory is there for figures only.
    context: Callable[..., dict[str, Any]]
    # summary key -> what a reader sees in the summary table (keys not listed show as they are)
    labels: dict[str, str] = field(default_factory=dict)
    # The pipeline stages whose artifacts the section shows (it is marked when one is stale);
    # empty: the stage named like the section's anchor.
    stages: tuple[str, ...] = ()

    def render(self, run: RunDir) -> Rendered | None:
        loaded = [kind.load_if_exists(run) for kind in self.results]
        if loaded and loaded[0] is None:
            return None
        context = self.context(run, *loaded)
        if context is None:
            return None
        summary = context.pop("summary", {})
        key_figures, key_text = context.pop("key_figures", []), context.pop("key_text", [])
        return Rendered(render(self.template, **context), summary, context.get("checks", []),
                        [(Path(f), alt) for f, alt in key_figures if Path(f).exists()], key_text)

    @property
    def shows(self) -> tuple[str, ...]:
        return self.stages or (self.anchor,)
