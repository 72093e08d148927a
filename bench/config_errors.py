"""How fast a mistake is reported, side by side with starting Python at all.

    python bench/config_errors.py [--repeats 5] [--load] [--out bench/results/config_errors.json]

Runs each bad input of issue #29 (an empty corpus file, ``dictionaries.widths = []``,
``divergence.layers = [99]``, a missing reward model directory, a missing reward module, an unknown
study reward, and ``python -m probes.fit_linear_reward`` with a missing run directory or a bad
``--target``), three config mistakes of earlier issues (an unknown key, a Literal typo, a value
out of range) and ``python -c pass``, each ``--repeats`` times in turn, and prints the median wall
times and their ratio. Each must exit 2 with one line on stderr (target: under 2 s). ``--load``
keeps a busy process on the machine meanwhile, as a user's other job would.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rlhf.rundir import atomic_write_json  # noqa: E402

MISTAKES = {
    "unknown key": '[pretrain]\nlr = 1e-3\n',
    "Literal typo": '[policy]\nalgorithm = "ppo"\n',
    "bad value": '[pretrain]\nmax_steps = 0\n',
    "empty corpus file": '[corpus]\nsource = "dataset"\n[corpus.dataset]\npath = "{tmp}/empty.txt"\n',
    "widths = []": '[dictionaries]\nwidths = []\n',
    "layers = [99]": '[divergence]\nlayers = [99]\n',
    "no reward model dir": '[policy]\nreward = "model:/no/such/dir"\n',
    "no reward module": '[policy]\nreward = "python:no_such_module:fn"\n',
    "unknown study reward": '[policy]\nreward = "study:reward_nope"\n',
}
PROBE = {"probe: no run dir": ["--run-dir", "{tmp}/nope"], "probe: bad --target": ["--run-dir", "{tmp}", "--target", "bogus"]}


def wall(command: list[str]) -> tuple[float, int, str]:
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    return time.perf_counter() - started, done.returncode, done.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="runs of each command (default 5)")
    parser.add_argument("--load", action="store_true", help="keep one busy process running meanwhile")
    parser.add_argument("--out", help="also write the medians to this JSON file")
    args = parser.parse_args()
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if args.load else None
    try:
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "empty.txt").write_text("\n")
            commands = {"python -c pass": [sys.executable, "-c", "pass"]}
            for name, text in MISTAKES.items():
                path = Path(tmp) / f"{len(commands)}.toml"
                path.write_text(f'name = "bench"\n{text.replace("{tmp}", tmp)}')
                commands[name] = [sys.executable, "-m", "study", "run", "--config", str(path), "--runs-dir", tmp]
            for name, argv in PROBE.items():
                commands[name] = [sys.executable, "-m", "probes.fit_linear_reward", *(a.replace("{tmp}", tmp) for a in argv)]
            times: dict[str, list[float]] = {name: [] for name in commands}
            for _ in range(args.repeats):
                for name, command in commands.items():
                    seconds, code, err = wall(command)
                    if name != "python -c pass" and (code != 2 or err.count("\n") != 1):
                        sys.exit(f"error: {name}: expected exit status 2 and one line, got {code}: {err[-300:]}")
                    times[name].append(seconds)
    finally:
        if busy:
            busy.kill()
    floor = statistics.median(times["python -c pass"])
    rows = []
    for name, values in times.items():
        median = statistics.median(values)
        rows.append({"input": name, "median_s": median, "over_python": median / floor, "passes": median < 2})
        print(f"{name:<22} {median:6.3f} s   {median / floor:5.1f}x python -c pass   {'PASS' if median < 2 else 'FAIL'} (< 2 s)")
    if args.out:
        atomic_write_json(Path(args.out), {"settings": [f"repeats={args.repeats}", f"load={args.load}"], "runs": rows})


if __name__ == "__main__":
    main()
