"""Where the reward lives. Measures the policy's reward gain G exactly (``reward_gain``), patches
layers and components and swaps weights (``patching``), ranks every dictionary's latents by
attribution patching and checks the rankings by real splicing (``feature_attribution``), beside
random live latents and any other rankings it is given (the stage in ``study.reward_attribution``
gives it the implicit-reward probe's features and the writer probe's).

Every fraction is computed once per sampling seed of the policy's completions, so each comes
with its spread.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from analysis.activations import input_hook
from analysis.config import RewardAttributionConfig
from analysis.dictionaries import load_sae
from analysis.diffing.registry import dictionaries
from analysis.feature_attribution import (
    Dictionary,
    Encoded,
    direct_gradients,
    encode,
    gradients,
    latent_scores,
    sae_dictionary,
    splice_fractions,
    transcoder_dictionary,
)
from analysis.interventions import directional_ablation, reward_under_hooks, sample_with_hooks
from analysis.patching import SiteEffect, activation_sites, cache_sites, check_pair, patch_sites, weight_sites
from analysis.results import (
    ActivationIndex,
    Curve,
    DictionaryInfo,
    DivergenceResult,
    GainEstimate,
    LatentShare,
    ModelDiffingResult,
    RewardAttributionResult,
    SampledIntervention,
    SiteFractions,
)
from analysis.reward_gain import Completions, GainSplit, Target, sample_completions, split_gain
from rlhf.configtypes import is_lexicon
from rlhf.errors import UserError
from rlhf.hooked import HookedModel, to_hooked
from rlhf.organisms.objective import Organism, run_organism
from rlhf.plots import plt, save_figure
from rlhf.policy import prompts_from_texts
from rlhf.registry import load
from rlhf.results import PolicyResult
from rlhf.reward_kinds import RewardOptions
from rlhf.rewards import make_reward
from rlhf.rundir import RunDir

PROMPT_SEED = 13  # the held-out prompts (the sampling seeds vary the completions)
TOP_LATENTS = 5  # per dictionary and hook, listed with their single-latent splice


def load_dictionaries(cfg: RewardAttributionConfig, run_dir: RunDir, hook: str, dictionary_seed: int) -> list[Dictionary]:
    """The configured dictionaries at one hook, each as per-latent differences."""
    out = []
    for name in cfg.dictionaries:
        if name.startswith("transcoder_"):  # where the MLP's input is cached: a transcoder writes hook_mlp_out
            path = run_dir.transcoder(name.removeprefix("transcoder_"), hook, cfg.size)
            if (path / "cfg.json").exists():
                out.append(transcoder_dictionary(name, hook, input_hook(hook), load_sae(path)))
            continue
        if name.startswith("sae_"):
            model = name.removeprefix("sae_")
            path = run_dir.sae(model, hook, cfg.size)
            if not (path / "cfg.json").exists():
                raise UserError(f"reward_attribution: no {cfg.size} SAE of the {model} at {hook}; "
                                "set reward_attribution.size to a width the dictionaries stage trained")
            out.append(sae_dictionary(name, hook, load_sae(path)))
            continue
        out.append(load(dictionaries()[name].dictionary)(name, run_dir, hook, dictionary_seed))
    return out


def _site_rows(per_seed: list[list[SiteEffect]]) -> tuple[SiteFractions, ...]:
    return tuple(SiteFractions(site=effects[0].site.name, layer=effects[0].site.layer, component=effects[0].site.component,
                               recovered=tuple(e.recovered for e in effects), removed=tuple(e.removed for e in effects))
                 for effects in zip(*per_seed))


def attribute(cfg: RewardAttributionConfig, models: tuple[HookedModel, HookedModel], batch: Completions,
              split: GainSplit, encoded: Encoded, grads: list[Tensor], direct: list[Tensor],
              rankings: dict[str, dict[str, list[int]]], seed: int, with_top: bool
              ) -> tuple[dict[str, dict[int, tuple[float | None, float | None]]], list[LatentShare], list[int]]:
    """One dictionary at one hook: its live latents ranked by attribution patching, beside random live
    latents and the given rankings (e.g. probes'), each spliced at every k. Returns ranking -> k ->
    (fraction recovered, fraction removed) (random: the mean over the sets; None where a ranking is
    shorter than k), with ``with_top`` the top latents' estimated and real single-latent shares, and the
    attribution ranking."""
    base, policy = models
    hook, live = encoded.dictionary.hook, encoded.live
    unit = batch.n_rows * split.gain  # latent scores are summed over rows: to fractions of G
    scores = latent_scores(encoded, grads) / unit
    ordered = sorted(live, key=lambda i: -float(scores[i]))
    gen = torch.Generator().manual_seed(1000 * seed + 1)
    candidates = {"attribution": [ordered],
                  "random": [[live[int(i)] for i in torch.randperm(len(live), generator=gen)] for _ in range(cfg.random_sets)]}
    alive = set(live)
    candidates |= {name: [[i for i in by_hook.get(hook, []) if i in alive]] for name, by_hook in rankings.items()}
    out: dict[str, dict[int, tuple[float | None, float | None]]] = {}
    for name, orders in candidates.items():
        out[name] = {}
        for k in cfg.ks:
            runs = [splice_fractions(base, policy, batch, encoded, order[:k], split) for order in orders if len(order) >= k]
            out[name][k] = (float(np.mean([r[0] for r in runs])), float(np.mean([r[1] for r in runs]))) if runs else (None, None)
    shares = []
    if with_top:
        direct_scores = latent_scores(encoded, direct) / unit
        for i in ordered[:TOP_LATENTS]:
            rec, rem = splice_fractions(base, policy, batch, encoded, [i], split)
            shares.append(LatentShare(hook, encoded.dictionary.name, i, float(scores[i]), float(direct_scores[i]), rec, rem))
    return out, shares, ordered


Rankings = dict[str, dict[str, list[int]]]  # ranking name -> hook -> latents of the policy's SAE, best first
# Rankings that depend on one sampling seed's completions (e.g. a probe fitted on them): (seed, policy, batch) -> rankings
SeedRankings = Callable[[int, HookedModel, Completions], Rankings]


def reward_attribution(cfg: RewardAttributionConfig, run_dir: RunDir, rankings: Rankings,
                       seed_rankings: SeedRankings | None = None) -> RewardAttributionResult:
    """Every measurement above for the run's policy, with ``rankings`` (and, per sampling seed,
    ``seed_rankings``) spliced beside each policy SAE's own attribution ranking; writes the heat maps
    and splicing curves, and returns the result unsaved."""
    started = time.time()
    if not cfg.seeds:
        raise UserError("reward_attribution.seeds is empty: give at least one sampling seed")
    if not (run_dir.policy / "config.json").exists():
        raise UserError(f"reward_attribution needs a policy, and {run_dir.policy} holds none: run the policy stage first")
    hooks = ActivationIndex.load(run_dir).hooks_at(cfg.layers, every_kind=True)
    diffing = ModelDiffingResult.load_if_exists(run_dir)
    dictionary_seed = diffing.seeds[0] if diffing is not None else 0
    # Where the activations did not change, model diffing trained nothing: only the SAE pair is read there.
    unchanged = set(diffing.unchanged_hooks) if diffing is not None else set()
    sae_pair = replace(cfg, dictionaries=tuple(n for n in cfg.dictionaries if n.startswith(("sae_", "transcoder_"))))
    dictionaries = {h: load_dictionaries(sae_pair if h in unchanged else cfg, run_dir, h, dictionary_seed) for h in hooks}
    smallest = min((d for ds in dictionaries.values() for d in ds), key=lambda d: d.n_latents)
    if max(cfg.ks) > smallest.n_latents:
        raise UserError(f"reward_attribution.ks goes up to {max(cfg.ks)}, but {smallest.name} at {smallest.hook} has "
                        f"{smallest.n_latents} latents; lower the largest k")
    base, policy = to_hooked(run_dir.base), to_hooked(run_dir.policy)
    check_pair(base, policy)
    n_layers = base.cfg.n_layers
    # The objective the policy was trained on: its utility gives G (or the log-ratio does), its reward the sampled gain.
    organism_name, objective = run_organism(run_dir, RewardOptions(scale=cfg.scale))
    target, reward = resolve_target(cfg.target, "reward_attribution.target", cfg.scale, run_dir, objective)
    prompts = prompts_from_texts(run_dir.texts("test"), cfg.n_prompts, PROMPT_SEED)
    utility = (objective.utilities(policy.tokenizer, policy.cfg.d_vocab, prompts) if target == "utility"  # u(t | each prompt)
               else torch.zeros(len(prompts), policy.cfg.d_vocab))
    eos = policy.tokenizer.eos_token_id
    gains, patching, swaps = [], [], []
    splices: dict[tuple[str, str, str], dict[int, list[float | None]]] = defaultdict(lambda: defaultdict(list))
    removals: dict[tuple[str, str, str], dict[int, list[float | None]]] = defaultdict(lambda: defaultdict(list))
    infos: dict[tuple[str, str], DictionaryInfo] = {}
    top: list[LatentShare] = []
    directions: dict[tuple[str, str], Tensor] = {}
    for s, seed in enumerate(tqdm(cfg.seeds, desc="reward attribution", unit="seed")):
        batch = sample_completions(policy, prompts, utility, max_new_tokens=cfg.max_new_tokens, seed=seed, target=target)
        base_texts, _, base_masks, _ = sample_with_hooks(base, prompts, [], max_new_tokens=cfg.max_new_tokens, seed=seed)
        split = split_gain(base, policy, batch, eos)
        sampled_base, sampled_policy = (float(np.mean(reward(prompts, texts))) for texts in (base_texts, batch.texts))
        gains.append(GainEstimate(
            seed=seed, expected_base=split.base, expected_policy=split.policy, gain=split.gain,
            utility_part=split.utility_part, ending_part=split.ending_part, eos_base=split.eos_base,
            eos_policy=split.eos_policy, sampled_base=sampled_base, sampled_policy=sampled_policy,
            sampled_gain=sampled_policy - sampled_base,
            length_base=sum(int(m.sum()) for m in base_masks) / len(prompts),
            length_policy=sum(int(m.sum()) for _, m in batch.groups) / batch.n_rows))
        patching.append(patch_sites(base, policy, batch, activation_sites(n_layers), split.base, split.policy))
        swaps.append(patch_sites(base, policy, batch, weight_sites(n_layers), split.base, split.policy))
        extra = rankings | (seed_rankings(seed, policy, batch) if seed_rankings else {})
        read = sorted({d.reads for ds in dictionaries.values() for d in ds if d.reads})  # transcoders' inputs
        acts = {"base": cache_sites(base, batch, [*hooks, *read]), "policy": cache_sites(policy, batch, [*hooks, *read])}
        direct = direct_gradients(base, batch)
        models = (base, policy)
        for hook in hooks:
            grads = gradients(base, batch, hook)
            for dictionary in dictionaries[hook]:
                encoded = encode(dictionary, acts["base"][hook], acts["policy"][hook],
                                 (acts["base"][dictionary.reads], acts["policy"][dictionary.reads]) if dictionary.reads else None)
                infos[(hook, dictionary.name)] = DictionaryInfo(hook, dictionary.name, dictionary.n_latents,
                                                                len(encoded.live))
                fractions, shares, ordered = attribute(cfg, models, batch, split, encoded, grads, direct,
                                                       extra if dictionary.name == "sae_policy" else {}, seed,
                                                       with_top=s == 0)
                if s == 0:
                    directions[(hook, dictionary.name)] = encoded.dictionary.directions[ordered[:cfg.intervention_k]]
                for name, by_k in fractions.items():
                    for k, (rec, rem) in by_k.items():
                        splices[(hook, dictionary.name, name)][k].append(rec)
                        removals[(hook, dictionary.name, name)][k].append(rem)
                top += shares
    curves = []
    for key, by_k in splices.items():
        ks = tuple(k for k in cfg.ks if all(v is not None for v in by_k[k]))
        if ks:
            curves.append(Curve(hook=key[0], dictionary=key[1], ranking=key[2], ks=ks,
                                recovered=tuple(tuple(by_k[k]) for k in ks),
                                removed=tuple(tuple(removals[key][k]) for k in ks)))
    divergence = DivergenceResult.load_if_exists(run_dir)
    interventions = sampled_interventions(cfg, policy, prompts, curves, directions, reward, gains)
    result = RewardAttributionResult(
        seeds=cfg.seeds, n_prompts=len(prompts), gain=tuple(gains), patching=_site_rows(patching),
        weight_swap=_site_rows(swaps), curves=tuple(curves), dictionaries=tuple(infos.values()), top_latents=tuple(top),
        writer=(), divergence_ranking=divergence.ranking if divergence else (),
        dictionary_seed=dictionary_seed, seconds=time.time() - started, config=asdict(cfg), organism=organism_name,
        answer=objective.answer(policy.tokenizer), target=target, interventions=interventions)
    plot_heatmaps(result, n_layers, RewardAttributionResult.figure(run_dir, "patching"))
    plot_curves(result, RewardAttributionResult.figure(run_dir, "curves"))
    return result


def resolve_target(wanted: str, key: str, scale: float, run_dir: RunDir, objective: Organism
                   ) -> tuple[Target, Callable[..., list[float]]]:
    """The target G measures (``wanted``: "auto", "utility" or "log_ratio", the config's ``key``), and the reward
    samples are scored by: the policy's own (its organism's, or the ``python:``/``model:`` reward it was trained on)."""
    spec = PolicyResult.load(run_dir).reward if PolicyResult.exists(run_dir) else "vader"
    has_utility = is_lexicon(spec) or spec.startswith("organism:")
    if wanted == "utility" and not has_utility:
        raise UserError(f"{key} = 'utility' needs a token-level utility, and the policy's reward {spec!r} has none; "
                        "set it to 'log_ratio' (or 'auto')")
    target: Target = "log_ratio" if wanted == "log_ratio" or not has_utility else "utility"
    return target, objective.reward if has_utility else make_reward(spec, run_dir, scale=scale)


def sampled_interventions(cfg: RewardAttributionConfig, policy: HookedModel, prompts: list[str], curves: list[Curve],
                          directions: dict[tuple[str, str], Tensor], reward: Callable[..., list[float]],
                          gains: list[GainEstimate]) -> tuple[SampledIntervention, ...]:
    """The policy's sampled reward with the best dictionary's top ``intervention_k`` latents (by attribution, the
    first seed's ranking) projected out at their hook, beside the unedited policy's (``gains``: its samples of the
    same prompts with the same seed, drawn by the same sampler), once per sampling seed: what the exact target's
    verdict means for the reward itself."""
    k = cfg.intervention_k
    ranked = [c for c in curves if c.ranking == "attribution" and k in c.ks and (c.hook, c.dictionary) in directions]
    if not ranked:
        return ()
    best = max(ranked, key=lambda c: float(np.mean([min(a, b) for a, b in zip(c.recovered[c.ks.index(k)],
                                                                                c.removed[c.ks.index(k)])])))
    hooks = directional_ablation(best.hook, directions[(best.hook, best.dictionary)])
    edited = reward_under_hooks(policy, hooks, prompts, seeds=cfg.seeds, max_new_tokens=cfg.max_new_tokens, reward=reward)
    return tuple(SampledIntervention(best.hook, best.dictionary, k, g.seed, g.sampled_policy, e["mean_reward"],
                                     e["kl_per_token"]) for g, e in zip(gains, edited, strict=True))


# -- figures ------------------------------------------------------------------------------------


def heat_grid(rows: tuple[SiteFractions, ...], n_layers: int, direction: str) -> tuple[list[str], list[str], np.ndarray]:
    """Rows embed, layer 0..n-1, unembed, all; one column per component; mean over seeds (NaN where no site)."""
    components = sorted({r.component for r in rows if r.layer is not None}, key=lambda c: [r.component for r in rows].index(c))
    labels = ["embed", *[f"layer {i}" for i in range(n_layers)], "unembed", "all"]
    grid = np.full((len(labels), len(components)), np.nan)
    for r in rows:
        value = float(np.mean(getattr(r, direction)))
        if r.layer is not None:
            grid[1 + r.layer, components.index(r.component)] = value
        else:
            grid[labels.index(r.component), 0] = value
    return labels, components, grid


def plot_heatmaps(result: RewardAttributionResult, n_layers: int, path: Path) -> None:
    fig, axes = plt.subplots(2, 2, figsize=(9, 2.2 + 0.55 * (n_layers + 3)), dpi=110)
    for row, (name, sites) in enumerate((("activation patching", result.patching), ("weight swap", result.weight_swap))):
        for col, direction in enumerate(("recovered", "removed")):
            labels, components, grid = heat_grid(sites, n_layers, direction)
            ax = axes[row, col]
            ax.imshow(grid, cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto")
            for (i, j), v in np.ndenumerate(grid):
                if not np.isnan(v):
                    ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7)
            ax.set_xticks(range(len(components)), components, fontsize=8)
            ax.set_yticks(range(len(labels)), labels, fontsize=8)
            ax.set_title(f"{name}: fraction of G {direction}", fontsize=9)
    save_figure(fig, path)


def plot_curves(result: RewardAttributionResult, path: Path) -> None:
    hooks = sorted({c.hook for c in result.curves})
    fig, axes = plt.subplots(max(1, len(hooks)), 2, figsize=(10, 3 * max(1, len(hooks))), dpi=100, squeeze=False)
    styles = {"attribution": "-", "random": ":", "implicit_reward_probe": "--", "writer_probe": "-."}
    colours = {name: f"C{i}" for i, name in enumerate(sorted({c.dictionary for c in result.curves}))}
    for row, hook in enumerate(hooks):
        for col, direction in enumerate(("recovered", "removed")):
            ax = axes[row, col]
            for c in (c for c in result.curves if c.hook == hook):
                values = np.array(getattr(c, direction))
                ax.errorbar(c.ks, values.mean(1), yerr=values.std(1), label=c.method, linestyle=styles.get(c.ranking, "-"),
                            color=colours[c.dictionary], marker="o", markersize=3, capsize=2)
            ax.axhline(0.5, color="grey", linewidth=0.8, linestyle="--")
            ax.set_xscale("log")
            ax.set(title=f"{hook}: fraction of G {direction}", xlabel="k latents spliced", ylabel="fraction of G")
            ax.grid(alpha=0.3)
    axes[0, 1].legend(fontsize=6, loc="best")
    save_figure(fig, path)
