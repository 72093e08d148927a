"""Stage: every implicit-reward probe of a study, for the report.

Runs ``fit_linear_reward`` for base and policy on SAE codes and on raw activations,
switches off the policy probe's top features (``ablation``), and runs the sequence-level
and logistic probes (``sequence``), with the DPO comparison where a DPO policy exists.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import torch

from analysis.activations import load_shards
from analysis.dictionaries import load_sae
from probes.ablation import ablation_effect
from probes.config import (
    ImplicitRewardConfig,  # noqa: F401  (re-exported: callers import it from here)
    LinearRewardConfig,
)
from probes.fit_linear_reward import fit_linear_reward
from probes.results import AblationResult, ImplicitRewardResult, LinearProbeSet, LinearRewardResult
from probes.sequence import default_mean_hooks, sequence_probes
from rlhf.hooked import to_hooked
from rlhf.plots import plt, save_figure
from rlhf.policy.sampling import prompts_from_texts
from rlhf.rundir import RunDir


def _live_features(run_dir: RunDir, hooks: list[str], size: str, min_frequency: float) -> dict[str, list[int]]:
    out = {}
    for h in hooks:
        sae = load_sae(run_dir.sae("policy", h, size))
        with torch.no_grad():
            fired = torch.cat([(sae.encode(x) > 0).float() for x in load_shards(run_dir.activations("policy", h, "val"))])
        out[h] = (fired.mean(0) >= min_frequency).nonzero()[:, 0].tolist()
    return out


def _scatter(results: dict[str, LinearRewardResult], path: Path) -> None:
    fig, axes = plt.subplots(1, len(results), figsize=(4.2 * len(results), 3.8), dpi=100, squeeze=False)
    for ax, (name, r) in zip(axes[0], results.items()):
        s = r.scatter
        tau = r.protocols.held_out_words.probe.all.kendall_tau
        ax.scatter(s.valence, s.prediction, s=6, alpha=0.5)
        ax.axhline(0, color="grey", lw=0.5)
        ax.axvline(0, color="grey", lw=0.5)
        ax.set(title=f"{name}: tau {tau:.2f}", xlabel="VADER valence (held-out word)", ylabel="probe's prediction")
    save_figure(fig, path)


def _ablation_bars(ablation: AblationResult, path: Path) -> None:
    """The headline k as bars, and the change in reward against k for the probe's and random features."""
    fig, (bars, curve) = plt.subplots(1, 2, figsize=(10, 3.5), dpi=100)
    rows = [ablation.probe_top_k, ablation.random_k]
    bars.bar(["probe top-k", "random k"], [r.reward_change for r in rows],
             yerr=[r.reward_change_std for r in rows], capsize=6, color=["#c0392b", "#7f8c8d"])
    bars.axhline(0, color="black", lw=0.6)
    bars.set(title=f"Switching off k = {ablation.k} SAE features in the policy", ylabel="change in mean utility reward")
    ks = [row.k for row in ablation.sweep]
    for key, label, color in (("probe_top_k", "probe's top k", "#c0392b"), ("random_k", "k random", "#7f8c8d")):
        stats = [getattr(row, key) for row in ablation.sweep]
        curve.errorbar(ks, [x.reward_change for x in stats], yerr=[x.reward_change_std for x in stats], marker="o",
                       capsize=4, label=label, color=color)
    curve.axhline(0, color="black", lw=0.6)
    curve.set(xscale="log", xlabel="features switched off (k)", ylabel="change in mean utility reward",
              title="Against the number of features")
    curve.legend()
    save_figure(fig, path)


def implicit_reward_stage(cfg: ImplicitRewardConfig, run_dir: RunDir) -> ImplicitRewardResult | None:
    """Stage: ``probes/implicit_reward.json`` (+ each probe's JSON and the plots)."""
    if not cfg.enabled:
        return None
    started = time.time()
    linear: dict[str, LinearRewardResult] = {}
    models = {m: to_hooked(run_dir.model(m)) for m in ("policy", "base")}
    for m, model in models.items():
        for features in ("sae", "activations"):
            result = fit_linear_reward(run_dir, LinearRewardConfig(model=m, features=features, target=cfg.target,
                                                                   n_triples=cfg.n_triples, size=cfg.size), model=model)
            result.save(run_dir)
            linear[f"{m}_{features}"] = result
    probes = LinearProbeSet(**linear)
    _scatter({"policy, SAE codes": probes.policy_sae, "base, SAE codes": probes.base_sae},
             ImplicitRewardResult.figure(run_dir, "scatter"))

    probe = probes.policy_sae
    hooks = list(probe.hooks)
    ranked = [(f.hook, f.feature) for f in probe.top_features if f.coefficient > 0]
    saes = {h: load_sae(run_dir.sae("policy", h, cfg.size)) for h in hooks}
    prompts = prompts_from_texts(run_dir.texts("val"),
                                 cfg.ablation.n_prompts, seed=random.Random(7).randrange(2**31))
    ablation = ablation_effect(models["policy"], saes, ranked, _live_features(run_dir, hooks, cfg.size, cfg.live_frequency),
                               prompts, cfg.ablation)
    _ablation_bars(ablation, ImplicitRewardResult.figure(run_dir, "ablation"))

    sequence = sequence_probes(run_dir, cfg.sequence, default_mean_hooks(run_dir), hooked=models)
    out = ImplicitRewardResult(target=cfg.target, linear=probes, ablation=ablation, sequence=sequence,
                               seconds=time.time() - started)
    out.save(run_dir)
    return out
