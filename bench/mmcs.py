"""MMCS between wide dictionaries: time and peak extra memory, max vs Hungarian matching.

    .venv/bin/python bench/mmcs.py [--widths 1024,4096,16384] [--hungarian-up-to 4096]

Each case runs in a fresh process on random unit decoder rows (n, 2n features at
d = 512). Peak extra memory = the process's peak resident set while matching minus its
resident set once the inputs exist (Linux: VmHWM is reset through /proc/self/clear_refs
first). The max variant is chunked and must stay under 1 GB at 16k x 32k; the
Hungarian variant needs the whole cosine matrix (scipy), so it is shown at the widths
where it still fits, to show how it grows.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

LIMIT_MB = 1024


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status (this benchmark needs Linux)")


def measure(matching: str, n: int, d: int) -> dict:
    import torch

    from analysis.mmcs import mmcs

    torch.manual_seed(0)
    small, big = torch.randn(n, d), torch.randn(2 * n, d)
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak resident set to the current one
    baseline = _status_kb("VmRSS")
    started = time.perf_counter()
    value = mmcs(small, big, matching=matching)
    seconds = time.perf_counter() - started
    return {"matching": matching, "features": f"{n} x {2 * n}", "d": d, "mmcs": value, "seconds": seconds,
            "peak_extra_mb": (_status_kb("VmHWM") - baseline) / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--widths", default="1024,4096,16384", help="small-dictionary widths n (the big one has 2n)")
    parser.add_argument("--hungarian-up-to", type=int, default=4096, help="largest n for the Hungarian variant")
    parser.add_argument("--d", type=int, default=512, help="activation dimension (default 512)")
    parser.add_argument("--case", nargs=2, metavar=("MATCHING", "N"), help=argparse.SUPPRESS)  # one child process
    args = parser.parse_args()
    if args.case:
        print(json.dumps(measure(args.case[0], int(args.case[1]), args.d)))
        return
    rows = []
    for n in (int(w) for w in args.widths.split(",")):
        for matching in ("max", "hungarian"):
            if matching == "hungarian" and n > args.hungarian_up_to:
                continue
            out = subprocess.run([sys.executable, __file__, "--case", matching, str(n), "--d", str(args.d)],
                                 capture_output=True, text=True, check=True)
            rows.append(json.loads(out.stdout))
            r = rows[-1]
            print(f"{r['matching']:>9}  {r['features']:>13}  d={r['d']}  {r['seconds']:8.2f} s  "
                  f"peak extra {r['peak_extra_mb']:8.1f} MB  mmcs {r['mmcs']:.3f}", flush=True)
    for r in rows:
        if r["matching"] == "max" and r["features"].startswith(str(max(int(w) for w in args.widths.split(",")))):
            verdict = "PASS" if r["peak_extra_mb"] <= LIMIT_MB else "FAIL"
            print(f"widest max-MMCS: {r['peak_extra_mb']:.0f} MB extra (limit {LIMIT_MB} MB): {verdict}")
    by = {(r["matching"], r["features"]): r for r in rows}
    for (matching, features), r in by.items():
        if matching == "hungarian":
            m = by[("max", features)]
            print(f"Hungarian / max at {features}: time x{r['seconds'] / m['seconds']:.1f}, "
                  f"memory x{r['peak_extra_mb'] / max(m['peak_extra_mb'], 1e-3):.1f}")


if __name__ == "__main__":
    main()
