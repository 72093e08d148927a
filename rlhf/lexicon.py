"""The VADER lexicon as shipped inside the installed vaderSentiment package.

Each entry keeps its ten individual human ratings, which later stages use as real
annotator disagreement (hidden context for distributional reward models).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

WORD_RE = re.compile(r"[a-z']+")


@dataclass(frozen=True)
class LexiconEntry:
    word: str
    valence: float
    std: float
    ratings: tuple[int, ...]


@lru_cache(maxsize=1)
def load_lexicon() -> dict[str, LexiconEntry]:
    """All lexicon entries keyed by token (emoticons included)."""
    text = resources.files("vaderSentiment").joinpath("vader_lexicon.txt").read_text(encoding="utf-8")
    entries: dict[str, LexiconEntry] = {}
    for line in text.splitlines():
        parts = line.strip().split("\t")
        if len(parts) < 4:
            continue
        # The ratings are a bracketed list of ints. Parsed by hand: ast.literal_eval is not safe to
        # call from several threads at once in CPython 3.11 (SystemError), and autointerp scores in threads.
        word, mean, std, ratings = parts[0], float(parts[1]), float(parts[2]), parts[3].strip().strip("[]")
        entries[word] = LexiconEntry(word, mean, std, tuple(int(r) for r in ratings.split(",")))
    return entries


def valence(word: str) -> float:
    """VADER mean valence of a lowercase word, 0.0 when it is not in the lexicon."""
    entry = load_lexicon().get(word)
    return entry.valence if entry else 0.0


def token_valence(token: str) -> float:
    """A tokenizer's token's valence: its word without the byte-level BPE or SentencePiece space marker."""
    return valence(token.lower().lstrip("Ġ▁"))


def words_of(text: str) -> list[str]:
    """Lowercase words (letters and apostrophes): the paper's tokenisation for the reward."""
    return WORD_RE.findall(text.lower())
