"""DPO and its implicit reward's accuracy on held-out preference pairs."""

from __future__ import annotations

from typing import Any

from rlhf.results import DPOResult
from rlhf.rundir import RunDir
from study.report.checks import Check
from study.report.section import Section
from study.report.sections.policy import reward_text

DPO_ACCURACY_BAR = 0.9


def context(run: RunDir, d: DPOResult) -> dict[str, Any]:
    checks = [Check("dpo_passes", "DPO: implicit reward accuracy on held-out pairs", d.implicit_reward_accuracy, ">=",
                    DPO_ACCURACY_BAR)]
    rows = [("reward", reward_text(d.reward, d.config.get("reward_label", ""))),
            ("preference pairs (train / held out)", f"{d.train_pairs} / {d.held_out_pairs}"),
            ("steps", d.steps), ("beta", d.beta),
            ("implicit reward accuracy on held-out pairs", d.implicit_reward_accuracy),
            ("mean reward: base", d.base.mean_reward), ("mean reward: DPO policy", d.policy.mean_reward),
            ("KL to base (nats/token)", d.policy.mean_kl_per_token)]
    examples = [(x.prompt, x.chosen, x.implicit_chosen, x.rejected, x.implicit_rejected) for x in d.examples]
    return {"d": d, "rows": rows, "checks": checks, "examples": examples, "figure": DPOResult.figure(run, "accuracy"),
            "summary": {"dpo_implicit_reward_accuracy": d.implicit_reward_accuracy, "dpo_reward_gain": d.reward_gain}}


SECTION = Section(
    "dpo", "DPO and its implicit reward", "dpo.html.j2", (DPOResult,), context,
    labels={"dpo_implicit_reward_accuracy": "DPO implicit reward accuracy (held-out pairs)",
            "dpo_reward_gain": "DPO reward gain", "dpo_passes": "DPO passes its bar"},
)
