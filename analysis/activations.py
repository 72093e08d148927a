"""Reading activations at TransformerLens hook points.

Every read goes through ``run_with_cache`` with a names filter, so only the requested
hooks are stored and no hook outlives the call.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm
from transformer_lens import HookedTransformer

from rlhf.errors import UserError


def check_hook_names(model: HookedTransformer, names: Sequence[str]) -> None:
    """Raise naming the valid hooks when any requested name is not a hook of the model."""
    bad = [n for n in names if n not in model.hook_dict]
    if bad:
        valid = sorted(model.hook_dict)
        shown = ", ".join(valid[:40]) + (" ..." if len(valid) > 40 else "")
        raise UserError(f"unknown hook name(s) {', '.join(bad)}; valid hooks: {shown}")


@torch.no_grad()
def activations_at(
    model: HookedTransformer,
    texts: Sequence[str],
    positions: Sequence[int],
    hook_names: Sequence[str],
    batch_size: int = 256,
) -> dict[str, Float[Tensor, "n d"]]:
    """Activation of each text at one token position (0 = BOS) for every hook.

    Texts are right-padded; a causal model's activation at a real position does not
    depend on the padding after it, and each position is checked to be a real token.
    """
    if len(texts) != len(positions):
        raise ValueError(f"{len(texts)} texts but {len(positions)} positions")
    check_hook_names(model, hook_names)
    out: dict[str, list[Tensor]] = {h: [] for h in hook_names}
    for start in tqdm(range(0, len(texts), batch_size), desc="activations", unit="batch", leave=False,
                      disable=len(texts) <= batch_size):
        enc = model.tokenizer(list(texts[start : start + batch_size]), padding=True, return_tensors="pt")
        tokens = enc["input_ids"].to(model.cfg.device)
        pos = torch.tensor(positions[start : start + batch_size], device=tokens.device)
        lengths = enc["attention_mask"].sum(1).to(tokens.device)
        if bool((pos >= lengths).any()) or bool((pos < 0).any()):
            raise ValueError("a position lies outside its text's tokens")
        _, cache = model.run_with_cache(tokens, names_filter=list(hook_names))
        rows = torch.arange(len(pos), device=tokens.device)
        for h in hook_names:
            act = cache[h][rows, pos].float().cpu()
            if not torch.isfinite(act).all():
                bad = (~torch.isfinite(act)).nonzero()[0].tolist()
                raise FloatingPointError(f"non-finite activation at hook {h}, text {start + bad[0]}")
            out[h].append(act)
    return {h: torch.cat(v) for h, v in out.items()}
