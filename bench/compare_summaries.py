"""Compare the report summaries of several runs of the same study side by side.

    python bench/compare_summaries.py runs/a/report/summary.json runs/b/report/summary.json [...]

Prints every key with each run's value, marks the keys whose values are bit-identical in
all runs, and for numbers the spread (max - min) across runs. Used to tell a change that
moved a result from the run-to-run spread (threads, sampling, ordering).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

SKIP = ("built",)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("summaries", nargs="+", type=Path, help="report/summary.json files of the runs to compare")
    args = parser.parse_args()
    runs = [json.loads(p.read_text()) for p in args.summaries]
    keys = [k for k in dict.fromkeys(k for r in runs for k in r) if k not in SKIP]
    identical, differ = 0, 0
    print(f"{'key':<44} {'same':<5} {'spread':>10}  values")
    for key in keys:
        values = [r.get(key, "(absent)") for r in runs]
        same = all(v == values[0] for v in values)
        identical += same
        differ += not same
        numbers = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
        spread = f"{max(numbers) - min(numbers):.4g}" if len(numbers) == len(values) else "-"
        shown = "  ".join(f"{v:.6g}" if isinstance(v, float) else str(v) for v in values)
        print(f"{key:<44} {'yes' if same else 'no':<5} {spread:>10}  {shown}")
    print(f"{identical} keys identical in all {len(runs)} runs, {differ} differ")


if __name__ == "__main__":
    main()
