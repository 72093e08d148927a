"""The implicit reward: the linear probes (both protocols), switching off the probe's
features, the sequence-level probes and DPO's implicit reward beside them."""

from __future__ import annotations

from typing import Any

from probes.results import ImplicitRewardResult, ProbeMetrics
from rlhf.rundir import RunDir
from study.report.section import Section

PROTOCOLS = (("held_out_words", "held-out words"), ("paper", "paper's 80/20 split"))


def _row(protocol: str, name: str, m: ProbeMetrics) -> tuple[Any, ...]:
    return (protocol, name, m.all.kendall_tau, m.positive.kendall_tau, m.negative.kendall_tau, m.all.spearman,
            m.all.sign_accuracy, m.all.pairwise_accuracy, m.r2)


def context(run: RunDir, r: ImplicitRewardResult) -> dict[str, Any]:
    lin = r.linear
    rows = []
    for protocol, label in PROTOCOLS:
        for key, who in (("policy_sae", "policy"), ("base_sae", "base"), ("policy_activations", "policy"),
                         ("base_activations", "base")):
            result = getattr(lin, key)
            probes = getattr(result.protocols, protocol)
            rows.append(_row(label, f"{who}: {result.features} probe", probes.probe))
            if result.features == "sae":
                rows.append(_row(label, f"{who}: untrained (null)", probes.untrained))
                rows.append(_row(label, f"{who}: embedding only", probes.embedding_only))
    tau = {key: result.protocols.held_out_words.probe.all.kendall_tau for key, result in lin.items()}
    a = r.ablation
    ablation = [(name, x.mean_reward, x.reward_change, x.reward_change_std, x.kl_per_token)
                for name, x in (("nothing switched off", a.none), (f"probe's top {a.k} features", a.probe_top_k),
                                (f"{a.k} random live features", a.random_k),
                                *((f"every feature at {h}", x) for h, x in a.whole_dictionary.items()))]
    sweep = [(row.k, row.probe_top_k.reward_change, row.probe_top_k.reward_change_std, row.probe_top_k.kl_per_token,
              row.random_k.reward_change, row.random_k.reward_change_std, row.random_k.kl_per_token,
              "yes" if row.probe_lowers_reward_more_than_random else "no") for row in a.sweep]
    seq = r.sequence
    sequence = [(m, e.last_token.best_hook, e.last_token.kendall_tau, e.last_token.spearman,
                 e.logistic.accuracy if e.logistic else "-", e.logistic.auroc if e.logistic else "-")
                for m, e in seq.models.items()]
    dpo = None
    if seq.dpo is not None:
        d = seq.dpo
        dpo = [("implicit reward vs true utility", d.implicit_vs_true.kendall_tau),
               ("probe on the DPO model vs true utility", d.probe_vs_true.kendall_tau),
               ("probe vs implicit reward", d.probe_vs_implicit.kendall_tau)]
    summary = {"probe_tau_policy_sae": tau["policy_sae"], "probe_tau_base_sae": tau["base_sae"],
               "probe_tau_policy_activations": tau["policy_activations"],
               "probe_tau_embedding_only": lin.policy_sae.protocols.held_out_words.embedding_only.all.kendall_tau,
               "sequence_probe_tau_policy": seq.models["policy"].last_token.kendall_tau,
               "ablation_reward_change_probe": a.probe_top_k.reward_change,
               "ablation_reward_change_random": a.random_k.reward_change}
    return {"target": r.target, "note": lin.policy_sae.notes[0], "root": str(run.root), "rows": rows,
            "scatter": ImplicitRewardResult.figure(run, "scatter"), "lowers": a.probe_lowers_reward_more_than_random,
            "ablation": ablation, "sweep": sweep, "ablation_figure": ImplicitRewardResult.figure(run, "ablation"),
            "n_completions": seq.n_completions, "n_test": seq.n_test, "sequence": sequence, "dpo": dpo,
            "summary": summary}


SECTION = Section(
    "implicit_reward", "The implicit reward: probes and ablation", "implicit_reward.html.j2", (ImplicitRewardResult,),
    context,
    labels={"probe_tau_policy_sae": "implicit-reward probe tau, held-out words (policy SAE)",
            "probe_tau_base_sae": "implicit-reward probe tau, held-out words (base SAE)",
            "probe_tau_policy_activations": "implicit-reward probe tau (policy raw activations)",
            "probe_tau_embedding_only": "implicit-reward probe tau (embedding only)",
            "sequence_probe_tau_policy": "sequence-level probe tau (policy)",
            "ablation_reward_change_probe": "reward change, probe's top features off",
            "ablation_reward_change_random": "reward change, random features off"},
)
