"""The digits organism: the minimal-RLHF digit language, with an exact likelihood.

A sequence is 4 input digits, a separator, then output digits. Each output digit is the
increment (mod 10) of one of the last four digits of the whole sequence so far (inputs
and earlier outputs, the separator not counted), chosen uniformly. The preference to
teach by RLHF: the first output digit should be the increment of the *last input*
digit; the rest should keep following the rule. The base rule already meets the
preference when it happens to pick the last input digit (one time in four, more when
that digit repeats), so its rate is known exactly.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from pathlib import Path

from rlhf.config import DigitsConfig  # noqa: F401  (re-exported: callers import it from here)
from rlhf.results import CorpusResult, SplitStats
from rlhf.rundir import atomic_write_text, split_file

SEPARATOR = "|"
DIGITS = tuple(str(d) for d in range(10))
WINDOW = 4


@dataclass(frozen=True)
class DigitsSequence:
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]

    @property
    def prompt(self) -> str:
        return " ".join(map(str, self.inputs)) + f" {SEPARATOR}"

    @property
    def completion(self) -> str:
        return " ".join(map(str, self.outputs))

    @property
    def text(self) -> str:
        return f"{self.prompt} {self.completion}"


def choices(history: tuple[int, ...]) -> list[int]:
    """The four candidates for the next output digit (with repeats): each of the last four digits, plus one."""
    return [(d + 1) % 10 for d in history[-WINDOW:]]


def preferred_first(inputs: tuple[int, ...]) -> int:
    return (inputs[-1] + 1) % 10


@dataclass
class DigitsOrganism:
    cfg: DigitsConfig = field(default_factory=DigitsConfig)

    def continue_from(self, inputs: tuple[int, ...], first: list[int], rng: random.Random) -> tuple[int, ...]:
        """Outputs that start with ``first`` and follow the rule after it."""
        outputs = list(first)
        while len(outputs) < self.cfg.n_output:
            outputs.append(rng.choice(choices(inputs + tuple(outputs))))
        return tuple(outputs)

    def sample(self, rng: random.Random) -> DigitsSequence:
        inputs = tuple(rng.randrange(10) for _ in range(self.cfg.n_input))
        return DigitsSequence(inputs, self.continue_from(inputs, [], rng))

    def sequences(self, n: int, seed: int) -> list[DigitsSequence]:
        rng = random.Random(seed)
        return [self.sample(rng) for _ in range(n)]

    def log_prob(self, seq: DigitsSequence) -> float:
        """Exact log-probability of the outputs given the inputs (-inf if the rule cannot produce them)."""
        total = 0.0
        for t, y in enumerate(seq.outputs):
            options = choices(seq.inputs + seq.outputs[:t])
            count = options.count(y)
            if count == 0:
                return -math.inf
            total += math.log(count / len(options))
        return total

    def first_correct_rate(self, inputs: tuple[int, ...]) -> float:
        """Probability that the base rule's first output is the preferred one."""
        return choices(inputs).count(preferred_first(inputs)) / WINDOW

    def preference_pairs(self, n: int, seed: int) -> list[dict]:
        """(prompt, chosen, rejected): a sampled output with its first digit replaced, as the minimal-RLHF
        walkthrough does: chosen starts with the preferred digit, rejected with another digit the rule could
        have produced (any other digit when there is none); the digits after the first are the same."""
        rng = random.Random(seed)
        pairs = []
        for _ in range(n):
            base = self.sample(rng)
            good = preferred_first(base.inputs)
            alternatives = sorted(set(choices(base.inputs)) - {good}) or [d for d in range(10) if d != good]
            bad = rng.choice(alternatives)
            chosen = DigitsSequence(base.inputs, (good, *base.outputs[1:]))
            rejected = DigitsSequence(base.inputs, (bad, *base.outputs[1:]))
            pairs.append({"prompt": base.prompt, "chosen": " " + chosen.completion, "rejected": " " + rejected.completion})
        return pairs


def parse_digits(text: str) -> list[int | None]:
    """The digits of a completion as text; anything that is not a digit is None."""
    return [int(w) if w in DIGITS else None for w in text.split()]


def follows_rule(inputs: tuple[int, ...], outputs: list[int | None]) -> list[bool]:
    """Whether each output digit is one the rule could have produced after the ones before it."""
    ok, history = [], tuple(inputs)
    for y in outputs:
        ok.append(y is not None and y in choices(history))
        history = (*history, y if y is not None else -1)
    return ok


def write_corpus(organism: DigitsOrganism, out_dir: Path) -> CorpusResult:
    """Write train/val/test sequences (one per line) and return their statistics with the
    entropy floor: uniform inputs (log 10 each), the exact output likelihood, and a
    separator and end-of-text token that are certain."""
    cfg = organism.cfg
    stats: dict[str, SplitStats] = {}
    for i, (name, n) in enumerate((("train", cfg.n_train), ("val", cfg.n_val), ("test", cfg.n_test))):
        rows = organism.sequences(n, cfg.seed * 1000 + i + 1)
        atomic_write_text(split_file(out_dir, name), "\n".join(r.text for r in rows) + "\n")
        per_row = cfg.n_input + 1 + cfg.n_output + 1
        nll = sum(cfg.n_input * math.log(10) - organism.log_prob(r) for r in rows)
        stats[name] = SplitStats(reviews=n, tokens=n * per_row, positive_share=None, entropy_floor=nll / (n * per_row))
    return CorpusResult(source="digits", vocabulary_size=len(DIGITS) + 1, **stats)
