"""Sparse feature circuits: faithfulness and completeness per node budget with their spreads over dictionary
seeds, the estimates checked against real patching, and the graph of the top circuit."""

from __future__ import annotations

from typing import Any

import numpy as np

from analysis.results import CircuitsResult
from rlhf.rundir import RunDir
from study.report.checks import Check
from study.report.section import Section
from study.report.sections.reward_attribution import GOAL, pm, reaches

EXACT = 1e-4  # the circuits of every node and of none give back the policy and the base up to float32 rounding
GOAL_BUDGET = 30


def _column(r: CircuitsResult, key: str, budget: int) -> list[float]:
    i = r.budgets.index(budget)
    return [getattr(s, key)[i] for s in r.seeds]


def verdict(r: CircuitsResult) -> list[str]:
    lines = []
    if GOAL_BUDGET in r.budgets:
        faith, comp = (_column(r, k, GOAL_BUDGET) for k in ("latents_faithfulness", "latents_completeness"))
        both = [min(a, b) for a, b in zip(faith, comp)]
        lines.append(f"The top {GOAL_BUDGET} latents over every layer, alone (no error node, no readout), recover "
                     f"{pm(faith)} of G and their removal takes out {pm(comp)}. At least half both ways? "
                     f"{reaches(both, GOAL)}.")
        nodes_f, nodes_c = (_column(r, k, GOAL_BUDGET) for k in ("faithfulness", "completeness"))
        errors = _column(r, "error_nodes", GOAL_BUDGET)
        lines.append(f"The top {GOAL_BUDGET} nodes (error nodes and the readout allowed; {np.mean(errors):.1f} error "
                     f"nodes among them) recover {pm(nodes_f)} and remove {pm(nodes_c)}.")
    lines.append(f"The error nodes alone, every site's: {pm([s.errors_faithfulness for s in r.seeds])} recovered, "
                 f"{pm([s.errors_completeness for s in r.seeds])} removed; the readout's weights carry "
                 f"{pm([s.readout for s in r.seeds])}.")
    return lines


def context(run: RunDir, r: CircuitsResult) -> dict[str, Any]:
    rows = []
    for i, budget in enumerate(r.budgets):
        rows.append((budget, pm([s.faithfulness[i] for s in r.seeds]), pm([s.completeness[i] for s in r.seeds]),
                     pm([s.latents_faithfulness[i] for s in r.seeds]), pm([s.latents_completeness[i] for s in r.seeds]),
                     pm([float(s.error_nodes[i]) for s in r.seeds]), pm([s.error_share[i] for s in r.seeds])))
    seeds = [(s.seed, s.gain, s.all_nodes, s.empty, s.estimator, s.attribution_error, s.integrated_gradients_error)
             for s in r.seeds]
    checked = [(s.seed, c.node, c.attribution, c.integrated_gradients, c.real) for s in r.seeds[:1] for c in s.checked]
    worst = max(max(abs(s.all_nodes - 1), abs(s.empty)) for s in r.seeds)
    checks = [Check("circuits_exact", "circuits of every node and of none give back the policy and the base "
                    "(largest |error| as a fraction of G)", worst, "<=", EXACT)]
    lines = verdict(r)
    summary: dict[str, Any] = {"circuit_exact_error": worst}
    if GOAL_BUDGET in r.budgets:
        summary |= {"circuit_30_latents_recovered": float(np.mean(_column(r, "latents_faithfulness", GOAL_BUDGET))),
                    "circuit_30_latents_removed": float(np.mean(_column(r, "latents_completeness", GOAL_BUDGET)))}
    return {
        "r": r, "conclusions": lines, "rows": rows, "seeds": seeds, "checked": checked, "checks": checks,
        "nodes": [(n.name, n.kind, n.score, " ".join(repr(t) for t in n.tokens)) for n in r.graph_nodes],
        "curves": CircuitsResult.figure(run, "curves"), "graph": CircuitsResult.figure(run, "graph"),
        "key_figures": [(CircuitsResult.figure(run, "curves"), "feature circuits: faithfulness and completeness")],
        "key_text": lines[:1], "summary": summary,
    }


SECTION = Section(
    "circuits", "Feature circuits", "circuits.html.j2", (CircuitsResult,), context,
    labels={"circuit_exact_error": "circuits of every node / none: largest error (fraction of G)",
            "circuit_30_latents_recovered": "top 30 latents over every layer: fraction of G recovered",
            "circuit_30_latents_removed": "top 30 latents over every layer: fraction of G removed"},
)
