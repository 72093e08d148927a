"""A stage that exists only for the tests: the corpus's most frequent words. Registering it (one
``study.stages.register`` line) is all a new stage takes: its config section is ``[word_count]``,
the pipeline runs, skips and fingerprints it like any other, and the report shows its section."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlhf.artifact import Artifact
from rlhf.configtypes import PositiveInt
from rlhf.rundir import RunDir
from study.report.section import Section
from study.stages import Stage


@dataclass(frozen=True)
class WordCountConfig:
    enabled: bool = True
    top: PositiveInt = 5


@dataclass(frozen=True)
class WordCountResult(Artifact):
    words: tuple[str, ...]
    counts: tuple[int, ...]

    @classmethod
    def path(cls, run: RunDir) -> Path:
        return run.stage_dir("word_count") / "words.json"


def word_count_stage(cfg: WordCountConfig, run_dir: RunDir) -> WordCountResult:
    common = Counter(w for text in run_dir.texts("train") for w in text.split()).most_common(cfg.top)
    result = WordCountResult(tuple(w for w, _ in common), tuple(c for _, c in common))
    result.save(run_dir)
    return result


def context(run: RunDir, result: WordCountResult) -> dict[str, Any]:
    return {"text": "The corpus's most frequent words.", "header": ("word", "count"),
            "rows": list(zip(result.words, result.counts)), "summary": {"most_frequent_word": result.words[0]}}


SECTION = Section("word_count", "Word count (example stage)", "table.html.j2", (WordCountResult,), context)
STAGE = Stage("word_count", ("corpus",), "tests.stage_example:word_count_stage", lambda r: (WordCountResult.path(r),),
              config=WordCountConfig, report="tests.stage_example:SECTION")
