"""The demo's policy trained over seeds, thread counts and bases: does it pass its bars everywhere?

    .venv/bin/python bench/policy_seeds.py --base fresh-machine=../shared/repro/fresh-machine/base \
        --base ours=runs/sentiment/models/base --seeds 0 1 2 --threads 2 1 --vary-threads-on ours

Another machine is another seed: floating-point sums run in another order (fewer threads is a
cheap stand-in) and RL amplifies the difference. Each training is the study's own policy stage
(corpus, tokenizer and pretrain adopt the base; ``--set`` changes the policy, e.g.
``--set policy.kl_target=0`` for a fixed beta), run in a process of its own with
``OMP_NUM_THREADS`` set. Each is scored with the checks the report shows (``policy_passes``).
Finished runs are reused; the table goes to ``--out`` (JSON and Markdown) with the KL curves
of every run in one figure.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

from analysis.results import RewardAttributionResult
from rlhf.results import PolicyResult
from rlhf.rundir import RunDir, atomic_write_json, atomic_write_text
from study.report.checks import groups, policy_checks

STAGES = ["corpus", "tokenizer", "pretrain", "policy"]
# --analyse: the stages whose verdicts rest on the policy (bench/policy_verdicts.py reads them)
ANALYSIS = ["divergence", "activations", "dictionaries", "sae_quality", "model_diffing", "implicit_reward",
            "reward_attribution"]


def _overrides(settings: list[str]) -> dict[str, dict[str, Any]]:
    """``section.key=value`` (TOML values) -> {section: {key: value}}."""
    out: dict[str, dict[str, Any]] = {}
    for item in settings:
        key, _, value = item.partition("=")
        section, _, field = key.partition(".")
        out.setdefault(section, {})[field] = tomllib.loads(f"v = {value}")["v"]
    return out


def train_one(config: str, runs_dir: str, name: str, base: str, seed: int, settings: list[str], analyse: bool) -> None:
    """In this process: the study's stages up to the policy, adopting ``base`` (and the analysis after it)."""
    from study.config import load_config
    from study.pipeline import run_study

    data = tomllib.loads(Path(config).read_text())
    extra = _overrides(settings)
    overrides = {
        "name": name, "runs_dir": runs_dir, "stages": STAGES + (ANALYSIS if analyse else []),
        "tokenizer": data.get("tokenizer", {}) | {"source": base},
        "pretrain": data.get("pretrain", {}) | {"from_model": base},
        "policy": data.get("policy", {}) | extra.pop("policy", {}) | {"seed": seed},
        **{section: data.get(section, {}) | values for section, values in extra.items()},
    }
    run_study(load_config(config, overrides), log=print)


def row(run: RunDir, label: str, seed: int, threads: int) -> dict[str, Any]:
    p = PolicyResult.load(run)
    checks = policy_checks(p)
    return {"base": label, "seed": seed, "threads": threads, "steps": p.steps, "kept_step": p.kept_step,
            "stopped_at_kl_budget": p.stopped_at_kl_budget, "gain": p.reward_gain,
            "kl": p.policy.mean_kl_per_token, "bigrams": p.policy.repeated_bigrams,
            "base_bigrams": p.base.repeated_bigrams, "final_beta": p.final_beta,
            "passes": groups(checks)["policy_passes"], "failed": [c.text() for c in checks if not c.passes],
            "exact_kl": p.curves["exact_kl"], "seconds": p.seconds}


def markdown(rows: list[dict[str, Any]], settings: list[str]) -> str:
    lines = [f"Policy trainings{' with ' + ', '.join(settings) if settings else ''}: bars gain >= 2.0, "
             "KL <= 1.0 nats/token, repeated bigrams <= 2x the base's.", "",
             "| base | seed | threads | steps | kept step | gain | KL | bigrams (base) | final beta | passes |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        beta = f"{r['final_beta']:.3f}" if r["final_beta"] is not None else "-"
        lines.append(f"| {r['base']} | {r['seed']} | {r['threads']} | {r['steps']} | {r['kept_step']} | {r['gain']:.3f} | "
                     f"{r['kl']:.3f} | {r['bigrams']:.4f} ({r['base_bigrams']:.4f}) | {beta} | "
                     f"{'yes' if r['passes'] else 'NO: ' + '; '.join(r['failed'])} |")
    passed = sum(r["passes"] for r in rows)
    lines += ["", f"{passed} of {len(rows)} pass. Gain {min(r['gain'] for r in rows):.2f}-{max(r['gain'] for r in rows):.2f}, "
              f"KL {min(r['kl'] for r in rows):.2f}-{max(r['kl'] for r in rows):.2f}."]
    return "\n".join(lines) + "\n"


def plot(rows: list[dict[str, Any]], out: Path, before: list[dict[str, Any]] | None = None,
         titles: tuple[str, str] = ("before", "after")) -> None:
    """The exact KL curve of every run; with ``before``, those runs in a panel of their own on the left."""
    import matplotlib.pyplot as plt

    from rlhf.plots import save_figure

    panels = [(titles[0], before), (titles[1], rows)] if before else [("", rows)]
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 3.8), dpi=110, sharey=True, squeeze=False)
    for ax, (title, runs) in zip(axes[0], panels):
        for r in runs:
            ax.plot([s for s, _ in r["exact_kl"]], [v for _, v in r["exact_kl"]],
                    label=f"{r['base']} s{r['seed']} t{r['threads']}", linestyle="-" if r["passes"] else "--")
        ax.axhline(1.0, linestyle=":", color="grey")
        ax.set(title=title or "exact KL to the base on held-out prompts", xlabel="step", ylabel="KL (nats/token)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    save_figure(fig, out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/sentiment.toml", help="the study config whose [policy] is trained")
    parser.add_argument("--base", action="append", required=True, metavar="LABEL=DIR",
                        help="a base model directory with its tokenizer, labelled; repeatable")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="[policy] seeds (default 0 1 2)")
    parser.add_argument("--threads", type=int, nargs="+", default=[2], help="thread counts (default 2)")
    parser.add_argument("--vary-threads-on", metavar="LABEL", default="",
                        help="vary the threads on this base only; the others train at the first thread count")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", dest="settings",
                        help="a config value in TOML syntax, e.g. policy.kl_target=0; repeatable")
    parser.add_argument("--runs-dir", default="runs/policy-seeds", help="where the trainings' run directories go")
    parser.add_argument("--out", default="bench/results/policy_seeds", help="output path without suffix (.json, .md, .png)")
    parser.add_argument("--analyse", action="store_true",
                        help="also run divergence, activations, dictionaries, model diffing and reward attribution on "
                             "each policy (about 7 minutes each on two cores), for bench/policy_verdicts.py")
    parser.add_argument("--before", metavar="JSON", help="an earlier output of this script (e.g. with a fixed beta): "
                        "its KL curves are drawn beside these in the figure")
    parser.add_argument("--one", nargs=4, metavar=("NAME", "BASE", "SEED", "THREADS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        name, base, seed, _ = args.one
        train_one(args.config, args.runs_dir, name, base, int(seed), args.settings, args.analyse)
        return
    rows = []
    tag = "-".join(s.replace("policy.", "").replace("=", "") for s in args.settings)
    for item in args.base:
        label, _, base = item.partition("=")
        for threads in args.threads if not args.vary_threads_on or label == args.vary_threads_on else args.threads[:1]:
            for seed in args.seeds:
                name = f"{label}-s{seed}-t{threads}{'-' + tag if tag else ''}"
                run = RunDir(Path(args.runs_dir) / name)
                if not PolicyResult.path(run).exists() or (args.analyse and not RewardAttributionResult.path(run).exists()):
                    env = os.environ | {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
                                        "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
                    print(f"[{name}] training", flush=True)
                    subprocess.run([sys.executable, __file__, "--config", args.config, "--runs-dir", args.runs_dir,
                                    *(x for s in args.settings for x in ("--set", s)),
                                    *(["--analyse"] if args.analyse else []),
                                    "--base", item, "--one", name, base, str(seed), str(threads)],
                                   env=env, check=True, stdout=subprocess.DEVNULL)
                rows.append(row(run, label, seed, threads))
                r = rows[-1]
                print(f"[{name}] steps {r['steps']} (kept {r['kept_step']}), gain {r['gain']:.3f}, KL {r['kl']:.3f}, "
                      f"bigrams {r['bigrams']:.4f} (base {r['base_bigrams']:.4f}): "
                      f"{'PASS' if r['passes'] else 'FAIL'}", flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out.with_suffix(".json"), {"config": args.config, "settings": args.settings, "runs": rows})
    atomic_write_text(out.with_suffix(".md"), markdown(rows, args.settings))
    earlier = json.loads(Path(args.before).read_text()) if args.before else {"runs": None, "settings": []}
    plot(rows, out.with_suffix(".png"), earlier["runs"],
         tuple(f"{', '.join(x) or 'the config as it is'}" for x in (earlier["settings"], args.settings)))
    print(markdown(rows, args.settings))


if __name__ == "__main__":
    main()
