"""Shared features: mean max cosine similarity (MMCS) between dictionaries, against its nulls."""

from __future__ import annotations

from typing import Any

from analysis.results import MMCSResult
from rlhf.rundir import RunDir
from study.report.section import Section


def context(run: RunDir, m: MMCSResult) -> dict[str, Any]:
    rows = [(r.model, r.hook, f"{r.small} into {r.big}", r.mmcs, r.mmcs_hungarian,
             "-" if r.other_seed_mmcs is None else r.other_seed_mmcs,
             f"{r.random_null.mean:.3f} [{r.random_null.low:.3f}, {r.random_null.high:.3f}]",
             ", ".join(f"{s.feature} ({s.mcs:.2f})" for s in r.shared[:5])) for r in m.within]
    across = [(r.hook, r.size, r.policy_into_base, r.base_into_policy) for r in m.base_vs_policy]
    return {"rows": rows, "across": across,
            "summary": {"mmcs_min": min(r.mmcs for r in m.within),
                        "mmcs_random_null_max": max(r.random_null.high for r in m.within)}}


SECTION = Section(
    "mmcs", "Shared features: MMCS", "mmcs.html.j2", (MMCSResult,), context,
    labels={"mmcs_min": "MMCS small into big (lowest)", "mmcs_random_null_max": "MMCS of random directions (95% high)"},
)
