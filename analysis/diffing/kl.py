"""Per-token KL: the tokens the policy up-weights where its next-token distribution moved most from
the base's. It names tokens, not latents, and reads the models rather than a hook: found once per
stage run and scored at every hook on the tokens alone."""

from __future__ import annotations

import torch
from transformers import PreTrainedTokenizerBase

from analysis.diffing.method import Context, Found, HookData, memo
from analysis.results import KLTokens
from rlhf.hooked import load_hf
from rlhf.policy.sampling import kl_divergence
from rlhf.rundir import RunDir


@torch.no_grad()
def kl_tokens(run_dir: RunDir, tokenizer: PreTrainedTokenizerBase, texts: list[str], n: int) -> tuple[list[int], dict]:
    """The top ``n`` tokens by probability shift summed over the top 2% positions by KL(policy || base)
    on held-out texts, and the KL's numbers."""
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


def _measured(ctx: Context) -> tuple[list[int], dict]:
    cfg, texts = ctx.cfg, ctx.cfg.method("kl").texts
    return memo(ctx.memo, "kl", lambda: kl_tokens(ctx.run_dir, ctx.tokenizer, ctx.run_dir.texts("val")[:texts],
                                                  cfg.top_k * cfg.logit_tokens))


def find(ctx: Context, at: HookData, seed: int) -> Found:
    return Found.of_tokens(_measured(ctx)[0])


def record(ctx: Context, records: dict[str, tuple]) -> KLTokens:
    """The once-per-run step: the KL's numbers and its top 20 tokens."""
    tokens, info = _measured(ctx)
    return KLTokens(**info, tokens=tuple(ctx.vocab[t] for t in tokens[:20]))
