"""The classic RLHF loop on the digits organism: SFT, reward model, RL, checked against the known preference."""

from __future__ import annotations

from typing import Any

from markupsafe import Markup

from rlhf.results import DigitsAttention, DigitsResult
from rlhf.rundir import RunDir
from study.report.checks import Check
from study.report.section import Section

DIGITS_BARS = {"reward_model": 0.95, "first_correct": 0.90, "later_kl": 0.25}
FIGURES = ("first_correct", "kl_by_position", "kl_curves")


def _attention_views(att: DigitsAttention, labels: dict[str, str]) -> list[dict[str, Any]]:
    from study.report.cards import attention_view  # circuitsvis: only when there are patterns to show

    return [{"label": labels[name],
             "layers": [Markup(attention_view(list(att.tokens), layer)) for layer in layers]}
            for name, layers in att.models.items()]


def context(run: RunDir, d: DigitsResult, att: DigitsAttention | None) -> dict[str, Any]:
    models = d.models
    labels = {"base": "SFT model (before RL)", "policy": f"RL, beta = {d.policy_beta}",
              "policy_beta0": "RL, beta = 0", "sft_baseline": "SFT on chosen responses"}
    rows = [(labels[n], m.first_correct, m.first_correct_probability, m.kl_by_position[0],
             d.later_mean(n, "kl_by_position"), m.mean_kl_per_token, d.later_mean(n, "rule_following_by_position"),
             m.well_formed, m.mean_reward) for n, m in models.items()]
    policy, beta0 = models.get("policy"), models.get("policy_beta0")
    group = "digits_passes"
    checks = [Check(group, "digits: reward model's held-out pair accuracy", d.reward_model.held_out_accuracy, ">=",
                    DIGITS_BARS["reward_model"])]
    if policy:
        checks += [Check(group, "digits: RL's first-output-correct rate", policy.first_correct, ">=",
                         DIGITS_BARS["first_correct"]),
                   Check(group, "digits: later positions keep the SFT distribution (mean KL, nats)",
                         d.later_mean("policy", "kl_by_position"), "<=", DIGITS_BARS["later_kl"])]
    if policy and beta0:
        checks.append(Check(group, "digits: beta = 0's KL per token, over the policy's", beta0.mean_kl_per_token, ">=",
                            policy.mean_kl_per_token))
    summary: dict[str, Any] = {"digits_reward_model_accuracy": d.reward_model.held_out_accuracy,
                               "digits_first_correct_before": models["base"].first_correct}
    if policy:
        summary |= {"digits_first_correct_after": policy.first_correct,
                    "digits_later_kl": d.later_mean("policy", "kl_by_position")}
    if beta0:
        summary["digits_beta0_kl_per_token"] = beta0.mean_kl_per_token
    return {
        "d": d, "base_rate": f"{d.base_rate:.1%}", "test_loss": f"{d.sft.test_loss:.4f}",
        "loss_over_floor": f"{d.sft.loss_over_floor:.3f}", "rm_accuracy": f"{d.reward_model.held_out_accuracy:.1%}",
        "rows": rows, "checks": checks,
        "figures": [(DigitsResult.figure(run, f), f) for f in FIGURES], "distributions": DigitsResult.figure(run, "distributions"),
        "attention_text": " ".join(att.tokens) if att else "",
        "views": _attention_views(att, labels) if att else [],
        "samples": [(x.prompt, x.completion) for x in (policy.samples if policy else ())],
        "summary": summary,
    }


SECTION = Section(
    "digits", "The classic RLHF loop on the digits organism", "digits.html.j2", (DigitsResult, DigitsAttention), context,
    labels={"digits_reward_model_accuracy": "digits: reward model held-out accuracy",
            "digits_first_correct_before": "digits: first output correct before RL",
            "digits_first_correct_after": "digits: first output correct after RL",
            "digits_later_kl": "digits: mean KL at later outputs",
            "digits_beta0_kl_per_token": "digits: KL per token with beta = 0"},
)
