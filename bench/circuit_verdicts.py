"""Does the circuits verdict hold for every policy? The circuits stage's numbers, read from several studies whose
policies differ (training seeds), side by side: per study the mean ± standard deviation over its dictionary seeds,
and whether the scientific goal (at most 30 latents carrying half of G, recovered and removed) holds on each.

    .venv/bin/python bench/circuit_verdicts.py --run-dir runs/policy-seeds/ours-s0-t2 \
        --run-dir runs/policy-seeds/ours-s1-t2 --run-dir runs/policy-seeds/ours-s2-t2 --out bench/results/circuit_verdicts.md

Each run directory needs the circuits stage done (the residual stream cached at every layer:
``activations.extra_hooks = ["blocks.{layer}.hook_resid_post"]``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from analysis.results import CircuitsResult
from rlhf.errors import UserError
from rlhf.rundir import RunDir, atomic_write_text
from study.report.sections.reward_attribution import GOAL, reaches

GOAL_BUDGET = 30


def pm(values: list[float]) -> str:
    v = np.asarray(values, dtype=float)
    return f"{v.mean():.2f} ± {v.std():.2f}"


def rows(result: CircuitsResult) -> dict[str, str]:
    """One study's row: each figure as mean ± spread over its dictionary seeds."""
    seeds, budgets = result.seeds, result.budgets

    def at(key: str, budget: int) -> list[float]:
        return [getattr(s, key)[budgets.index(budget)] for s in seeds]

    out = {"G": f"{np.mean([s.gain for s in seeds]):.2f}",
           "largest exactness error": f"{max(max(abs(s.all_nodes - 1), abs(s.empty)) for s in seeds):.1e}"}
    for budget in (b for b in (10, 30, 100) if b in budgets):
        out[f"{budget} nodes: recovered / removed"] = f"{pm(at('faithfulness', budget))} / {pm(at('completeness', budget))}"
        out[f"{budget} latents alone"] = f"{pm(at('latents_faithfulness', budget))} / {pm(at('latents_completeness', budget))}"
    if GOAL_BUDGET in budgets:
        f, c = at("latents_faithfulness", GOAL_BUDGET), at("latents_completeness", GOAL_BUDGET)
        out["goal: recovered >= 0.5"], out["goal: removed >= 0.5"] = reaches(f, GOAL), reaches(c, GOAL)
    out["error nodes alone"] = f"{pm([s.errors_faithfulness for s in seeds])} / {pm([s.errors_completeness for s in seeds])}"
    out["readout"] = pm([s.readout for s in seeds])
    out["ranked by"] = ", ".join(sorted({s.estimator for s in seeds}))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", action="append", required=True, help="a study with the circuits stage done; repeat")
    parser.add_argument("--out", type=Path, help="also write the table as markdown here")
    args = parser.parse_args()
    try:
        table = {Path(d).name: rows(CircuitsResult.load(RunDir(Path(d)))) for d in args.run_dir}
    except UserError as err:
        sys.exit(f"error: {err}")
    names = list(table)
    keys = list(next(iter(table.values())))
    lines = ["| | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    lines += [f"| {k} | " + " | ".join(table[n].get(k, "-") for n in names) + " |" for k in keys]
    text = "\n".join(lines)
    print(text)
    if args.out:
        atomic_write_text(args.out, f"# Circuits over policy seeds\n\nFractions of G as recovered / removed, mean ± "
                                    f"standard deviation over each study's dictionary seeds.\n\n{text}\n")


if __name__ == "__main__":
    main()
