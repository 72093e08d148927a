"""The circuits stage: ``analysis.circuits`` on the run's policy and base, with the policy's completions of
held-out prompts, once per dictionary seed; writes ``analysis/circuits.json`` with its two figures."""

from __future__ import annotations

import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from analysis.circuits import (
    Circuit,
    Node,
    Site,
    Values,
    budget_check,
    circuit_value,
    edges,
    flat,
    integrated_gradient_scores,
    node_scores,
    node_token_contributions,
    node_values,
    nodes_of,
)
from analysis.config import CircuitsConfig
from analysis.dictionaries import load_sae, train_sae
from analysis.feature_attribution import site_gradients
from analysis.patching import check_pair
from analysis.results import (
    ActivationIndex,
    CheckedNode,
    CircuitSeed,
    CircuitsResult,
    GraphEdge,
    GraphNode,
    RewardAttributionResult,
    SAEIndex,
)
from analysis.reward_attribution import resolve_target
from analysis.reward_gain import Completions, expected_reward, sample_completions
from rlhf.errors import UserError
from rlhf.hooked import HookedModel, to_hooked
from rlhf.organisms.objective import run_organism
from rlhf.plots import plt, save_figure
from rlhf.policy import prompts_from_texts
from rlhf.reward_kinds import RewardOptions
from rlhf.rundir import RunDir

RESIDUAL = "blocks.{layer}.hook_resid_post"
PROMPT_SEED = 13  # the held-out prompts reward attribution reads too


def missing_sites(run_dir: RunDir, n_layers: int) -> str:
    """What is missing for circuits, in a sentence that says what to set; empty when every layer's residual
    stream is cached."""
    missing = [h for h in (RESIDUAL.format(layer=layer) for layer in range(n_layers))
               if h not in ActivationIndex.load(run_dir).all_hooks]
    if not missing:
        return ""
    return (f"circuits need the residual stream cached at every layer; missing {', '.join(missing)}: add "
            f"'{RESIDUAL}' to activations.extra_hooks and cache every layer (divergence.top_n >= {n_layers})")


def residual_hooks(run_dir: RunDir, n_layers: int) -> list[str]:
    """Every layer's residual-stream hook, each cached (a UserError naming the key to set otherwise)."""
    if problem := missing_sites(run_dir, n_layers):
        raise UserError(problem)
    return [RESIDUAL.format(layer=layer) for layer in range(n_layers)]


def circuit_sites(cfg: CircuitsConfig, run_dir: RunDir, n_layers: int, seed: int) -> list[Site]:
    """The dictionary at every layer's residual stream: the dictionaries stage's, or trained here with its
    recorded settings for another seed."""
    hooks = residual_hooks(run_dir, n_layers)
    saes = SAEIndex.load(run_dir)
    model = cfg.dictionary.removeprefix("sae_")
    trained = {e.size: e.width for e in saes.saes if e.model == model and e.hook == hooks[0]}
    if cfg.size not in trained:
        raise UserError(f"circuits.size = {cfg.size!r}, but the dictionaries stage trained {', '.join(sorted(trained))} "
                        f"at {hooks[0]}")
    width = trained[cfg.size]
    sites = []
    for layer, hook in enumerate(hooks):
        path = run_dir.sae(model, hook, cfg.size, seed=None if seed == saes.config.seed else seed)
        if not (path / "cfg.json").exists():
            train_sae(replace(saes.config, seed=seed), run_dir.activations(model, hook, "train"), width, path)
        sites.append(Site(hook, layer, load_sae(path)))
    return sites


def one_seed(cfg: CircuitsConfig, models: tuple[HookedModel, HookedModel], batch: Completions, sites: list[Site],
             seed: int) -> tuple[CircuitSeed, dict]:
    """Every measurement of one dictionary seed; also what the graph needs (its values and gradients)."""
    base, policy = models
    budget_check(sites, cfg.budgets)
    nodes = nodes_of(sites)
    policy_values, base_values = node_values(policy, batch, sites), node_values(base, batch, sites)

    def value(chosen: Circuit) -> float:
        return circuit_value(policy, base, batch, sites, base_values, chosen)

    # G from the two models run as they are: the circuits of every node and of none must give them back.
    bottom, top = (float(expected_reward(m, batch).mean()) for m in (base, policy))
    gain = top - bottom
    if abs(gain) < 1e-12:
        raise UserError("the policy's expected reward equals the base's on these completions: no circuit to find")

    def removed(chosen: list[Node]) -> float:
        return (top - value(Circuit.of(sites, chosen).complement())) / gain

    readout = removed([nodes[-1]])
    grads = site_gradients(policy, batch, [s.hook for s in sites])
    estimates = {
        "attribution": flat(sites, node_scores(sites, policy_values, base_values, grads, batch.n_rows), 0.0) / gain,
        "integrated_gradients": flat(sites, integrated_gradient_scores(policy, batch, sites, policy_values, base_values,
                                                                       cfg.ig_steps), 0.0) / gain}
    for e in estimates.values():
        e[-1] = readout  # one node, measured exactly
    checked_ids = sorted({int(i) for e in estimates.values() for i in torch.argsort(e.abs(), descending=True)[:cfg.checked_nodes]})
    real = {i: removed([nodes[i]]) for i in checked_ids}
    errors = {name: float(np.mean([abs(float(e[i]) - real[i]) for i in checked_ids])) for name, e in estimates.items()}
    estimator = min(errors, key=errors.get)
    scores = estimates[estimator]
    order = [int(i) for i in torch.argsort(scores, descending=True)]
    latent_order = [i for i in order if nodes[i].kind == "latent"]
    faithfulness, completeness, n_errors, shares, latents_only = [], [], [], [], []
    for budget in cfg.budgets:
        chosen = [nodes[i] for i in order[:budget]]
        faithfulness.append((value(Circuit.of(sites, chosen)) - bottom) / gain)
        completeness.append(removed(chosen))
        latents = [nodes[i] for i in latent_order[:budget]]
        latents_only.append(((value(Circuit.of(sites, latents)) - bottom) / gain, removed(latents)))
        n_errors.append(sum(n.kind == "error" for n in chosen))
        total = float(sum(scores[i] for i in order[:budget]))
        shares.append(float(sum(scores[i] for i in order[:budget] if nodes[i].kind == "error")) / total if total else 0.0)
    error_nodes = [n for n in nodes if n.kind == "error"]
    result = CircuitSeed(
        seed=seed, gain=gain, all_nodes=(value(Circuit.of(sites, nodes)) - bottom) / gain,
        empty=(value(Circuit.of(sites, [])) - bottom) / gain, estimator=estimator,
        attribution_error=errors["attribution"], integrated_gradients_error=errors["integrated_gradients"],
        faithfulness=tuple(faithfulness), completeness=tuple(completeness), error_nodes=tuple(n_errors),
        error_share=tuple(shares), latents_faithfulness=tuple(f for f, _ in latents_only),
        latents_completeness=tuple(c for _, c in latents_only), errors_faithfulness=(value(Circuit.of(sites, error_nodes)) - bottom) / gain,
        errors_completeness=removed(error_nodes), readout=readout,
        checked=tuple(CheckedNode(nodes[i].name, float(estimates["attribution"][i]),
                                  float(estimates["integrated_gradients"][i]), real[i]) for i in checked_ids),
        ranking=tuple(nodes[i].name for i in order[:max(cfg.budgets)]))
    return result, {"nodes": nodes, "order": order, "scores": scores, "grads": grads, "gain": gain,
                    "policy_values": policy_values, "base_values": base_values}


def graph(cfg: CircuitsConfig, policy: HookedModel, batch: Completions, sites: list[Site], found: dict
          ) -> tuple[tuple[GraphNode, ...], tuple[GraphEdge, ...]]:
    """The circuit of ``graph_budget`` nodes, its edges, and each node's top tokens."""
    nodes, scores, gain = found["nodes"], found["scores"], found["gain"]
    chosen = [nodes[i] for i in found["order"][:cfg.graph_budget]]
    values: tuple[Values, Values] = (found["policy_values"], found["base_values"])
    drawn = []
    for n in chosen:
        tokens: tuple[str, ...] = ()
        if n.kind != "readout":
            per_token = node_token_contributions(sites, n, *values, found["grads"], batch)
            best: dict[int, float] = {}
            for token, c in per_token:
                best[token] = max(best.get(token, c), c)
            tokens = tuple(policy.tokenizer.decode([t]) for t, _ in sorted(best.items(), key=lambda x: -x[1])[:cfg.top_tokens])
        drawn.append(GraphNode(n.name, n.layer, n.kind, float(scores[nodes.index(n)]), tokens))
    links = edges(policy, batch, sites, chosen, *values, found["grads"])
    return tuple(drawn), tuple(GraphEdge(u.name, d.name, w / gain) for u, d, w in links)


def circuits_stage(cfg: CircuitsConfig, run_dir: RunDir) -> CircuitsResult | None:
    """Stage: the policy's reward gain as sparse feature circuits over every layer's residual-stream dictionary."""
    if not cfg.enabled:
        return None
    started = time.time()
    if not (run_dir.policy / "config.json").exists():
        raise UserError(f"circuits need a policy, and {run_dir.policy} holds none: run the policy stage first")
    base, policy = to_hooked(run_dir.base), to_hooked(run_dir.policy)
    check_pair(base, policy)
    if problem := missing_sites(run_dir, base.cfg.n_layers):
        # As autointerp without an endpoint: a study that did not cache the sites goes on without circuits.
        print(f"[circuits] skipped: {problem}; the rest of the study does not need it", flush=True)
        return None
    organism, objective = run_organism(run_dir, RewardOptions(scale=cfg.scale))
    target, _ = resolve_target(cfg.target, "circuits.target", cfg.scale, run_dir, objective)
    prompts = prompts_from_texts(run_dir.texts("test"), cfg.n_prompts, PROMPT_SEED)
    utility = (objective.utilities(policy.tokenizer, policy.cfg.d_vocab, prompts) if target == "utility"
               else torch.zeros(len(prompts), policy.cfg.d_vocab))
    batch = sample_completions(policy, prompts, utility, max_new_tokens=cfg.max_new_tokens, seed=cfg.sampling_seed,
                               target=target)
    seeds, drawn, links, n_nodes, hooks = [], (), (), 0, ()
    for seed in tqdm(cfg.dictionary_seeds, desc="circuits", unit="dictionary seed"):
        sites = circuit_sites(cfg, run_dir, base.cfg.n_layers, seed)
        record, found = one_seed(cfg, (base, policy), batch, sites, seed)
        seeds.append(record)
        if not drawn:
            drawn, links = graph(cfg, policy, batch, sites, found)
            n_nodes, hooks = len(found["nodes"]), tuple(s.hook for s in sites)
    result = CircuitsResult(
        target=target, dictionary=cfg.dictionary, size=cfg.size, hooks=hooks, budgets=cfg.budgets,
        n_prompts=len(prompts), sampling_seed=cfg.sampling_seed, seeds=tuple(seeds), graph_nodes=drawn,
        graph_edges=links, graph_budget=cfg.graph_budget, n_nodes=n_nodes, seconds=time.time() - started,
        organism=organism, config=asdict(cfg))
    plot_curves(result, RewardAttributionResult.load_if_exists(run_dir), CircuitsResult.figure(run_dir, "curves"))
    plot_graph(result, CircuitsResult.figure(run_dir, "graph"))
    result.save(run_dir)
    return result


# -- figures ------------------------------------------------------------------------------------------------


def plot_curves(result: CircuitsResult, single: RewardAttributionResult | None, path: Path) -> None:
    """Faithfulness and completeness per budget (mean and spread over dictionary seeds), beside the single-hook
    splicing curves of reward attribution (the same dictionary, one site at a time)."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6), dpi=110)
    for ax, (key, label, curve_key) in zip(axes, (("faithfulness", "recovered (faithfulness)", "recovered"),
                                                  ("completeness", "removed (completeness)", "removed"))):
        for prefix, style, name in (("", "-", "circuit over every layer"), ("latents_", ":", "its top latents alone")):
            values = np.array([getattr(s, prefix + key) for s in result.seeds])
            ax.errorbar(result.budgets, values.mean(0), yerr=values.std(0), color="k", marker="o", capsize=3,
                        linestyle=style, label=name)
        for c in single.curves if single else ():
            if c.dictionary == result.dictionary and c.ranking == "attribution" and "resid_post" in c.hook:
                v = np.array(getattr(c, curve_key))
                ax.errorbar(c.ks, v.mean(1), yerr=v.std(1), marker=".", capsize=2, linestyle="--", alpha=0.8,
                            label=f"{c.hook} alone")
        ax.axhline(0.5, color="grey", linewidth=0.8, linestyle=":")
        ax.axhline(1.0, color="grey", linewidth=0.5)
        ax.set_xscale("log")
        ax.set(title=f"fraction of G {label}", xlabel="nodes (latents, error nodes, readout)", ylabel="fraction of G")
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7)
    save_figure(fig, path)


def plot_graph(result: CircuitsResult, path: Path) -> None:
    """Nodes by layer (the readout above the last), sized and coloured by their effect; edges by weight."""
    columns: dict[int, list[GraphNode]] = {}
    top_layer = max((n.layer for n in result.graph_nodes if n.layer is not None), default=0)
    for n in result.graph_nodes:
        columns.setdefault(top_layer + 1 if n.layer is None else n.layer, []).append(n)
    height = max((len(c) for c in columns.values()), default=1)
    fig, ax = plt.subplots(figsize=(3 + 2.6 * len(columns), 1 + 0.45 * height), dpi=110)
    where = {}
    for layer, members in columns.items():
        for i, n in enumerate(sorted(members, key=lambda n: -n.score)):
            where[n.name] = (layer, height - 1 - i * (height / max(len(members), 1)))
    largest = max((abs(e.weight) for e in result.graph_edges), default=1.0) or 1.0
    for e in result.graph_edges:
        if e.source in where and e.target in where and abs(e.weight) > 0.02 * largest:
            (x0, y0), (x1, y1) = where[e.source], where[e.target]
            ax.plot([x0, x1], [y0, y1], color="C3" if e.weight > 0 else "C0", alpha=0.6,
                    linewidth=0.4 + 3 * abs(e.weight) / largest, zorder=1)
    for n in result.graph_nodes:
        x, y = where[n.name]
        ax.scatter([x], [y], s=40 + 400 * min(abs(n.score), 1.0), color="C3" if n.score > 0 else "C0",
                   marker="s" if n.kind == "error" else "D" if n.kind == "readout" else "o", zorder=2)
        tokens = " ".join(repr(t) for t in n.tokens)
        ax.text(x + 0.08, y, f"{n.name} {n.score:+.2f}\n{tokens}", fontsize=6, va="center")
    labels = sorted(columns)
    ax.set_xticks(labels, [f"layer {i}" if i <= top_layer else "readout" for i in labels])
    ax.set_yticks([])
    ax.set_xlim(min(labels) - 0.3, max(labels) + 0.9)
    ax.set_title(f"the top {result.graph_budget} nodes (share of G; squares: error nodes; red: raise the reward); "
                 "edges between adjacent layers", fontsize=8)
    save_figure(fig, path)
