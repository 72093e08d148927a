"""Activation caching with one process against two processes of an accelerate launch, side by side.

    .venv/bin/python bench/caching_processes.py --run-dir runs/sentiment

Copies a finished study's models and corpus to a scratch directory and re-runs only its
activations stage there (``--force activations --until activations``), alternately with
one process and with two (``accelerate launch --multi_gpu --num_processes 2``: on a machine
without a GPU, two CPU processes joined by gloo, one thread each, against one process with
all threads). The stage's own wall time from its manifest is compared (median of the
repeats), and the two caches are checked to be identical shard for shard. On N GPUs the
same launch caches N shards at a time; on a two-core CPU the processes share the cores
the single process already used, so the ratio shows the overhead of the split.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file

from rlhf.rundir import RunDir, read_json
from study.config import load_config

ROOT = Path(__file__).resolve().parents[1]


def run(config: Path, runs: Path, processes: int) -> float:
    study = ["-m", "study", "run", "--config", str(config), "--runs-dir", str(runs), "--force", "activations",
             "--until", "activations"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    if processes == 1:
        cmd = [sys.executable, *study]
    else:
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or processes) // processes))
        cmd = [str(Path(sys.executable).with_name("accelerate")), "launch", "--multi_gpu", "--num_processes",
               str(processes), "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", *study]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode:
        sys.exit(f"error: the {processes}-process run failed:\n{done.stderr[-2000:]}")
    manifest = next(runs.glob("*/manifests/activations.json"))
    return read_json(manifest)["seconds"]


def same_cache(a: Path, b: Path) -> bool:
    files = sorted(p.relative_to(a) for p in a.rglob("*.safetensors"))
    return bool(files) and all(
        all(torch.equal(x, load_file(str(b / f))[k]) for k, x in load_file(str(a / f)).items()) for f in files)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", default="runs/sentiment", help="a finished study (default runs/sentiment)")
    parser.add_argument("--config", default="configs/sentiment.toml", help="the config it was run with (default the demo's)")
    parser.add_argument("--repeats", type=int, default=2, help="alternating repetitions (default 2)")
    parser.add_argument("--processes", type=int, default=2, help="processes of the launched run (default 2)")
    args = parser.parse_args()
    source = Path(args.run_dir)
    if not RunDir(source).activations_index.exists():
        sys.exit(f"error: {source} has no finished activation cache (run bash scripts/study.sh first)")
    config = Path(args.config).resolve()
    if load_config(config).name != source.name:
        sys.exit(f"error: {args.config} names study {load_config(config).name!r}, not {source.name!r}; pass its config")
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        times: dict[int, list[float]] = {1: [], args.processes: []}
        caches = {}
        for _ in range(args.repeats):
            for processes in times:
                runs = scratch / f"p{processes}"
                if not runs.exists():
                    runs.mkdir()
                    shutil.copytree(source, runs / source.name, ignore=shutil.ignore_patterns("activations", "saes",
                                                                                             "model_diffing", "report"))
                times[processes].append(run(config, runs, processes))
                caches[processes] = RunDir(runs / source.name).activations_root
        one, many = statistics.median(times[1]), statistics.median(times[args.processes])
        print(f"activations stage, {os.cpu_count()} CPU cores, torch {torch.__version__}")
        print(f"  1 process:    {one:7.1f} s  (runs: {', '.join(f'{t:.1f}' for t in times[1])})")
        print(f"  {args.processes} processes:  {many:7.1f} s  (runs: {', '.join(f'{t:.1f}' for t in times[args.processes])})")
        print(f"  speed-up {one / many:.2f}x; caches identical: {same_cache(caches[1], caches[args.processes])}")


if __name__ == "__main__":
    main()
