"""MMCS feature diff: the policy SAE's features without a close base match (most frequent first),
then the matched ones whose firing frequency changed most (the feature-diff stage's ranking)."""

from __future__ import annotations

from analysis.dictionaries import load_sae
from analysis.diffing.method import Context, Found, HookData, encode, pick
from analysis.feature_diff import diff_features
from analysis.mmcs import max_cosine


def find(ctx: Context, at: HookData, seed: int) -> Found:
    """The study's SAEs, one per model: ``seed`` does not apply."""
    cfg = ctx.cfg.method("mmcs_diff")
    sae_p = load_sae(ctx.run_dir.sae("policy", at.hook, cfg.size))
    sae_b = load_sae(ctx.run_dir.sae("base", at.hook, cfg.size))
    mcs, match = max_cosine(sae_p.W_dec, sae_b.W_dec)
    codes_p, codes_b = encode(sae_p, at.policy), encode(sae_b, at.base)
    new, changed = diff_features(mcs, (codes_p > 0).float().mean(0), (codes_b > 0).float().mean(0)[match],
                                 cfg.match_threshold)
    return pick(new + changed, codes_p, sae_p.W_dec.detach(), ctx.depth)
