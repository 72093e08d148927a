"""The writer probe: where the implicit-reward probe reads valence at a word, this one asks which
features *write* the reward: from a model's features at each completion position to the expected
utility of the next token it chooses, E_{t ~ p(.|prefix)}[u(t)].

    python -m probes.fit_linear_reward --run-dir runs/sentiment --target next_utility

A ridge regression (scikit-learn, alpha by cross-validation) on held-out prompts (every
position of a test prompt is held out), scored by Kendall tau and R^2 beside untrained
probes (random weights on the same standardised features). Its top features go through the
reward-attribution stage's splicing curves.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from jaxtyping import Float
from scipy.stats import kendalltau
from sklearn.metrics import r2_score
from sklearn.preprocessing import StandardScaler

from analysis.dictionaries import load_sae
from analysis.reward_gain import Completions, next_token_utility, sample_completions
from probes.config import WriterProbeConfig
from probes.features import TOP_FEATURES, layer_hooks
from probes.metrics import fit_ridge, ridge_alpha
from probes.results import TopFeature, WriterProbeResult
from rlhf.errors import UserError
from rlhf.hooked import HookedModel, to_hooked
from rlhf.organisms.objective import run_organism
from rlhf.policy import prompts_from_texts
from rlhf.reward_kinds import RewardOptions
from rlhf.rundir import RunDir

NULL_DRAWS = 30


@torch.no_grad()
def position_features(model: HookedModel, batch: Completions, hooks: list[str],
                      saes: list[torch.nn.Module] | None) -> tuple[Float[np.ndarray, "n f"], Float[np.ndarray, " n"],
                                                                    np.ndarray]:
    """Features (SAE codes or activations of the hooks, concatenated), the expected next-token utility,
    and the row (prompt) of every scored position."""
    xs, ys, rows = [], [], []
    offset = 0
    for (tokens, scored), u in zip(batch.groups, batch.utility):
        logits, cache = model.run_with_cache(tokens, names_filter=lambda n: n in hooks)
        parts = [cache[h] if saes is None else saes[i].encode(cache[h]) for i, h in enumerate(hooks)]
        where = scored.nonzero()
        xs.append(torch.cat(parts, -1)[where[:, 0], where[:, 1]].float())
        ys.append(next_token_utility(logits, u)[where[:, 0], where[:, 1]])
        rows.append(where[:, 0] + offset)
        offset += len(tokens)
    return (torch.cat(xs).cpu().double().numpy(), torch.cat(ys).cpu().double().numpy(), torch.cat(rows).cpu().numpy())


def fit_writer_probe(run_dir: RunDir, cfg: WriterProbeConfig, model: HookedModel | None = None,
                     batch: Completions | None = None) -> WriterProbeResult:
    """Fit and score the writer probe (see the module docstring); ``batch``: completions to read
    (default: the model's own, sampled from ``cfg.n_prompts`` held-out prompts)."""
    started = time.time()
    hooks = layer_hooks(run_dir, cfg.model, cfg.layers, cfg.size)
    model = model or to_hooked(run_dir.model(cfg.model))
    if batch is None:
        prompts = prompts_from_texts(run_dir.texts("test"), cfg.n_prompts, cfg.seed)
        _, objective = run_organism(run_dir, RewardOptions(scale=cfg.scale))
        utility = objective.utilities(model.tokenizer, model.cfg.d_vocab, prompts)
        batch = sample_completions(model, prompts, utility, max_new_tokens=cfg.max_new_tokens, seed=cfg.seed)
    if batch.n_rows < 4:
        raise UserError(f"the writer probe needs at least 4 prompts to hold some out; got {batch.n_rows}")
    saes = [load_sae(run_dir.sae(cfg.model, h, cfg.size)) for h in hooks] if cfg.features == "sae" else None
    x, y, rows = position_features(model, batch, hooks, saes)
    test_rows = np.random.default_rng(cfg.seed).permutation(batch.n_rows)[: max(1, round(batch.n_rows * cfg.test_fraction))]
    test = np.isin(rows, test_rows)
    if test.all() or not test.any() or np.ptp(y[~test]) == 0:
        raise UserError("the writer probe's training positions hold no variation in next-token utility; "
                        "use more prompts (n_prompts)")
    probe = fit_ridge(x[~test], y[~test], cfg.alpha)
    pred = probe.predict(x[test])
    scaled = StandardScaler().fit(x[~test]).transform(x[test])
    weights = np.random.default_rng(cfg.seed).normal(size=(NULL_DRAWS, x.shape[1])) / np.sqrt(x.shape[1])
    null_tau = [kendalltau(scaled @ w, y[test]).statistic for w in weights]
    coefs = probe[-1].coef_
    width = x.shape[1] // len(hooks)
    top = tuple(TopFeature(hook=hooks[i // width], feature=int(i % width), coefficient=float(coefs[i]), index=int(i))
                for i in np.argsort(-coefs)[:TOP_FEATURES] if coefs[i] > 0)
    return WriterProbeResult(
        model=cfg.model, features=cfg.features, size=cfg.size, hooks=tuple(hooks), n_features=int(x.shape[1]),
        n_prompts=batch.n_rows, train_positions=int((~test).sum()), test_positions=int(test.sum()),
        alpha=ridge_alpha(probe), kendall_tau=float(kendalltau(pred, y[test]).statistic),
        r2=float(r2_score(y[test], pred)), untrained_tau=float(np.nanmean(null_tau)),
        untrained_tau_std=float(np.nanstd(null_tau)),
        untrained_r2=float(np.mean([r2_score(y[test], scaled @ w) for w in weights])), top_features=top,
        seed=cfg.seed, seconds=time.time() - started)
