"""The crosscoder's training recipe on a finished study's cached activations: dead latents, variance
explained per model and relative decoder norms on held-out tokens, per layer and training seed.

    .venv/bin/python bench/crosscoder.py [--run-dir runs/sentiment] [--layers 0,1,2,3] [--seeds 0,1]
        [--set expansion=4 --set k=16 ...] [--plots DIR]

Trains on the ``train`` split through ``paired_stream`` (as the model_diffing stage does) with
``CrosscoderConfig``'s defaults, overridden by ``--set``, and measures on the ``val`` split. Dead: never
fires on the held-out tokens. Relative norm statistics are over latents that fire there. One JSON line
per (layer, seed), then a summary line; ``--plots`` writes ``plot_relative_norms`` per layer.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import torch

from analysis.activations import load_shards
from analysis.crosscoder import (
    CrosscoderConfig,
    decoder_cosines,
    evaluate,
    paired_stream,
    plot_relative_norms,
    relative_norms,
    train_crosscoder,
)
from rlhf.rundir import RunDir


def _override(cfg: CrosscoderConfig, pairs: list[str]) -> CrosscoderConfig:
    fields = {f.name: f for f in dataclasses.fields(cfg)}
    values = {}
    for pair in pairs:
        name, value = pair.split("=", 1)
        if name not in fields:
            raise SystemExit(f"--set {pair}: CrosscoderConfig has no field {name!r}")
        default = getattr(cfg, name)
        values[name] = value.lower() in ("1", "true") if isinstance(default, bool) else type(default)(value)
    return dataclasses.replace(cfg, **values)


def measure(run: RunDir, layer: int, seed: int, cfg: CrosscoderConfig) -> tuple[dict, list[float]]:
    hook = f"blocks.{layer}.hook_mlp_out"
    cfg = dataclasses.replace(cfg, seed=seed)
    start = time.perf_counter()
    model = train_crosscoder(cfg, paired_stream([run.activations(m, hook, "train") for m in ("base", "policy")],
                                                cfg.batch_size, seed), [0, 1], [0, 1], progress=hook)
    seconds = time.perf_counter() - start
    held = torch.stack([torch.cat(list(load_shards(run.activations(m, hook, "val")))) for m in ("base", "policy")], 1)
    metrics = evaluate(model, [held[i : i + 4096] for i in range(0, len(held), 4096)], [0, 1], [0, 1])
    live = metrics.firing_frequency > 0
    rel, cos = relative_norms(model).detach()[live], decoder_cosines(model).detach()[live]
    quantiles = torch.quantile(rel, torch.tensor([0.05, 0.25, 0.5, 0.75, 0.95])).tolist()
    return {
        "layer": layer, "seed": seed, "train_s": round(seconds, 1), "held_out_tokens": len(held),
        "n_latents": model.n_latents, "dead_fraction": round(metrics.dead_fraction, 4),
        "fve_base": round(metrics.explained_variance[0], 4), "fve_policy": round(metrics.explained_variance[1], 4),
        "l0": round(metrics.l0, 2), "relative_norm_q05_q25_q50_q75_q95": [round(q, 3) for q in quantiles],
        "shared_0.3-0.7": round(float(((rel > 0.3) & (rel < 0.7)).float().mean()), 3),
        "policy_leaning_gt_0.7": int((rel > 0.7).sum()), "policy_only_gt_0.9": int((rel > 0.9).sum()),
        "base_leaning_lt_0.3": int((rel < 0.3).sum()), "base_only_lt_0.1": int((rel < 0.1).sum()),
        "decoder_cosine_median": round(float(cos.median()), 3),
    }, rel.tolist()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", default="runs/sentiment")
    parser.add_argument("--layers", default="0,1,2,3")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE")
    parser.add_argument("--plots", type=Path)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (2 on 2 busy cores can be 10x slower)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    run, cfg = RunDir(args.run_dir), _override(CrosscoderConfig(), args.set)
    print(json.dumps({"config": dataclasses.asdict(cfg)}), flush=True)
    rows = []
    for layer in map(int, args.layers.split(",")):
        norms = {}
        for seed in map(int, args.seeds.split(",")):
            row, norms[f"seed {seed}"] = measure(run, layer, seed, cfg)
            rows.append(row)
            print(json.dumps(row), flush=True)
        if args.plots:
            plot_relative_norms(args.plots / f"relative_norms_layer{layer}.png", norms,
                                title=f"crosscoder relative decoder norms, blocks.{layer}.hook_mlp_out", threshold=0.7)
    print(json.dumps({"max_dead_fraction": max(r["dead_fraction"] for r in rows),
                      "min_fve": min(min(r["fve_base"], r["fve_policy"]) for r in rows),
                      "mean_train_s": round(sum(r["train_s"] for r in rows) / len(rows), 1)}), flush=True)


if __name__ == "__main__":
    main()
