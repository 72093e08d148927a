"""Do two runs of model diffing agree? Prints each run's leaderboard per score and every pair of
methods that one run ranks one way and the other the opposite way (where both runs' intervals separate).

    .venv/bin/python bench/leaderboards.py --run-dir runs/sentiment --run-dir rerun/sentiment

Run the second with other dictionary seeds (``model_diffing.seeds``). Pairs that one run separates
and the other cannot are not reversals: the second run only resolves less.
"""

from __future__ import annotations

import argparse
import itertools
import sys

from analysis.results import ModelDiffingResult, splice_score
from rlhf.errors import UserError
from rlhf.rundir import RunDir
from study.report.sections.model_diffing import label, leaderboard

SCORES = (splice_score(10, "recovered"), splice_score(30, "recovered"), splice_score(10, "removed"), "precision",
          "mean_abs_corr")


def tier_of(tiers: list[list[str]]) -> dict[str, int]:
    return {m: i for i, tier in enumerate(tiers) for m in tier}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", action="append", required=True, help="a study with model diffing done; give two")
    args = parser.parse_args()
    try:
        if len(args.run_dir) != 2:
            raise UserError("give exactly two --run-dir")
        runs = [ModelDiffingResult.load(RunDir(d)) for d in args.run_dir]
    except UserError as err:
        sys.exit(f"error: {err}")
    reversals = 0
    for key in SCORES:
        boards = [leaderboard({m: v[key] for m, v in r.summary.items() if key in v}) for r in runs]
        print(f"{key}:")
        for r, board in zip(runs, boards):
            print(f"  seeds {list(r.seeds)}: " + " > ".join(" ≈ ".join(label(m) for m in tier) for tier in board))
        first, second = (tier_of(b) for b in boards)
        for a, b in itertools.combinations(sorted(set(first) & set(second)), 2):
            if (first[a] - first[b]) * (second[a] - second[b]) < 0:
                reversals += 1
                print(f"  REVERSED: {label(a)} vs {label(b)}")
    print(f"pairs ranked one way by one run and the other way by the other: {reversals}")


if __name__ == "__main__":
    main()
