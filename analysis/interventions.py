"""Interventions inside a HookedTransformer: sampling under forward hooks, the KL of the
edited model to the unedited one, and directional ablation.

Shared by the implicit-reward probe's feature ablation and the model-diffing benchmark,
which both ask what a model does without some directions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor
from transformer_lens import HookedTransformer
from transformer_lens.hook_points import HookPoint

from rlhf.policy.sampling import completion_token_kl
from rlhf.seeding import seeded

Hooks = list[tuple[str, Callable]]


def directional_ablation(hook: str, directions: Float[Tensor, "k d"]) -> Hooks:
    """A forward hook that projects the span of ``directions`` out of the activation at ``hook``:
    the same intervention for any method that names directions (SAE, crosscoder or difference
    dictionary decoders), with no encoder in the loop."""
    basis, _ = torch.linalg.qr(directions.detach().float().T)  # (d, k), orthonormal columns

    def ablate(x: Float[Tensor, "batch pos d"], hook: HookPoint) -> Float[Tensor, "batch pos d"]:
        b = basis.to(x.device, x.dtype)
        return x - (x @ b) @ b.T

    return [(hook, ablate)]


@torch.no_grad()
def sample_with_hooks(model: HookedTransformer, prompts: Sequence[str], fwd_hooks: Hooks, *, max_new_tokens: int,
                      seed: int) -> tuple[list[str], list[Int[Tensor, "_batch _pos"]], list[Bool[Tensor, "_batch _pos"]]]:
    """One sampled completion per prompt (temperature 1, no top-k/top-p) under the hooks.

    Prompts are generated in groups of equal token length, so no padding enters the model
    whatever the tokenizer. Returns the completions, and per group the full token rows and
    a mask of the completion tokens up to and including the first end-of-text."""
    eos = model.tokenizer.eos_token_id
    groups: dict[int, list[int]] = {}
    ids = [model.tokenizer(p)["input_ids"] for p in prompts]
    for i, row in enumerate(ids):
        groups.setdefault(len(row), []).append(i)
    completions: list[str] = [""] * len(prompts)
    rows, masks = [], []
    # TransformerLens samples from torch's global generator: seeded for this call only, restored after.
    with seeded(seed), model.hooks(fwd_hooks=fwd_hooks):
        for length, members in sorted(groups.items()):
            tokens = torch.tensor([ids[i] for i in members], device=model.cfg.device)
            out = model.generate(tokens, max_new_tokens=max_new_tokens, stop_at_eos=True, eos_token_id=eos,
                                 do_sample=True, temperature=1.0, verbose=False)
            new = out[:, length:]
            is_eos = (new == eos).int()
            keep = (torch.cumsum(is_eos, 1) - is_eos) == 0  # up to and including the first EOS
            for r, i in enumerate(members):
                completions[i] = model.tokenizer.decode(new[r][keep[r]], skip_special_tokens=True)
            rows.append(out)
            masks.append(torch.cat([torch.zeros(len(members), length, dtype=torch.bool, device=out.device), keep], 1))
    return completions, rows, masks


@torch.no_grad()
def kl_to_unedited(model: HookedTransformer, fwd_hooks: Hooks, rows: list[Int[Tensor, "_batch _pos"]],
                   masks: list[Bool[Tensor, "_batch _pos"]]) -> float:
    """KL(edited || unedited) per completion token, on the edited model's own samples."""
    total, count = 0.0, 0.0
    for tokens, mask in zip(rows, masks):
        edited = torch.log_softmax(model.run_with_hooks(tokens, fwd_hooks=fwd_hooks).float(), -1)
        plain = torch.log_softmax(model(tokens).float(), -1)
        total += float(completion_token_kl(edited, plain, mask).sum())
        count += float(mask.sum())  # the first column is prompt, never completion
    return total / max(count, 1.0)


def reward_under_hooks(model: HookedTransformer, hooks: Hooks, prompts: Sequence[str], *, seeds: Sequence[int],
                       max_new_tokens: int, reward: Callable[..., list[float]]) -> list[dict]:
    """Mean reward of completions sampled under ``hooks`` and their KL to the unedited model, once per seed."""
    out = []
    for seed in seeds:
        completions, rows, masks = sample_with_hooks(model, prompts, hooks, max_new_tokens=max_new_tokens, seed=seed)
        rewards = reward(prompts=list(prompts), completions=completions)
        out.append({"seed": seed, "mean_reward": sum(rewards) / len(rewards),
                    "kl_per_token": kl_to_unedited(model, hooks, rows, masks) if hooks else 0.0,
                    "example": completions[0]})
    return out
