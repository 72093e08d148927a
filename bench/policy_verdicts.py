"""Do the verdicts that rest on the policy hold for every policy? Reward attribution's layer picture,
the model-diffing leaderboard and the implicit-reward probe, read from several studies whose policies differ (training seeds,
thread counts, bases), side by side, with each verdict kept only where it holds on every one.

    .venv/bin/python bench/policy_verdicts.py --run-dir runs/policy-seeds/ours-s0-t2 \
        --run-dir runs/policy-seeds/ours-s1-t2 --run-dir runs/policy-seeds/ours-s2-t2

Each run directory needs the reward_attribution and model_diffing stages done
(``bench/policy_seeds.py --analyse`` runs them on its trainings).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from analysis.results import ModelDiffingResult, RewardAttributionResult, splice_score
from probes.results import LinearRewardResult
from rlhf.errors import UserError
from rlhf.rundir import RunDir, atomic_write_json
from study.report.sections.model_diffing import label, leaderboard
from study.report.sections.reward_attribution import GOAL, _at, _best_site


def read(run: RunDir) -> dict[str, Any]:
    r, m = RewardAttributionResult.load(run), ModelDiffingResult.load(run)
    rec, rem = _best_site(r.patching, "recovered"), _best_site(r.patching, "removed")
    components = [s for s in r.patching if s.component in ("attn_out", "mlp_out")]
    blocks = [s for s in r.weight_swap if s.component == "block"]
    swap = max(blocks, key=lambda s: float(np.mean(s.recovered)))
    top30 = [(float(np.mean(_at(c, 30, "recovered"))), float(np.mean(_at(c, 30, "removed"))), c.method, c.hook)
             for c in r.curves if c.ranking != "random" and 30 in c.ks]
    best30 = max(top30, key=lambda t: min(t[0], t[1]))
    boards = {key: leaderboard({k: v[key] for k, v in m.summary.items() if key in v})
              for key in (splice_score(10, "recovered"), "mean_abs_corr")}
    return {
        "G": float(np.mean([g.gain for g in r.gain])),
        "best_recovering_site": rec.site, "recovered": float(np.mean(rec.recovered)),
        "best_removing_site": rem.site, "removed": float(np.mean(rem.removed)),
        "max_single_component": max(float(np.mean(s.recovered)) for s in components) if components else float("nan"),
        "best_weight_swap_layer": swap.layer, "weight_swap_recovered": float(np.mean(swap.recovered)),
        "best_top30": f"{best30[2]} at {best30[3]}", "best_top30_recovered": best30[0], "best_top30_removed": best30[1],
        "top30_reaches_half": min(best30[0], best30[1]) >= GOAL,
        **{f"leaders_{key}": " ≈ ".join(sorted(label(x) for x in board[0])) for key, board in boards.items()},
        **probe_taus(run),
    }


def probe_taus(run: RunDir) -> dict[str, Any]:
    """The implicit-reward probe on each model's SAE codes, held-out words: does the policy read better?"""
    tau = {m: LinearRewardResult.load(run, model=m, features="sae").protocols.held_out_words.probe.all.kendall_tau
           for m in ("policy", "base")}
    return {"probe_tau_policy_sae": tau["policy"], "probe_tau_base_sae": tau["base"],
            "probe_policy_reads_better": tau["policy"] > tau["base"]}


def verdict(values: list[Any]) -> str:
    """A number's range over the runs; for anything else, whether it is the same on every run."""
    if all(isinstance(v, float) for v in values):
        return f"range {min(values):.3f}-{max(values):.3f}"
    return "holds on every run" if len({str(v) for v in values}) == 1 else "DIFFERS"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", action="append", required=True, help="a study with reward attribution done; repeatable")
    parser.add_argument("--out", default="bench/results/policy_verdicts.json",
                        help="JSON written for the docs' results page (default bench/results/policy_verdicts.json)")
    args = parser.parse_args()
    try:
        rows = [read(RunDir(d)) for d in args.run_dir]
    except (UserError, FileNotFoundError) as err:
        sys.exit(f"error: {err}")
    names = [Path(d).name for d in args.run_dir]
    table = [{"key": key, "values": [r[key] for r in rows], "verdict": verdict([r[key] for r in rows])} for key in rows[0]]
    width = max(len(k) for k in rows[0])
    for row in table:
        cells = "  ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in row["values"])
        print(f"{row['key']:<{width}}  {cells}   [{row['verdict']}]")
    atomic_write_json(Path(args.out), {"runs": names, "rows": table})
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
