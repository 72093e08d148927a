"""Interventions inside a converted model: sampling under forward hooks, the KL of the
edited model to the unedited one, and directional ablation.

Shared by the implicit-reward probe's feature ablation and the model-diffing benchmark,
which both ask what a model does without some directions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor
from transformer_lens.hook_points import HookPoint
from transformers import DynamicCache

from rlhf.hooked import HookedModel
from rlhf.policy.sampling import completion_token_kl

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
def sample_tokens(models: Sequence[HookedModel], prompts: Sequence[str], *, max_new_tokens: int, seed: int,
                  mix: Callable[[list[Tensor]], Tensor] = lambda logits: logits[0],
                  ) -> tuple[list[list[int]], Int[Tensor, "batch prompt"], Int[Tensor, "batch new"], Bool[Tensor, "batch new"]]:
    """One completion per prompt sampled (temperature 1, no top-k/top-p) from softmax(mix(each model's logits)).

    All prompts go in one batch, padded on the left and masked, one forward pass per new token and
    model with a key-value cache: ``generate`` samples from one model's logits. The draws come from one ``torch.Generator``
    seeded with ``seed``. Returns each prompt's token ids, the padded prompts, the sampled tokens
    (end-of-text once a row has ended) and a mask of those up to and including the first end-of-text."""
    tokenizer = models[0].tokenizer
    eos, device = tokenizer.eos_token_id, models[0].cfg.device
    ids = [tokenizer(p)["input_ids"] for p in prompts]
    width = max(map(len, ids))
    tokens = torch.tensor([[eos] * (width - len(r)) + r for r in ids], device=device)  # the padding is masked
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in ids], device=device)
    # Workaround: the bridge hands ``past_kv_cache`` (TransformerLens's cache) to the HF forward, which
    # ignores it, so each step would see only its new token; HF's own cache is passed through instead,
    # with the mask of every position so far (the bridge derives the positions from it).
    caches = [DynamicCache() for _ in models]
    generator = torch.Generator(device=device).manual_seed(seed)
    finished = torch.zeros(len(ids), dtype=torch.bool, device=device)
    new: list[Int[Tensor, " batch"]] = []
    step = tokens
    while len(new) < max_new_tokens and not bool(finished.all()):
        logits = [m(step, attention_mask=mask, past_key_values=c, use_cache=True)[:, -1].float()
                  for m, c in zip(models, caches)]
        token = torch.multinomial(torch.softmax(mix(logits), -1), 1, generator=generator)[:, 0]
        token = torch.where(finished, torch.full_like(token, eos), token)  # a finished row keeps ending
        finished |= token == eos
        new.append(token)
        step = token[:, None]
        mask = torch.cat([mask, torch.ones_like(step)], 1)
    sampled = torch.stack(new, 1)
    is_eos = (sampled == eos).int()
    return ids, tokens, sampled, (torch.cumsum(is_eos, 1) - is_eos) == 0


def sample_with_hooks(model: HookedModel, prompts: Sequence[str], fwd_hooks: Hooks, *, max_new_tokens: int,
                      seed: int) -> tuple[list[str], list[Int[Tensor, "_batch _pos"]], list[Bool[Tensor, "_batch _pos"]],
                                          list[list[int]]]:
    """One sampled completion per prompt (``sample_tokens``) under the hooks. Returns the completions,
    and per prompt length the unpadded token rows, a mask of the completion tokens up to and
    including the first end-of-text (so that what reads the rows needs no attention mask), and
    which prompt each row completes."""
    with model.hooks(fwd_hooks=fwd_hooks):
        ids, tokens, sampled, keep = sample_tokens([model], prompts, max_new_tokens=max_new_tokens, seed=seed)
    completions = [model.tokenizer.decode(sampled[i][keep[i]], skip_special_tokens=True) for i in range(len(ids))]
    groups: dict[int, list[int]] = {}
    for i, row in enumerate(ids):
        groups.setdefault(len(row), []).append(i)
    rows, masks, order = [], [], []
    for length, members in sorted(groups.items()):
        at = torch.tensor(members, device=tokens.device)
        rows.append(torch.cat([tokens[at, tokens.shape[1] - length:], sampled[at]], 1))
        masks.append(torch.cat([torch.zeros(len(members), length, dtype=torch.bool, device=tokens.device), keep[at]], 1))
        order.append(members)
    return completions, rows, masks, order


@torch.no_grad()
def kl_to_unedited(model: HookedModel, fwd_hooks: Hooks, rows: list[Int[Tensor, "_batch _pos"]],
                   masks: list[Bool[Tensor, "_batch _pos"]]) -> float:
    """KL(edited || unedited) per completion token, on the edited model's own samples."""
    total, count = 0.0, 0.0
    for tokens, mask in zip(rows, masks):
        edited = torch.log_softmax(model.run_with_hooks(tokens, fwd_hooks=fwd_hooks).float(), -1)
        plain = torch.log_softmax(model(tokens).float(), -1)
        total += float(completion_token_kl(edited, plain, mask).sum())
        count += float(mask.sum())  # the first column is prompt, never completion
    return total / max(count, 1.0)


def reward_under_hooks(model: HookedModel, hooks: Hooks, prompts: Sequence[str], *, seeds: Sequence[int],
                       max_new_tokens: int, reward: Callable[..., list[float]]) -> list[dict]:
    """Mean reward of completions sampled under ``hooks`` and their KL to the unedited model, once per seed."""
    out = []
    for seed in seeds:
        completions, rows, masks, _ = sample_with_hooks(model, prompts, hooks, max_new_tokens=max_new_tokens, seed=seed)
        rewards = reward(prompts=list(prompts), completions=completions)
        out.append({"seed": seed, "mean_reward": sum(rewards) / len(rewards),
                    "kl_per_token": kl_to_unedited(model, hooks, rows, masks) if hooks else 0.0,
                    "example": completions[0]})
    return out
