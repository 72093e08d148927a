"""The corpus stage's result (``corpus/stats.json``)."""

from __future__ import annotations

from dataclasses import dataclass

from rlhf.artifact import Artifact


@dataclass(frozen=True)
class SplitStats:
    reviews: int
    tokens: int
    positive_share: float | None = None
    entropy_floor: float | None = None  # exact entropy of the generator per predicted token (organism only)


@dataclass(frozen=True)
class CorpusResult(Artifact):
    """``corpus/stats.json``: where the texts came from and how many there are."""

    source: str  # "organism" or the dataset's path
    vocabulary_size: int
    train: SplitStats
    val: SplitStats
    test: SplitStats

    DIR, FILE = "corpus", "stats.json"

    @property
    def splits(self) -> dict[str, SplitStats]:
        return {"train": self.train, "val": self.val, "test": self.test}
