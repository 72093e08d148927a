"""The RLHF policy against its reward (the VADER utility by default), and the run without the KL penalty."""

from __future__ import annotations

from typing import Any

from rlhf.results import NoKLResult, PolicyResult
from rlhf.rundir import RunDir
from study.report.checks import policy_checks
from study.report.section import Section

MEASURES = (("mean reward", "mean_reward"), ("KL to base (nats/token)", "mean_kl_per_token"),
            ("repeated-bigram share", "repeated_bigrams"), ("completion length (tokens)", "mean_length"))
FIGURES = ("reward", "held_out_reward", "exact_kl", "beta", "repeated_bigrams", "completions_mean_length")


def reward_text(spec: str, label: str) -> str:
    """Which reward a policy was trained (or DPO's pairs ranked) with, as the report says it."""
    return f"{spec}, label {label}" if label else spec


def context(run: RunDir, p: PolicyResult, b0: NoKLResult | None) -> dict[str, Any]:
    base, pol = p.base, p.policy
    summary: dict[str, Any] = {"reward_gain": p.reward_gain, "policy_kl_per_token": pol.mean_kl_per_token,
                               "policy_repeated_bigrams": pol.repeated_bigrams,
                               "base_repeated_bigrams": base.repeated_bigrams}
    beta0 = None
    if b0 is not None:
        beta0 = {"steps": b0.steps, "header": ("measure", f"beta = {p.beta}", "beta = 0"),
                 "rows": [("KL to base (nats/token)", pol.mean_kl_per_token, b0.policy.mean_kl_per_token),
                          ("mean reward", pol.mean_reward, b0.policy.mean_reward),
                          ("repeated-bigram share", pol.repeated_bigrams, b0.policy.repeated_bigrams)],
                 "figure": PolicyResult.figure(run, "kl_beta_comparison")}
        summary["beta0_kl_per_token"] = b0.policy.mean_kl_per_token
    return {
        "p": p, "algorithm": p.algorithm.upper(), "reward": reward_text(p.reward, p.config.reward_label), "start": "the SFT model" if p.config.init == "sft" else "base",
        "rows": [(label, getattr(base, key), getattr(pol, key)) for label, key in MEASURES],
        "checks": policy_checks(p),
        "figures": [(PolicyResult.figure(run, "curve", curve=k), k) for k in FIGURES],
        "key_figures": [(PolicyResult.figure(run, "curve", curve=k), f"policy: {k}") for k in ("reward", "exact_kl")],
        "key_text": [f"The policy handed on is step {p.kept_step} of {p.steps}: {p.kept_reason}."] if p.kept_reason else [],
        "beta0": beta0,
        "samples": [(x.prompt, x.base, x.base_reward, x.policy, x.policy_reward) for x in p.samples],
        "summary": summary,
    }


SECTION = Section(
    "policy", "RLHF policy", "policy.html.j2", (PolicyResult, NoKLResult), context,
    labels={"reward_gain": "RLHF reward gain on held-out prompts", "policy_kl_per_token": "policy KL to base (nats/token)",
            "policy_repeated_bigrams": "policy repeated-bigram share", "base_repeated_bigrams": "base repeated-bigram share",
            "beta0_kl_per_token": "KL without the penalty, beta = 0 (nats/token)",
            "policy_passes": "policy passes its bars"},
    stages=("policy", "policy_beta0"),
)
