"""End-to-end wall time of finished studies, stage by stage, from their manifests.

    .venv/bin/python bench/stages.py --run-dir runs/sentiment
    .venv/bin/python bench/stages.py --run-dir before/sentiment --run-dir runs/sentiment
    .venv/bin/python bench/stages.py --zoo runs/zoo

Each stage records its own wall time when it finishes; this prints them in pipeline
order with each stage's share of the total, so the slow stages stand out whatever the
machine's speed. With two run directories (e.g. before and after a change, run on the same
machine) it prints both and each stage's ratio, the second over the first. With ``--zoo`` it prints each
of a zoo's runs (the shared base, then each organism) stage by stage and the zoo's total (target: 30 minutes
on two cores).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rlhf.errors import UserError
from rlhf.rundir import RunDir
from study.pipeline import status
from study.stages import STAGES


def seconds(run_dir: str) -> dict[str, float]:
    """Finished stage -> its wall time in seconds."""
    return {name: m.seconds for name, m, _ in status(RunDir(run_dir)) if m is not None}


def zoo(root: Path) -> None:
    """Each run of the zoo at ``root``, its stages' seconds, and the zoo's total."""
    runs = {p.parent.parent.name: seconds(str(p.parent.parent)) for p in sorted(root.glob("*/manifests/*.json"))}
    runs = {name: runs[name] for name in sorted(runs, key=lambda n: n != "base")}
    if not any(runs.values()):
        sys.exit(f"error: {root} holds no finished zoo run (run python -m study zoo first)")
    for name, stages in runs.items():
        shown = ", ".join(f"{stage} {t:.0f}" for stage, t in stages.items())
        print(f"{name:<10} {sum(stages.values()):7.1f} s  ({shown})")
    total = sum(sum(r.values()) for r in runs.values())
    print(f"{'zoo':<10} {total:7.1f} s = {total / 60:.1f} min (target <= 30 min on two cores)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", action="append", help="a finished study (default runs/sentiment); give two to compare")
    parser.add_argument("--zoo", type=Path, help="a zoo's directory (runs/zoo): each of its runs and the zoo's total")
    args = parser.parse_args()
    if args.zoo:
        return zoo(args.zoo)
    dirs = args.run_dir or ["runs/sentiment"]
    if len(dirs) > 2:
        sys.exit("error: give one run directory, or two to compare")
    try:
        runs = [seconds(d) for d in dirs]
    except UserError as err:
        sys.exit(f"error: {err}")
    if not any(runs):
        sys.exit(f"error: {', '.join(dirs)} has no finished stage (run bash scripts/study.sh first)")
    names = [s.name for s in STAGES if any(s.name in r for r in runs)]
    totals = [sum(r.values()) for r in runs]
    header = f"{'stage':<20}" + "".join(f" {'seconds':>9} {'share':>7}" for _ in runs) + (f" {'ratio':>7}" if len(runs) == 2 else "")
    print(header)
    for name in names:
        cells = "".join(f" {r[name]:9.1f} {r[name] / t:7.1%}" if name in r else f" {'-':>9} {'-':>7}" for r, t in zip(runs, totals))
        ratio = f" {runs[1][name] / runs[0][name]:7.2f}" if len(runs) == 2 and name in runs[0] and name in runs[1] else ""
        print(f"{name:<20}{cells}{ratio}")
    ratio = f" {totals[1] / totals[0]:7.2f}" if len(runs) == 2 else ""
    print(f"{'total':<20}" + "".join(f" {t:9.1f} {1:7.0%}" for t in totals) + ratio)


if __name__ == "__main__":
    main()
