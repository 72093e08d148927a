"""What changed between the base and the policy dictionaries, feature by feature.

Each policy feature is matched to its closest base feature by decoder cosine (MCS).
Three rankings of the policy features that fire on held-out text (the others are counted and
set aside): (a) policy features with no close base match, (b) matched pairs whose firing
frequency changed most on the same held-out tokens, (c) features whose decoder direction
writes most towards high-utility tokens through the unembedding. For the organism each feature
is also scored against the known reward: the correlation of its activation with the VADER
valence of the current token.
"""

from __future__ import annotations

import time
from dataclasses import asdict

import torch
from einops import einsum
from jaxtyping import Float
from sae_lens import SAE
from torch import Tensor
from transformers import PreTrainedTokenizerBase

from analysis.activations import load_shards
from analysis.config import FeatureDiffConfig  # noqa: F401  (re-exported: callers import it from here)
from analysis.contexts import display_tokens, load_cached_text, top_windows
from analysis.dictionaries import load_sae
from analysis.mmcs import max_cosine
from analysis.results import (
    ActivationIndex,
    CardExample,
    FeatureCard,
    FeatureDiffResult,
    FeatureHistogram,
    FeatureRow,
    HookFeatureDiff,
    RewardTracking,
)
from rlhf.errors import UserError
from rlhf.hooked import load_hf
from rlhf.lexicon import token_valence as lexicon_valence
from rlhf.rundir import RunDir
from rlhf.tokenizer import load_tokenizer


def pearson(x: Float[Tensor, "tokens features"], y: Float[Tensor, " tokens"]) -> Float[Tensor, " features"]:
    """Correlation of each column of ``x`` (tokens, features) with ``y`` (tokens,); 0 for constant columns."""
    xc, yc = x - x.mean(0), y - y.mean()
    denom = xc.norm(dim=0) * yc.norm()
    return torch.where(denom > 0, einsum(xc, yc, "t f, t -> f") / denom.clamp(min=1e-12), torch.zeros_like(denom))


def diff_features(mcs: Float[Tensor, " features"], freq_policy: Float[Tensor, " features"],
                  freq_base_match: Float[Tensor, " features"], threshold: float) -> tuple[list[int], list[int]]:
    """The MMCS diff of two dictionaries: policy features without a base match (cosine below
    ``threshold``) by firing frequency, and matched ones by how much their frequency changed."""
    new = [int(i) for i in torch.argsort(freq_policy, descending=True) if mcs[i] < threshold]
    matched = (mcs >= threshold).nonzero()[:, 0]
    change = (freq_policy - freq_base_match).abs()
    return new, [int(i) for i in matched[torch.argsort(change[matched], descending=True)]]


def _check_comparable(sae_p: SAE, sae_b: SAE, hook: str) -> None:
    hooks = {sae.cfg.metadata.hook_name for sae in (sae_p, sae_b)} - {None}
    if hooks - {hook}:
        raise UserError(f"dictionaries for {hook} were trained on different hooks: {sorted(hooks)}; retrain them "
                        "with `python -m study run --force dictionaries`")
    if sae_p.W_dec.shape != sae_b.W_dec.shape:
        raise UserError(f"base and policy dictionaries at {hook} cannot be compared feature by feature: shapes "
                        f"{tuple(sae_b.W_dec.shape)} vs {tuple(sae_p.W_dec.shape)}")


def histogram_counts(values: Float[Tensor, " n"], edges: Float[Tensor, " bins_plus_one"]) -> tuple[int, ...]:
    return tuple(torch.histogram(values, edges).hist.long().tolist())


@torch.no_grad()
def diff_hook(run_dir: RunDir, hook: str, cfg: FeatureDiffConfig, token_valence: Float[Tensor, " vocab"],
              unembed: Float[Tensor, "d vocab"], vocab: list[str], tokenizer: PreTrainedTokenizerBase) -> HookFeatureDiff:
    sae_p = load_sae(run_dir.sae("policy", hook, cfg.size))
    sae_b = load_sae(run_dir.sae("base", hook, cfg.size))
    _check_comparable(sae_p, sae_b, hook)
    mcs, match = max_cosine(sae_p.W_dec, sae_b.W_dec)
    # Both caches hold the same held-out tokens, so the codes line up token by token.
    codes_p = torch.cat([sae_p.encode(x) for x in load_shards(run_dir.activations("policy", hook, "val"))])
    codes_b = torch.cat([sae_b.encode(x) for x in load_shards(run_dir.activations("base", hook, "val"))])
    text = load_cached_text(run_dir.activations("policy", hook, "val"))
    tokens = text.tokens
    freq_p, freq_b = (codes_p > 0).float().mean(0), (codes_b > 0).float().mean(0)
    mean_p, mean_b = codes_p.mean(0), codes_b.mean(0)
    utility_corr = pearson(codes_p, token_valence[tokens])
    utility_corr_base = pearson(codes_b, token_valence[tokens])
    logits = einsum(sae_p.W_dec, unembed, "f d, d v -> f v")  # direct logit effect of each feature
    alignment = pearson(logits.T, token_valence)  # does the feature push up high-valence tokens?

    def row(i: int) -> dict:
        j = int(match[i])
        top = torch.topk(logits[i], 5).indices.tolist()
        bottom = torch.topk(-logits[i], 5).indices.tolist()
        return {"feature": i, "base_match": j, "mcs": float(mcs[i]), "freq_policy": float(freq_p[i]),
                "freq_base_match": float(freq_b[j]), "mean_policy": float(mean_p[i]), "mean_base_match": float(mean_b[j]),
                "utility_corr": float(utility_corr[i]), "utility_corr_base_match": float(utility_corr_base[j]),
                "logit_alignment": float(alignment[i]),
                "top_logit_tokens": tuple(vocab[t] for t in top), "bottom_logit_tokens": tuple(vocab[t] for t in bottom)}

    def card(i: int) -> FeatureCard:
        """Policy feature i's card data: the held-out texts where it fires most, with both models' activations on them."""
        j = int(match[i])
        shown = tuple(CardExample(tuple(display_tokens(tokenizer, tokens[lo:hi].tolist())),
                                  tuple(codes_p[lo:hi, i].tolist()), tuple(codes_b[lo:hi, j].tolist()))
                      for lo, hi in top_windows(codes_p[:, i], text, cfg.examples_per_card, cfg.context, cfg.context // 3))
        # Histograms of the non-zero activations on shared bins, so the two models compare at a glance.
        active_p, active_b = codes_p[:, i][codes_p[:, i] > 0], codes_b[:, j][codes_b[:, j] > 0]
        both = torch.cat([active_p, active_b])
        top = float(both.max()) if len(both) else 1.0
        edges = torch.linspace(0, top, cfg.histogram_bins + 1)
        histogram = FeatureHistogram(tuple(edges.tolist()), histogram_counts(active_p, edges),
                                     histogram_counts(active_b, edges))
        return FeatureCard(**row(i), examples=shown, histogram=histogram)

    # A policy feature that never fires on the held-out texts is a training artefact, not something
    # the fine-tune added: no ranking, count or card includes one.
    fires = freq_p > 0
    new, changed = ([i for i in ranked if fires[i]] for ranked in diff_features(mcs, freq_p, freq_b[match],
                                                                                 cfg.match_threshold))
    aligned = [int(i) for i in torch.argsort(alignment, descending=True) if fires[i]]
    rankings = {"new": new, "changed": changed, "writes_utility": aligned}
    carded = sorted({i for ranked in rankings.values() for i in ranked[: cfg.cards_per_ranking]})
    diff = sorted({i for ranked in (new, changed) for i in ranked[: cfg.top_n]})
    return HookFeatureDiff(
        hook=hook, size=cfg.size, n_features=len(mcs), n_new=len(new),
        **{name: tuple(FeatureRow(**row(i)) for i in ranked[: cfg.top_n]) for name, ranked in rankings.items()},
        cards={i: card(i) for i in carded},
        max_abs_utility_corr=float(utility_corr.abs().max()),
        # Does the fine-tune's diff track the reward better than the base's dictionary does?
        reward_tracking=RewardTracking(
            diff_features_mean_abs_corr=float(utility_corr[diff].abs().mean()) if diff else float("nan"),
            their_base_matches_mean_abs_corr=float(utility_corr_base[match[diff]].abs().mean()) if diff else float("nan"),
            all_policy_mean_abs_corr=float(utility_corr.abs().mean()),
            all_base_mean_abs_corr=float(utility_corr_base.abs().mean()),
            policy_max_abs_corr=float(utility_corr.abs().max()),
            base_max_abs_corr=float(utility_corr_base.abs().max()),
        ),
        set_aside=int((~fires).sum()),
    )


def policy_vocabulary(run_dir: RunDir) -> tuple[PreTrainedTokenizerBase, list[str], Float[Tensor, " vocab"],
                                                 Float[Tensor, "d vocab"]]:
    """The policy's tokenizer, its vocabulary as strings, each token's VADER valence (the known
    reward per token), and the policy's unembedding (for a direction's direct logit effect)."""
    tokenizer = load_tokenizer(run_dir.policy)
    vocab = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    token_valence = torch.tensor([lexicon_valence(t) for t in vocab])
    unembed = load_hf(run_dir.policy).get_output_embeddings().weight.detach().float().T[:, : len(vocab)]
    return tokenizer, vocab, token_valence, unembed


def feature_diff_stage(cfg: FeatureDiffConfig, run_dir: RunDir) -> FeatureDiffResult:
    """Stage: ``analysis/feature_diff.json`` for every chosen layer."""
    started = time.time()
    tokenizer, vocab, token_valence, unembed = policy_vocabulary(run_dir)
    hooks = ActivationIndex.load(run_dir).hooks
    result = FeatureDiffResult(
        match_threshold=cfg.match_threshold,
        hooks=tuple(diff_hook(run_dir, h, cfg, token_valence, unembed, vocab, tokenizer) for h in hooks),
        seconds=time.time() - started, config=asdict(cfg))
    result.save(run_dir)
    return result
