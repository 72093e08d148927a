"""Model diffing against the known reward: every method's latents scored per layer and seed (with
the latents each set aside because they never fire on held-out text), crosscoder quality, and cards
for the crosscoder latents leaning furthest to the policy."""

from __future__ import annotations

from typing import Any

from analysis.results import ModelDiffingResult, SeedStat
from rlhf.rundir import RunDir
from study.report.cards import latent_card
from study.report.section import Section

DIFFING_LABELS = {
    "mmcs_diff": "MMCS feature diff (SAEs)", "crosscoder_scaling": "crosscoder + latent scaling",
    "crosscoder_norm": "crosscoder, relative norm only", "difference_dictionary": "difference dictionary (base -> policy)",
    "difference_sae": "SAE on policy - base", "kl": "per-token KL (tokens)",
}


def pm(stat: SeedStat | None, signed: bool = False) -> str:
    """Mean ± spread over seeds (the spread only with more than one seed)."""
    if not stat:
        return "-"
    mean = f"{stat.mean:+.3f}" if signed else f"{stat.mean:.3f}"
    return mean + (f" ± {stat.std:.3f}" if stat.seeds > 1 else "")


def label(method: str) -> str:
    """A method's name in the report; a newly registered method without a label shows its registry name."""
    return DIFFING_LABELS.get(method, method)


def context(run: RunDir, m: ModelDiffingResult) -> dict[str, Any]:
    summary = m.summary
    rows = [(label(k), pm(v.get("share_tracking_reward")), pm(v.get("mean_abs_corr")), pm(v.get("precision")),
             pm(v.get("recall")), pm(v.get("reward_change"), signed=True), pm(v.get("kl_per_token")))
            for k, v in summary.items()]
    random_change = sum(layer.random_directions.reward_change for layer in m.layers) / len(m.layers)
    ranked = sorted((k for k in summary if "mean_abs_corr" in summary[k]), key=lambda k: -summary[k]["mean_abs_corr"].mean)
    layers = [{
        "hook": layer.hook,
        "methods": [(label(name), r.seed, r.share_tracking_reward if r.share_tracking_reward is not None else "-",
                     r.precision, r.recall, r.reward_change if r.reward_change is not None else "-",
                     r.set_aside if name != "kl" else "-")
                    for name, rs in layer.methods.items() for r in rs],
        "crosscoder": [(f"seed {s}", c.explained_variance["base"], c.explained_variance["policy"], c.l0, c.dead_fraction,
                        c.policy_leaning, c.policy_specific_after_scaling, c.difference_dictionary_explained_variance)
                       for s, c in layer.crosscoder.items()],
    } for layer in m.layers]
    best = ranked[0] if ranked else None
    return {
        "m": m, "rows": rows, "random_change": f"{random_change:+.3f}", "unedited": f"{m.unedited_reward:.3f}",
        "ranked": " > ".join(label(k) for k in ranked), "layers": layers,
        "plot": m.plot_path(run),
        "norm_plots": [(m.relative_norms_path(run, layer.hook), f"relative norms, {layer.hook}") for layer in m.layers
                       if m.relative_norms_path(run, layer.hook).exists()], "cards": [latent_card(layer.hook, c) for layer in m.layers for c in layer.cards],
        "cards_set_aside": [(layer.hook, layer.cards_set_aside) for layer in m.layers],
        "summary": {"diffing_best_method_by_corr": label(best)} if best else {},
    }


SECTION = Section(
    "model_diffing", "Model diffing against the known reward", "model_diffing.html.j2", (ModelDiffingResult,), context,
    labels={"diffing_best_method_by_corr": "model diffing: method whose latents track the reward best"},
)
