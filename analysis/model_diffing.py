"""Model diffing beyond MMCS, scored against the reward the organism knows exactly.

Five ways to find what the fine-tune added at a hook, each naming its top-k "policy-specific"
latents (or, for KL, tokens):
- ``mmcs_diff``: policy SAE features without a close base match, then those whose firing
  frequency changed most (the feature-diff stage's ranking);
- ``crosscoder_scaling``: BatchTopK crosscoder latents leaning to the policy by relative
  decoder norm, ranked by latent scaling (the base explains them least);
- ``crosscoder_norm``: the same latents ranked by relative decoder norm alone;
- ``difference_dictionary``: latents of a dictionary reading the base and writing the
  policy, ranked by how much they write along (policy - base);
- ``difference_sae``: an SAE-Lens BatchTopK SAE on (policy - base) activations, ranked
  by the mass they reconstruct;
- ``kl``: the tokens the policy up-weights where its next-token distribution moved most.

Each is scored on held-out tokens against the known reward: the share of its latents whose
activation correlates with the current token's valence beyond a threshold, precision and
recall of the high-utility vocabulary among their top logit tokens, and the change in the
policy's reward when their decoder directions are projected out of the hook.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from einops import einsum
from jaxtyping import Float
from sae_lens import SAE, SAETrainer
from torch import Tensor
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase

from analysis.activations import load_shards
from analysis.config import ModelDiffingConfig  # noqa: F401  (re-exported: callers import it from here)
from analysis.contexts import CachedText, display_tokens, load_cached_text, top_windows
from analysis.crosscoder import (
    BatchTopKCrosscoder,
    decoder_cosines,
    evaluate,
    latent_scaling,
    load_crosscoder,
    paired_stream,
    relative_norms,
    save_crosscoder,
    train_crosscoder,
)
from analysis.dictionaries import DictionaryConfig, load_sae, make_sae, trainer_config
from analysis.feature_diff import diff_features, histogram_counts, pearson, policy_vocabulary
from analysis.interventions import directional_ablation, reward_under_hooks
from analysis.mmcs import max_cosine
from analysis.results import (
    AblationEffect,
    ActivationIndex,
    CardExample,
    CrosscoderMetrics,
    KLTokens,
    LatentCard,
    LatentHistogram,
    LatentStats,
    LayerDiffing,
    MethodScore,
    ModelDiffingResult,
    SeedStat,
)
from rlhf.errors import UserError
from rlhf.hooked import load_hf, to_hooked
from rlhf.plots import plt, save_figure
from rlhf.policy import prompts_from_texts
from rlhf.policy.sampling import kl_divergence
from rlhf.rewards import UtilityReward
from rlhf.rundir import RunDir, atomic_dir, hook_dirname
from rlhf.seeding import seeded

METHODS = ("mmcs_diff", "crosscoder_scaling", "crosscoder_norm", "difference_dictionary", "difference_sae", "kl")
SCORES = ("share_tracking_reward", "mean_abs_corr", "precision", "recall", "reward_change", "kl_per_token")


@dataclass
class Found:
    """What a method names at one hook: latents with held-out activations and policy-space directions."""

    latents: list[int]
    activations: Float[Tensor, "tokens k"]
    directions: Float[Tensor, "k d"]


@dataclass
class Crosscoded:
    """One training seed's crosscoder at a hook: its numbers, per-latent statistics and held-out codes."""

    metrics: CrosscoderMetrics
    latents: LatentStats
    codes: Float[Tensor, "tokens latents"]
    crosscoder: BatchTopKCrosscoder


def _val(run_dir: RunDir, model: str, hook: str) -> Float[Tensor, "tokens d"]:
    return torch.cat(list(load_shards(run_dir.activations(model, hook, "val"))))


def _unchanged(run_dir: RunDir, hook: str, rtol: float = 1e-6) -> bool:
    """Whether the policy's held-out activations at ``hook`` equal the base's (to float noise)."""
    base, policy = _val(run_dir, "base", hook), _val(run_dir, "policy", hook)
    return float((policy - base).norm()) <= rtol * float(base.norm())


def _chunks(x: Float[Tensor, "tokens ..."], size: int = 4096) -> list[Tensor]:
    return [x[i : i + size] for i in range(0, len(x), size)]


def _pick(ranked: list[int], codes: Float[Tensor, "tokens latents"], directions: Float[Tensor, "latents d"],
          k: int) -> Found:
    top = ranked[:k]
    return Found(top, codes[:, top], directions[top])


@torch.no_grad()
def _codes(model: torch.nn.Module, x: Float[Tensor, "tokens ..."]) -> Float[Tensor, "tokens latents"]:
    return torch.cat([model.encode(c) for c in _chunks(x)])


def _train_or_load(path: Path, train: Callable[[], BatchTopKCrosscoder]) -> BatchTopKCrosscoder:
    """A dictionary saved by an earlier (killed) run of the stage is reused."""
    if path.exists():
        return load_crosscoder(path)
    model = train()
    save_crosscoder(model, path)
    return model


def _difference_sae(cfg: ModelDiffingConfig, run_dir: RunDir, hook: str, seed: int, out: Path) -> SAE:
    """SAE-Lens BatchTopK SAE on policy - base activations of the same training tokens."""
    if (out / "cfg.json").exists():
        return load_sae(out)
    cc = cfg.crosscoder
    dcfg = DictionaryConfig(architecture="batchtopk", k=cc.k, training_tokens=cc.training_tokens,
                            batch_size=cc.batch_size, learning_rate=cc.learning_rate, seed=seed)
    pairs = paired_stream([run_dir.activations(m, hook, "train") for m in ("base", "policy")], cc.batch_size, seed)
    first = next(pairs)
    diffs = (b[:, 1] - b[:, 0] for b in itertools.chain([first], pairs))
    with seeded(seed):  # SAE-Lens takes no generator: its initialisation and training draw from the global one
        sae = make_sae(dcfg, first.shape[-1], cc.expansion)
        trained = SAETrainer(trainer_config(dcfg), sae, diffs).fit()
    trained.cfg.metadata.hook_name = hook
    with atomic_dir(out) as work:
        trained.save_inference_model(work)
    return load_sae(out)


def find_latents(cfg: ModelDiffingConfig, run_dir: RunDir, hook: str, seed: int, base: Float[Tensor, "tokens d"],
                 policy: Float[Tensor, "tokens d"], work: Path) -> tuple[dict[str, Found], Crosscoded]:
    """The crosscoder and difference-dictionary methods for one training seed, and the crosscoder's own numbers."""
    cc = replace(cfg.crosscoder, seed=seed)
    train_dirs = [run_dir.activations(m, hook, "train") for m in ("base", "policy")]
    crosscoder = _train_or_load(work / f"crosscoder_seed{seed}.safetensors", lambda: train_crosscoder(
        cc, paired_stream(train_dirs, cc.batch_size, seed), [0, 1], [0, 1], progress=f"crosscoder {hook}"))
    held = _chunks(torch.stack([base, policy], 1))
    metrics = evaluate(crosscoder, held, [0, 1], [0, 1])
    scaling = latent_scaling(crosscoder, held)
    rel, cos = relative_norms(crosscoder).detach(), decoder_cosines(crosscoder).detach()
    freq = torch.tensor(metrics["firing_frequency"])
    codes = _codes(crosscoder, torch.stack([base, policy], 1))  # under no_grad: no graph over held-out tokens
    leaning = [int(i) for i in ((rel > cfg.relative_norm_threshold) & (freq > 0)).nonzero()[:, 0]]
    # A latent is as specific as the larger of its two ratios says; NaN (never fires) sorts last.
    specificity = torch.maximum(scaling["nu_error"].abs(), scaling["nu_recon"].abs()).nan_to_num(float("inf"))
    directions = (crosscoder.W_dec[:, 1] / crosscoder.out_scale[1]).detach()
    found = {
        "crosscoder_scaling": _pick(sorted(leaning, key=lambda i: float(specificity[i])), codes, directions, cfg.top_k),
        "crosscoder_norm": _pick(sorted(leaning, key=lambda i: -float(rel[i])), codes, directions, cfg.top_k),
    }
    diff_dict = _train_or_load(work / f"difference_dictionary_seed{seed}.safetensors", lambda: train_crosscoder(
        cc, paired_stream(train_dirs, cc.batch_size, seed), [0], [1], progress=f"difference dictionary {hook}"))
    dd_codes = _codes(diff_dict, base[:, None])
    dd_dirs = (diff_dict.W_dec[:, 0] / diff_dict.out_scale[0]).detach()
    # How much each latent writes along the actual difference, per unit of direction.
    along = einsum(dd_codes, policy - base, dd_dirs, "t m, t d, m d -> m") / dd_dirs.norm(dim=-1).clamp(min=1e-12)
    found["difference_dictionary"] = _pick(torch.argsort(along, descending=True).tolist(), dd_codes, dd_dirs, cfg.top_k)
    dd_metrics = evaluate(diff_dict, _chunks(torch.stack([base, policy], 1)), [0], [1])
    sae = _difference_sae(cfg, run_dir, hook, seed, work / f"difference_sae_seed{seed}")
    ds_codes = torch.cat([sae.encode(c).detach() for c in _chunks(policy - base)])
    mass = ds_codes.mean(0) * sae.W_dec.detach().norm(dim=-1)
    found["difference_sae"] = _pick(torch.argsort(mass, descending=True).tolist(), ds_codes, sae.W_dec.detach(), cfg.top_k)
    numbers = CrosscoderMetrics(
        explained_variance=dict(zip(("base", "policy"), metrics["explained_variance"])), l0=metrics["l0"],
        dead_fraction=metrics["dead_fraction"], n_latents=crosscoder.n_latents, policy_leaning=len(leaning),
        policy_specific_after_scaling=int(sum(float(specificity[i]) < cfg.max_nu for i in leaning)),
        difference_dictionary_explained_variance=dd_metrics["explained_variance"][0],
        difference_dictionary_dead_fraction=dd_metrics["dead_fraction"],
    )
    latents = LatentStats(relative_norm=tuple(rel.tolist()), cosine=tuple(cos.tolist()), frequency=tuple(freq.tolist()),
                          nu_error=tuple(scaling["nu_error"].tolist()), nu_recon=tuple(scaling["nu_recon"].tolist()))
    return found, Crosscoded(numbers, latents, codes, crosscoder)


@torch.no_grad()
def kl_tokens(run_dir: RunDir, tokenizer: PreTrainedTokenizerBase, texts: list[str], n: int) -> tuple[list[int], dict]:
    """Tokens the policy up-weights where its next-token distribution moved most from the base's:
    the top 2% positions by KL(policy || base) on held-out texts, probability shifts summed there."""
    policy, base = load_hf(run_dir.policy).eval(), load_hf(run_dir.base).eval()
    kls, shifts = [], []
    for start in range(0, len(texts), 64):
        enc = tokenizer(texts[start : start + 64], padding=True, return_tensors="pt")
        lp = torch.log_softmax(policy(**enc).logits.float(), -1)
        lq = torch.log_softmax(base(**enc).logits.float(), -1)
        mask = enc["attention_mask"].bool()
        kls.append(kl_divergence(lp, lq)[mask])
        shifts.append((lp.exp() - lq.exp())[mask])
    kl, shift = torch.cat(kls), torch.cat(shifts)
    top = torch.topk(kl, max(1, len(kl) // 50)).indices
    moved = shift[top].sum(0)[: len(tokenizer)]
    return torch.topk(moved, n).indices.tolist(), {"positions": len(kl), "mean_kl": float(kl.mean()),
                                                   "top_positions_mean_kl": float(kl[top].mean())}


def score(found: Found, token_valence_held: Float[Tensor, " tokens"], unembed: Float[Tensor, "d vocab"], high: set[int],
          cfg: ModelDiffingConfig, seed: int) -> MethodScore:
    """How well a method's latents match the known reward (ablation is scored separately)."""
    corr = pearson(found.activations, token_valence_held) if found.latents else torch.zeros(0)
    logits = found.directions.float() @ unembed
    tokens = set(torch.topk(logits, cfg.logit_tokens, dim=-1).indices.flatten().tolist()) if found.latents else set()
    hits = len(tokens & high)
    return MethodScore(
        seed=seed, latents=tuple(found.latents), n=len(found.latents),
        share_tracking_reward=float((corr.abs() > cfg.corr_threshold).float().mean()) if found.latents else 0.0,
        mean_abs_corr=float(corr.abs().mean()) if found.latents else 0.0,
        precision=hits / len(tokens) if tokens else 0.0, recall=hits / len(high) if high else 0.0)


def _token_score(tokens: list[int], high: set[int]) -> MethodScore:
    hits = len(set(tokens) & high)
    return MethodScore(seed=0, latents=(), n=0, share_tracking_reward=None, mean_abs_corr=None,
                       precision=hits / len(tokens) if tokens else 0.0, recall=hits / len(high) if high else 0.0)


def _card(i: int, codes: Float[Tensor, "tokens latents"], crosscoder: BatchTopKCrosscoder, latents: LatentStats,
          text: CachedText, shared: _Shared, cfg: ModelDiffingConfig) -> LatentCard:
    """A crosscoder latent's card data: its write into each model on its top held-out texts."""
    norms = crosscoder.decoder_norms().detach()[i] / crosscoder.out_scale
    values = codes[:, i]
    logits = (crosscoder.W_dec[i, 1] / crosscoder.out_scale[1]).detach() @ shared.unembed
    active = values[values > 0]
    edges = torch.linspace(0, float(active.max()) if len(active) else 1.0, 21)
    return LatentCard(
        latent=i, relative_norm=latents.relative_norm[i], cosine=latents.cosine[i], nu_error=latents.nu_error[i],
        nu_recon=latents.nu_recon[i], frequency=latents.frequency[i],
        top_logit_tokens=tuple(shared.vocab[t] for t in torch.topk(logits, 5).indices.tolist()),
        bottom_logit_tokens=tuple(shared.vocab[t] for t in torch.topk(-logits, 5).indices.tolist()),
        histogram=LatentHistogram(tuple(edges.tolist()), histogram_counts(active, edges)),
        examples=tuple(CardExample(tuple(display_tokens(shared.tokenizer, text.tokens[lo:hi].tolist())),
                                   tuple((values[lo:hi] * norms[1]).tolist()), tuple((values[lo:hi] * norms[0]).tolist()))
                       for lo, hi in top_windows(values, text, 3, cfg.context, cfg.context // 3)),
    )


def _summary(layers: list[LayerDiffing]) -> dict[str, dict[str, SeedStat]]:
    """Per method: each score averaged over layers, then mean and spread over the dictionary seeds."""
    out = {}
    for method in METHODS:
        per_seed: dict[int, dict[str, list[float]]] = {}
        for layer in layers:
            for row in layer.methods.get(method, ()):
                bucket = per_seed.setdefault(row.seed, {})
                for key in SCORES:
                    if getattr(row, key) is not None:
                        bucket.setdefault(key, []).append(getattr(row, key))
        if not per_seed:
            continue
        keys = set().union(*per_seed.values())
        out[method] = {key: SeedStat(mean=float(np.mean([np.mean(b[key]) for b in per_seed.values() if key in b])),
                                     std=float(np.std([np.mean(b[key]) for b in per_seed.values() if key in b])),
                                     seeds=len(per_seed)) for key in sorted(keys)}
    return out


def _plot(layers: list[LayerDiffing], threshold: float, out: Path) -> None:
    fig, axes = plt.subplots(1, len(layers), figsize=(3.6 * len(layers), 3.2), squeeze=False)
    for ax, layer in zip(axes[0], layers):
        lat = layer.latents
        rel = np.asarray(lat.relative_norm)
        nu = np.asarray(lat.nu_error, dtype=float)
        live = np.asarray(lat.frequency) > 0
        ax.scatter(rel[live], np.clip(nu[live], -0.5, 1.5), s=6, alpha=0.6)
        ax.axvline(threshold, color="grey", linestyle="--", linewidth=1)
        ax.set(title=layer.hook, xlabel="relative decoder norm (policy)", ylabel="nu (error), clipped")
        ax.set_xlim(0, 1)
    fig.suptitle("Crosscoder latents: relative norm vs latent scaling (low nu: the base lacks it)", fontsize=10)
    save_figure(fig, out)


@dataclass
class _Shared:
    """What every layer's diffing reads: the vocabulary with its known reward, and the ablation runner."""

    tokenizer: PreTrainedTokenizerBase
    vocab: list[str]
    token_valence: Float[Tensor, " vocab"]
    unembed: Float[Tensor, "d vocab"]
    high: set[int]
    kl_top: list[int]
    ablate: Callable[[str, Tensor], AblationEffect]


def work_dir(run_dir: RunDir, hook: str) -> Path:
    """Where the stage keeps one hook's trained dictionaries (reused by a re-run)."""
    return run_dir.stage_dir("model_diffing") / hook_dirname(hook)


def diff_layer(cfg: ModelDiffingConfig, run_dir: RunDir, hook: str, shared: _Shared) -> LayerDiffing:
    """Every method at one hook: its latents, their scores against the reward, crosscoder numbers and cards."""
    work = work_dir(run_dir, hook)
    base, policy = _val(run_dir, "base", hook), _val(run_dir, "policy", hook)
    text = load_cached_text(run_dir.activations("policy", hook, "val"))
    held_valence = shared.token_valence[text.tokens]
    sae_p = load_sae(run_dir.sae("policy", hook, cfg.mmcs_size))
    sae_b = load_sae(run_dir.sae("base", hook, cfg.mmcs_size))
    mcs, match = max_cosine(sae_p.W_dec, sae_b.W_dec)
    codes_p, codes_b = _codes(sae_p, policy).detach(), _codes(sae_b, base).detach()
    new, changed = diff_features(mcs, (codes_p > 0).float().mean(0), (codes_b > 0).float().mean(0)[match],
                                 cfg.match_threshold)
    found = {("mmcs_diff", 0): _pick(new + changed, codes_p, sae_p.W_dec.detach(), cfg.top_k)}
    crosscoders: dict[int, Crosscoded] = {}
    for seed in cfg.seeds:
        by_method, crosscoders[seed] = find_latents(cfg, run_dir, hook, seed, base, policy, work)
        found |= {(name, seed): f for name, f in by_method.items()}
    methods: dict[str, list[MethodScore]] = {}
    for (name, seed), f in found.items():
        row = score(f, held_valence, shared.unembed, shared.high, cfg, seed)
        if f.latents:
            effect = shared.ablate(hook, f.directions)
            row = replace(row, reward_change=effect.reward_change, kl_per_token=effect.kl_per_token)
        methods.setdefault(name, []).append(row)
    methods["kl"] = [_token_score(shared.kl_top, shared.high)]
    random_dirs = torch.randn(cfg.top_k, base.shape[-1], generator=torch.Generator().manual_seed(0))
    first = crosscoders[cfg.seeds[0]]
    lat = first.latents
    # Cards for the latents leaning furthest to the policy (whether or not they pass the threshold).
    carded = sorted((i for i, f in enumerate(lat.frequency) if f > 0), key=lambda i: -lat.relative_norm[i])
    return LayerDiffing(
        hook=hook, methods={k: tuple(v) for k, v in methods.items()}, random_directions=shared.ablate(hook, random_dirs),
        crosscoder={s: c.metrics for s, c in crosscoders.items()}, latents=lat,
        cards=tuple(_card(i, first.codes, first.crosscoder, lat, text, shared, cfg) for i in carded[: cfg.cards]),
    )


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
    unchanged = [h for h in index.hooks_at(cfg.layers) if _unchanged(run_dir, h)]
    hooks = [h for h in index.hooks_at(cfg.layers) if h not in unchanged]
    if not hooks:
        raise UserError(f"the policy's cached activations equal the base's at every hook ({', '.join(unchanged)}): "
                        "the fine-tune changed nothing up to these layers; cache later ones (divergence.layers)")
    tokenizer, vocab, token_valence, unembed = policy_vocabulary(run_dir)
    high = {i for i, v in enumerate(token_valence.tolist()) if v >= cfg.high_utility}
    if not high:
        raise UserError(f"no token has valence >= {cfg.high_utility}: lower model_diffing.high_utility")
    texts = run_dir.texts("val")
    prompts = prompts_from_texts(run_dir.texts("test"), cfg.n_prompts, 11)
    hooked = to_hooked(run_dir.policy)
    sampling = dict(seeds=cfg.sampling_seeds, max_new_tokens=cfg.max_new_tokens, reward=UtilityReward())
    unedited = {r["seed"]: r["mean_reward"] for r in reward_under_hooks(hooked, [], prompts, **sampling)}

    def ablate(hook: str, directions: Tensor) -> AblationEffect:
        runs = reward_under_hooks(hooked, directional_ablation(hook, directions), prompts, **sampling)
        return AblationEffect(reward_change=float(np.mean([r["mean_reward"] - unedited[r["seed"]] for r in runs])),
                              kl_per_token=float(np.mean([r["kl_per_token"] for r in runs])))

    kl_top, kl_info = kl_tokens(run_dir, tokenizer, texts[: cfg.kl_texts], cfg.top_k * cfg.logit_tokens)
    shared = _Shared(tokenizer, vocab, token_valence, unembed, high, kl_top, ablate)
    layers = [diff_layer(cfg, run_dir, hook, shared) for hook in tqdm(hooks, desc="model diffing", unit="layer")]
    if any(isinstance(v, float) and math.isnan(v) for layer in layers for rows in layer.methods.values()
           for row in rows for v in asdict(row).values()):
        raise FloatingPointError("a model-diffing score is NaN; check the cached activations")
    result = ModelDiffingResult(
        top_k=cfg.top_k, logit_tokens=cfg.logit_tokens, seeds=cfg.seeds, corr_threshold=cfg.corr_threshold,
        high_utility=cfg.high_utility, relative_norm_threshold=cfg.relative_norm_threshold,
        unedited_reward=float(np.mean(list(unedited.values()))), high_utility_vocabulary=len(high),
        kl=KLTokens(**kl_info, tokens=tuple(vocab[t] for t in kl_top[:20])), layers=tuple(layers),
        unchanged_hooks=tuple(unchanged),
        summary=_summary(layers), seconds=time.time() - started, config=asdict(cfg))
    _plot(layers, cfg.relative_norm_threshold, ModelDiffingResult.plot_path(run_dir))
    result.save(run_dir)
    return result
