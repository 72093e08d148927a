"""What changed between the base and the policy dictionaries, feature by feature.

Each policy feature is matched to its closest base feature by decoder cosine (MCS).
Three rankings: (a) policy features with no close base match, (b) matched pairs whose
firing frequency changed most on the same held-out tokens, (c) features whose decoder
direction writes most towards high-utility tokens through the unembedding. For the
organism each feature is also scored against the known reward: the correlation of its
activation with the VADER valence of the current token.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch
from einops import einsum
from safetensors.torch import load_file
from torch import Tensor

from analysis.activations import hook_dir, load_shards
from analysis.dictionaries import load_sae
from analysis.mmcs import max_cosine
from rlhf.hooked import load_hf
from rlhf.lexicon import valence
from rlhf.rundir import RunDir, atomic_write_json, read_json
from rlhf.tokenizer import load_tokenizer


@dataclass(frozen=True)
class FeatureDiffConfig:
    size: str = "1x"  # which dictionary width to compare
    match_threshold: float = 0.7  # policy features whose best base cosine is lower count as new
    top_n: int = 10


def _pearson(x: Tensor, y: Tensor) -> Tensor:
    """Correlation of each column of ``x`` (tokens, features) with ``y`` (tokens,); 0 for constant columns."""
    xc, yc = x - x.mean(0), y - y.mean()
    denom = xc.norm(dim=0) * yc.norm()
    return torch.where(denom > 0, einsum(xc, yc, "t f, t -> f") / denom.clamp(min=1e-12), torch.zeros_like(denom))


@torch.no_grad()
def diff_hook(run_dir: RunDir, hook: str, cfg: FeatureDiffConfig, token_valence: Tensor, unembed: Tensor,
              vocab: list[str]) -> dict:
    sae_p = load_sae(run_dir.root / "saes" / "policy" / hook / cfg.size)
    sae_b = load_sae(run_dir.root / "saes" / "base" / hook / cfg.size)
    mcs, match = max_cosine(sae_p.W_dec, sae_b.W_dec)
    # Both caches hold the same held-out tokens, so the codes line up token by token.
    codes_p = torch.cat([sae_p.encode(x) for x in load_shards(hook_dir(run_dir, "policy", hook, "val"))])
    codes_b = torch.cat([sae_b.encode(x) for x in load_shards(hook_dir(run_dir, "base", hook, "val"))])
    tokens = _token_ids(hook_dir(run_dir, "policy", hook, "val"))
    freq_p, freq_b = (codes_p > 0).float().mean(0), (codes_b > 0).float().mean(0)
    mean_p, mean_b = codes_p.mean(0), codes_b.mean(0)
    utility_corr = _pearson(codes_p, token_valence[tokens])
    logits = einsum(sae_p.W_dec, unembed, "f d, d v -> f v")  # direct logit effect of each feature
    alignment = _pearson(logits.T, token_valence)  # does the feature push up high-valence tokens?

    def card(i: int) -> dict:
        j = int(match[i])
        top = torch.topk(logits[i], 5).indices.tolist()
        bottom = torch.topk(-logits[i], 5).indices.tolist()
        return {"feature": i, "base_match": j, "mcs": float(mcs[i]), "freq_policy": float(freq_p[i]),
                "freq_base_match": float(freq_b[j]), "mean_policy": float(mean_p[i]), "mean_base_match": float(mean_b[j]),
                "utility_corr": float(utility_corr[i]), "logit_alignment": float(alignment[i]),
                "top_logit_tokens": [vocab[t] for t in top], "bottom_logit_tokens": [vocab[t] for t in bottom]}

    new = [int(i) for i in torch.argsort(freq_p, descending=True) if mcs[i] < cfg.match_threshold]
    matched = (mcs >= cfg.match_threshold).nonzero()[:, 0]
    change = (freq_p - freq_b[match]).abs()
    changed = [int(i) for i in matched[torch.argsort(change[matched], descending=True)]]
    aligned = [int(i) for i in torch.argsort(alignment, descending=True)]
    return {
        "hook": hook, "size": cfg.size, "n_features": len(mcs), "n_new": len(new),
        "new": [card(i) for i in new[: cfg.top_n]],
        "changed": [card(i) for i in changed[: cfg.top_n]],
        "writes_utility": [card(i) for i in aligned[: cfg.top_n]],
        "max_abs_utility_corr": float(utility_corr.abs().max()),
    }


def _token_ids(directory: Path) -> Tensor:
    return torch.cat([load_file(str(directory / name))["tokens"] for name in read_json(directory / "index.json")["shards"]])


def feature_diff_stage(cfg: FeatureDiffConfig, run_dir: RunDir) -> Path:
    """Stage: ``analysis/feature_diff.json`` for every chosen layer."""
    started = time.time()
    tokenizer = load_tokenizer(run_dir.policy)
    vocab = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    token_valence = torch.tensor([valence(t.lower().lstrip("Ġ▁")) for t in vocab])
    unembed = load_hf(run_dir.policy).get_output_embeddings().weight.detach().float().T[:, : len(vocab)]
    hooks = read_json(run_dir.root / "activations" / "index.json")["hooks"]
    result = {"config": cfg.__dict__, "hooks": [diff_hook(run_dir, h, cfg, token_valence, unembed, vocab) for h in hooks],
              "seconds": time.time() - started}
    out = run_dir.analysis / "feature_diff.json"
    atomic_write_json(out, result)
    return out
