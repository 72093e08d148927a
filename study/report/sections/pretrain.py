"""Base model pretraining: the held-out loss against the corpus entropy floor."""

from __future__ import annotations

from typing import Any

from rlhf.results import PretrainResult
from rlhf.rundir import RunDir
from study.report.checks import Check
from study.report.section import Section

LOSS_BAR = 1.10  # held-out loss at most 10% above the entropy floor


def context(run: RunDir, p: PretrainResult) -> dict[str, Any]:
    if p.from_model:
        rows = [("base model", p.from_model), ("parameters", p.parameters),
                ("held-out loss (nats/token)", p.test_loss), ("perplexity", p.perplexity)]
        return {"adopted": True, "rows": rows, "checks": [], "figure": None, "summary": {"base_test_loss": p.test_loss}}
    checks = [] if p.loss_over_floor is None else [
        Check("loss_within_10pct", "base: held-out loss / entropy floor", p.loss_over_floor, "<=", LOSS_BAR)]
    rows = [
        ("parameters", p.parameters), ("steps", p.steps),
        ("stopped at plateau", "yes" if p.stopped_early else "no (step limit)"),
        ("held-out loss (nats/token)", p.test_loss), ("entropy floor", p.entropy_floor),
        ("loss / floor", p.loss_over_floor),
        ("resumed from a checkpoint", "yes" if p.resumed else "no"), ("seconds", p.seconds),
    ]
    return {"adopted": False, "rows": rows, "checks": checks, "figure": PretrainResult.figure(run, "loss"),
            "summary": {"base_test_loss": p.test_loss, "loss_over_floor": p.loss_over_floor}}


SECTION = Section(
    "pretrain", "Base model pretraining", "pretrain.html.j2", (PretrainResult,), context,
    labels={"base_test_loss": "base model held-out loss (nats/token)", "loss_over_floor": "base loss / entropy floor",
            "loss_within_10pct": "base loss within 10% of the floor"},
)
