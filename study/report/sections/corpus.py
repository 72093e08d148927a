"""Corpus: where the texts came from, their sizes, and the organism's entropy floor."""

from __future__ import annotations

from typing import Any

from rlhf.results import CorpusResult
from rlhf.rundir import RunDir
from study.report.section import Section


def context(run: RunDir, corpus: CorpusResult) -> dict[str, Any]:
    organism = corpus.source == "organism"
    if organism:
        rows = [(n, s.reviews, s.tokens, s.positive_share, s.entropy_floor) for n, s in corpus.splits.items()]
        header = ("split", "reviews", "tokens", "positive share", "entropy floor (nats/token)")
    else:
        rows = [(n, s.reviews, s.tokens) for n, s in corpus.splits.items()]
        header = ("split", "texts", "words")
    summary: dict[str, Any] = {"vocabulary_size": corpus.vocabulary_size}
    if organism:
        summary["entropy_floor"] = corpus.test.entropy_floor
    return {"corpus": corpus, "organism": organism, "rows": rows, "header": header,
            "samples": "\n".join(run.texts("test")[:6]), "summary": summary}


SECTION = Section(
    "corpus", "Corpus: the sentiment model organism", "corpus.html.j2", (CorpusResult,), context,
    labels={"vocabulary_size": "corpus vocabulary (words)",
            "entropy_floor": "entropy floor of the generator (nats/token)"},
)
