"""How fast a mistake in a config is reported, side by side with starting Python at all.

    python bench/config_errors.py [--repeats 5]

Runs ``python -m study run --config BAD.toml`` for three kinds of mistake (an unknown key,
a Literal typo, a value out of range) and ``python -c pass``, each ``--repeats`` times in
turn, and prints the median wall times and their ratio. The command line reads and checks
the whole config before it imports torch, transformers, TRL or SAE-Lens (target: under 2 s).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MISTAKES = {
    "unknown key": '[pretrain]\nlr = 1e-3\n',
    "Literal typo": '[policy]\nalgorithm = "ppo"\n',
    "bad value": '[pretrain]\nmax_steps = 0\n',
}


def wall(command: list[str]) -> tuple[float, int]:
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    return time.perf_counter() - started, done.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="runs of each command (default 5)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        commands = {"python -c pass": [sys.executable, "-c", "pass"]}
        for name, text in MISTAKES.items():
            path = Path(tmp) / f"{name.replace(' ', '_')}.toml"
            path.write_text(f'name = "bench"\n{text}')
            commands[name] = [sys.executable, "-m", "study", "run", "--config", str(path), "--runs-dir", tmp]
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.repeats):
            for name, command in commands.items():
                seconds, code = wall(command)
                if name in MISTAKES and code != 2:
                    sys.exit(f"error: {name}: expected exit status 2, got {code}")
                times[name].append(seconds)
    floor = statistics.median(times["python -c pass"])
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:<16} {median:6.3f} s   {median / floor:5.1f}x python -c pass   {'PASS' if median < 2 else 'FAIL'} (< 2 s)")


if __name__ == "__main__":
    main()
