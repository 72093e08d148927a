"""Token contexts from an activation cache: which texts a feature fires on, and where.

A cached hook stores its tokens and their positions in order, text after text (padding
and BOS dropped), so the texts can be cut back out of it without re-running a model.
Feature cards and automated interpretability both show windows of these texts.
"""

from __future__ import annotations

import random
from collections.abc import Set
from dataclasses import dataclass
from pathlib import Path

import torch
from jaxtyping import Float, Int
from safetensors.torch import load_file
from torch import Tensor
from transformers import PreTrainedTokenizerBase

from analysis.results import CachedHook


@dataclass(frozen=True)
class CachedText:
    tokens: Int[Tensor, " n"]
    spans: list[tuple[int, int]]  # [start, end) of each text within ``tokens``

    @property
    def text_of(self) -> Int[Tensor, " n"]:
        """The index of the text each token belongs to."""
        return torch.repeat_interleave(torch.arange(len(self.spans)), torch.tensor([e - s for s, e in self.spans]))


def text_spans(positions: Int[Tensor, " n"]) -> list[tuple[int, int]]:
    """[start, end) of each text in a cache: positions restart at every new text."""
    starts = [0, *(torch.nonzero(positions[1:] <= positions[:-1])[:, 0] + 1).tolist(), len(positions)]
    return list(zip(starts[:-1], starts[1:]))


def load_cached_text(directory: Path) -> CachedText:
    """The tokens of a cached hook split (``activations/<model>/<hook>/<split>``) and its texts."""
    shards = [load_file(str(directory / name)) for name in CachedHook.read(directory).shards]
    tokens, positions = torch.cat([s["tokens"] for s in shards]), torch.cat([s["positions"] for s in shards])
    return CachedText(tokens, text_spans(positions))


def top_windows(values: Float[Tensor, " n"], text: CachedText, n: int, before: int, after: int) -> list[tuple[int, int]]:
    """Windows [lo, hi) around the strongest activation of the ``n`` texts where ``values`` peaks
    highest (texts where it never exceeds 0 are left out)."""
    peak = torch.zeros(len(text.spans)).scatter_reduce(0, text.text_of, values, reduce="amax")
    out = []
    for t in torch.argsort(peak, descending=True)[:n].tolist():
        if peak[t] <= 0:
            break
        start, end = text.spans[t]
        at = start + int(values[start:end].argmax())
        out.append((max(start, at - before), min(end, at + after + 1)))
    return out


def random_windows(text: CachedText, n: int, length: int, seed: int, exclude: Set[int] = frozenset()) -> list[tuple[int, int]]:
    """``n`` windows of up to ``length`` tokens from random texts not in ``exclude``."""
    rng = random.Random(seed)
    candidates = [t for t in range(len(text.spans)) if t not in exclude]
    out = []
    for t in rng.sample(candidates, min(n, len(candidates))):
        start, end = text.spans[t]
        lo = rng.randrange(start, max(start + 1, end - length + 1))
        out.append((lo, min(end, lo + length)))
    return out


def display_tokens(tokenizer: PreTrainedTokenizerBase, ids: list[int]) -> list[str]:
    """One printable string per token; word-level vocabularies get the spaces that decoding adds between words."""
    strings = [tokenizer.decode([i]) for i in ids]
    if len(ids) > 1 and " " in tokenizer.decode(ids[:2]) and " " not in "".join(strings[:2]):
        strings = [strings[0], *(" " + t for t in strings[1:])]
    return strings
