"""Conversion to TransformerBridge: each model's logits against the Hugging Face model's."""

from __future__ import annotations

from typing import Any

from rlhf.results import ConversionResult
from rlhf.rundir import RunDir
from study.report.checks import Check
from study.report.page import verdict
from study.report.section import Section


def context(run: RunDir, c: ConversionResult) -> dict[str, Any]:
    rows = [(name, m.architecture, m.n_layers, m.d_model, m.d_vocab, m.max_abs_logit_diff,
             verdict(m.max_abs_logit_diff <= c.atol)) for name, m in c.models.items()]
    checks = [Check("conversion_passes", f"{name}: max |logit diff| against the HF model", m.max_abs_logit_diff, "<=",
                    c.atol) for name, m in c.models.items()]
    return {"atol": f"{c.atol:.0e}", "rows": rows, "checks": checks,
            "summary": {"max_abs_logit_diff": max(m.max_abs_logit_diff for m in c.models.values())}}


SECTION = Section(
    "conversion", "Conversion to TransformerBridge", "conversion.html.j2", (ConversionResult,), context,
    labels={"max_abs_logit_diff": "TransformerBridge vs HF, max |logit diff|"},
)
