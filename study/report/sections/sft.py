"""The supervised baseline: rejection-sampling SFT beside the base model and the RL policy."""

from __future__ import annotations

from typing import Any

from rlhf.results import PolicyResult, SFTResult
from rlhf.rundir import RunDir
from study.report.section import Section

MEASURES = (("mean utility reward", "mean_reward"), ("KL to base (nats/token)", "mean_kl_per_token"),
            ("repeated-bigram share", "repeated_bigrams"), ("completion length (tokens)", "mean_length"))


def context(run: RunDir, s: SFTResult, p: PolicyResult | None) -> dict[str, Any]:
    rows = [(label, getattr(s.base, key), getattr(s.sft, key), getattr(p.policy, key) if p else "-")
            for label, key in MEASURES]
    return {"s": s, "top_share": f"{s.top_fraction:.0%}", "threshold": f"{s.reward_threshold or 0:.3g}",
            "mean_of_rows": f"{s.mean_reward_of_rows or 0:.3g}", "rows": rows,
            "samples": [(x.prompt, x.completion, x.reward) for x in s.samples],
            "summary": {"sft_reward_gain": s.reward_gain, "sft_kl_per_token": s.sft.mean_kl_per_token}}


SECTION = Section(
    "sft", "Supervised baseline (rejection-sampling SFT)", "sft.html.j2", (SFTResult, PolicyResult), context,
    labels={"sft_reward_gain": "SFT baseline reward gain", "sft_kl_per_token": "SFT baseline KL to base (nats/token)"},
)
