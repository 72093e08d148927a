"""End-to-end wall time of a finished study, stage by stage, from its manifests.

    .venv/bin/python bench/stages.py --run-dir runs/sentiment

Each stage records its own wall time when it finishes; this prints them in pipeline
order with each stage's share of the total, so the slow stages stand out whatever the
machine's speed.
"""

from __future__ import annotations

import argparse
import sys

from rlhf.rundir import RunDir
from study.pipeline import status


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", default="runs/sentiment", help="a finished study (default runs/sentiment)")
    args = parser.parse_args()
    rows = [r for r in status(RunDir(args.run_dir)) if r.get("seconds") is not None]
    if not rows:
        sys.exit(f"error: {args.run_dir} has no finished stage (run bash scripts/study.sh first)")
    total = sum(r["seconds"] for r in rows)
    print(f"{'stage':<16} {'seconds':>9} {'share':>7}")
    for r in rows:
        print(f"{r['stage']:<16} {r['seconds']:9.1f} {r['seconds'] / total:7.1%}")
    print(f"{'total':<16} {total:9.1f} {1:7.0%}")


if __name__ == "__main__":
    main()
