"""The model-diffing stage: load what the methods share, run every registered method at every hook
where the fine-tune changed the activations, score each finding, and save ``ModelDiffingResult``."""

from __future__ import annotations

import math
import time
from dataclasses import asdict, replace

import torch
from tqdm.auto import tqdm

from analysis.config import ModelDiffingConfig
from analysis.crosscoder import plot_relative_norms
from analysis.diffing import cards as card_data
from analysis.diffing.crosscoder import crosscoded
from analysis.diffing.difference_dictionary import trained as difference_dictionary
from analysis.diffing.method import Context, Find, HookData, held_out
from analysis.diffing.registry import METHODS
from analysis.diffing.scoring import Ablation, Splice, planted_cosine, score, summary
from analysis.results import ActivationIndex, CrosscoderMetrics, LayerDiffing, MethodScore, ModelDiffingResult
from rlhf.errors import UserError
from rlhf.registry import load
from rlhf.rundir import RunDir


def _unchanged(run_dir: RunDir, hook: str, rtol: float = 1e-6) -> bool:
    """Whether the policy's held-out activations at ``hook`` equal the base's (to float noise)."""
    base, policy = held_out(run_dir, "base", hook), held_out(run_dir, "policy", hook)
    return float((policy - base).norm()) <= rtol * float(base.norm())


def _crosscoder_metrics(ctx: Context, at: HookData, seed: int) -> CrosscoderMetrics:
    c, d = crosscoded(ctx, at, seed), difference_dictionary(ctx, at, seed)
    return CrosscoderMetrics(
        explained_variance=dict(zip(("base", "policy"), c.evaluation.explained_variance)), l0=c.evaluation.l0,
        dead_fraction=c.evaluation.dead_fraction, n_latents=c.crosscoder.n_latents, policy_leaning=len(c.leaning),
        policy_specific_after_scaling=c.policy_specific,
        difference_dictionary_explained_variance=d.evaluation.explained_variance[0],
        difference_dictionary_dead_fraction=d.evaluation.dead_fraction)


def diff_layer(ctx: Context, ablation: Ablation, splice: Splice, finders: dict[str, Find], hook: str) -> LayerDiffing:
    """Every method at one hook scored against the reward, the crosscoders' numbers and cards."""
    cfg = ctx.cfg
    at = HookData.load(ctx.run_dir, hook)
    held_utility = ctx.token_utility[at.text.tokens]
    methods: dict[str, list[MethodScore]] = {}
    records: dict[str, list] = {}
    for name, spec in tqdm(METHODS.items(), desc=hook, unit="method", leave=False):
        for i, seed in enumerate(cfg.seeds if spec.per_seed else (0,)):
            found = finders[name](ctx, at, seed)
            if found.latents if spec.names == "tokens" else found.tokens:
                raise TypeError(f"diffing method {name!r} is registered as naming {spec.names} but returned "
                                f"{len(found.latents)} latents and {len(found.tokens)} tokens")
            head = found.top(cfg.top_k)
            row = replace(score(head, held_utility, ctx, seed), planted_cosine=planted_cosine(head, hook, ctx))
            # The sampled ablation, the weakest score, for the first dictionary seed only: the splice
            # scores every seed's directions causally, without sampling.
            row = ablation.scored(row, hook, head) if i == 0 else row
            methods.setdefault(name, []).append(splice.scored(row, hook, found))
            if (found.record is not None) != bool(spec.record):
                raise TypeError(f"diffing method {name!r} registers record={spec.record!r} but returned "
                                f"{type(found.record).__name__}")
            if found.record is not None:
                records.setdefault(name, []).append(found.record)
    random_dirs = torch.randn(cfg.top_k, at.base.shape[-1], generator=torch.Generator().manual_seed(0))
    first = crosscoded(ctx, at, cfg.seeds[0])
    live_norms = {f"seed {s}": [r for r, f in zip(c.latents.relative_norm, c.latents.frequency) if f > 0]
                  for s, c in ((s, crosscoded(ctx, at, s)) for s in cfg.seeds)}
    plot_relative_norms(ModelDiffingResult.figure(ctx.run_dir, "relative_norms", hook=hook), live_norms,
                        title=f"crosscoder relative decoder norms, {hook}", threshold=cfg.relative_norm_threshold)
    return LayerDiffing(
        hook=hook, methods={k: tuple(v) for k, v in methods.items()}, random_directions=ablation(hook, random_dirs),
        crosscoder={s: _crosscoder_metrics(ctx, at, s) for s in cfg.seeds}, latents=first.latents,
        cards=card_data.latent_cards(first, at, ctx),
        cards_set_aside=int(sum(f == 0 for f in first.latents.frequency)),
        random_splice=splice.random(hook, at.base.shape[-1]),
        records={k: tuple(v) for k, v in records.items()})


def model_diffing_stage(cfg: ModelDiffingConfig, run_dir: RunDir) -> ModelDiffingResult | None:
    """Stage: train the crosscoders and difference dictionaries, score every method against the
    known reward, and write ``analysis/model_diffing.json`` with a plot and crosscoder cards."""
    if not cfg.enabled:
        return None
    if not cfg.seeds:
        raise UserError("model_diffing.seeds is empty: give at least one training seed")
    started = time.time()
    index = ActivationIndex.load(run_dir)
    if not {"base", "policy"} <= set(index.model_names):
        raise UserError("model diffing needs cached activations of both base and policy (activations.models)")
    missing = [layer for layer in cfg.layers if layer not in index.by_layer]
    if missing:
        raise UserError(f"model_diffing.layers {missing} are not cached; cached layers: {sorted(index.by_layer)}")
    # Where the fine-tune left the activations as they were (layers before the first changed weight),
    # every difference is zero: there is nothing to diff, and a dictionary of zeros cannot be trained.
    cached = index.hooks_at(cfg.layers, every_kind=True)
    unchanged = [h for h in cached if _unchanged(run_dir, h)]
    hooks = [h for h in cached if h not in unchanged]
    if not hooks:
        raise UserError(f"the policy's cached activations equal the base's at every hook ({', '.join(unchanged)}): "
                        "the fine-tune changed nothing up to these layers; cache later ones (divergence.layers)")
    ctx = Context.load(cfg, run_dir)
    ablation, splice = Ablation.load(ctx), Splice.load(ctx)
    finders = {name: spec.finder() for name, spec in METHODS.items()}
    layers = [diff_layer(ctx, ablation, splice, finders, hook) for hook in tqdm(hooks, desc="model diffing", unit="layer")]
    # Each method's once-per-run step reads its records at every hook (and what its finder measured once).
    once = {name: load(spec.once)(ctx, {layer.hook: layer.records.get(name, ()) for layer in layers})
            for name, spec in METHODS.items() if spec.once}
    if any(isinstance(v, float) and math.isnan(v) for layer in layers for rows in layer.methods.values()
           for row in rows for v in asdict(row).values()):
        raise FloatingPointError("a model-diffing score is NaN; check the cached activations")
    result = ModelDiffingResult(
        top_k=cfg.top_k, logit_tokens=cfg.logit_tokens, seeds=cfg.seeds, corr_threshold=cfg.corr_threshold,
        high_utility=cfg.high_utility, relative_norm_threshold=cfg.relative_norm_threshold,
        unedited_reward=ablation.unedited_reward, high_utility_vocabulary=len(ctx.high),
        layers=tuple(layers), unchanged_hooks=tuple(unchanged), summary=summary(layers, list(METHODS)),
        seconds=time.time() - started, config=asdict(cfg), gain=splice.gain,
        per_run={name: record for name, record in once.items() if record is not None})
    card_data.plot(layers, cfg.relative_norm_threshold, ModelDiffingResult.figure(run_dir, "scores"))
    result.save(run_dir)
    return result
