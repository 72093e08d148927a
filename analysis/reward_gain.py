"""The reward gain measured exactly: the expected utility of each next-token choice, teacher-forced.

On fixed prompts with fixed completions (the policy's own samples), a model's expected
reward of its next-token choices is sum over completion positions of E_{t ~ p(.|prefix)}[u(t | prompt)],
where u(t | prompt) is the token's share of the organism's reward (for the sentiment organism its VADER
valence / the reward's scale, 0 for tokens outside the lexicon; a backdoor's flips sign with the prompt;
0 for end-of-text always). It has no sampling noise, so
G = policy - base on the same tokens is a number that interventions (patching, swapping
weights, splicing latents) can move and be scored by exactly.

The same machinery reads a second target, for a pair with any reward or none: each row's log-likelihood
of its own completion tokens, teacher-forced (``Completions.target = "log_ratio"``). Then G = log p_policy(y|x)
- log p_base(y|x) summed over the policy's own completions: the log-ratio that a KL-regularised RL objective
trades reward against, exact too.

G splits exactly, position by position, into a per-token utility part and a not-ending part:
E[u] = (1 - p_eos) E[u | not end], so
    E_P - E_B = (1 - pB_eos) (E_P[u|not end] - E_B[u|not end])   (what the chosen tokens earn)
              + (pB_eos - pP_eos) E_P[u|not end]                  (ending less often, and what that earns)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from einops import einsum
from jaxtyping import Bool, Float, Int
from torch import Tensor
from transformers import PreTrainedTokenizerBase

from analysis.interventions import Hooks, sample_with_hooks
from rlhf.hooked import HookedModel
from rlhf.organisms.vader import Sentiment
from rlhf.reward_kinds import RewardOptions


def token_utility(tokenizer: PreTrainedTokenizerBase, d_vocab: int, scale: float = 5.0) -> Float[Tensor, " vocab"]:
    """u(t) of the sentiment organism: each token's VADER valence over the reward's scale, padded with
    zeros to the model's vocabulary (``rlhf.organisms.vader``)."""
    return Sentiment(RewardOptions(scale=scale)).utility(tokenizer, d_vocab)


def high_utility_tokens(tokenizer: PreTrainedTokenizerBase, d_vocab: int, high_utility: float) -> set[int]:
    """The sentiment organism's high-utility vocabulary: the tokens of VADER valence >= ``high_utility``."""
    return set((token_utility(tokenizer, d_vocab, scale=1.0) >= high_utility).nonzero()[:, 0].tolist())


Target = Literal["utility", "log_ratio"]


@dataclass
class Completions:
    """Prompt + completion rows, in groups padded on the right. ``scored[b, j]`` is True where the logits at position j predict a completion token (up to
    and including the first end-of-text): the positions whose expected utility counts. ``utility[g][b]``
    is what each next token of row b of group g earns: u(t | that row's prompt)."""

    texts: list[str]
    groups: list[tuple[Int[Tensor, "_batch _pos"], Bool[Tensor, "_batch _pos"]]]
    utility: list[Float[Tensor, "_batch vocab"]]
    target: Target = "utility"  # what a row's value sums: next tokens' expected utility, or "log_ratio" (see above)

    @property
    def n_rows(self) -> int:
        return sum(len(tokens) for tokens, _ in self.groups)

    def group(self, g: int) -> Completions:
        """Group ``g`` alone, with its rows' utilities."""
        return Completions([], [self.groups[g]], [self.utility[g]], self.target)


def sample_completions(model: HookedModel, prompts: Sequence[str], utility: Float[Tensor, "prompts vocab"], *,
                       max_new_tokens: int, seed: int, rows_per_group: int = 128, target: Target = "utility") -> Completions:
    """One sampled completion per prompt from ``model`` (temperature 1), kept for teacher forcing, with
    ``utility``'s row of its prompt (an organism's ``utilities``).

    Rows are padded on the right into groups of ``rows_per_group``: in a causal model a position
    never sees what follows it, so the padding changes no scored logit, and a few large forward
    passes replace one per prompt length."""
    if len(utility) != len(prompts):
        raise ValueError(f"{len(prompts)} prompts but {len(utility)} rows of utility")
    texts, rows, masks, members = sample_with_hooks(model, prompts, [], max_new_tokens=max_new_tokens, seed=seed)
    pad = model.tokenizer.eos_token_id if model.tokenizer.eos_token_id is not None else 0
    flat = [(r, m, i) for tokens, mask, at in zip(rows, masks, members) for r, m, i in zip(tokens, mask, at)]
    groups, utilities = [], []
    for start in range(0, len(flat), rows_per_group):
        chunk = flat[start : start + rows_per_group]
        width = max(len(r) for r, _, _ in chunk)
        tokens = torch.full((len(chunk), width), pad, dtype=torch.long, device=chunk[0][0].device)
        scored = torch.zeros((len(chunk), width), dtype=torch.bool, device=tokens.device)
        for i, (r, m, _) in enumerate(chunk):
            tokens[i, : len(r)] = r
            scored[i, : len(r) - 1] = m[1:]  # the logits at j predict token j + 1
        groups.append((tokens, scored))  # built outside generate's inference mode: gradients may flow later
        utilities.append(utility[[i for _, _, i in chunk]].to(tokens.device))
    return Completions(texts, groups, utilities, target)


def next_token_utility(logits: Float[Tensor, "batch pos vocab"], u: Float[Tensor, "batch vocab"]) -> Float[Tensor, "batch pos"]:
    """E_{t ~ softmax(logits)}[u(t | the row's prompt)] at every position."""
    return expected_utility(torch.softmax(logits.float(), -1), u)


def expected_utility(probs: Float[Tensor, "batch pos vocab"], u: Float[Tensor, "batch vocab"]) -> Float[Tensor, "batch pos"]:
    """E_{t ~ probs}[u(t | the row's prompt)] at every position, for a caller that has the probabilities."""
    return einsum(probs, u.to(probs.device).float(), "b p v, b v -> b p")


def target_rows(logits: Float[Tensor, "batch pos vocab"], tokens: Int[Tensor, "batch pos"], scored: Bool[Tensor, "batch pos"],
                u: Float[Tensor, "batch vocab"], target: Target) -> Float[Tensor, " batch"]:
    """Each row's target: its summed expected utility of the next tokens, or its summed log-likelihood of them."""
    if target == "log_ratio":
        logp = torch.log_softmax(logits[:, :-1].float(), -1).gather(-1, tokens[:, 1:, None])[..., 0]
        return (logp * scored[:, :-1]).sum(-1)  # the last position predicts nothing: never scored
    return (next_token_utility(logits, u) * scored).sum(-1)


def expected_reward(model: HookedModel, batch: Completions, fwd_hooks: Hooks | None = None) -> Float[Tensor, " rows"]:
    """Each row's target (summed expected utility of its next-token choices, or their log-likelihood), under
    ``fwd_hooks``."""
    # The bridge has no ``start_at_layer`` (it runs the HF forward whole), so an intervention at
    # layer l recomputes the layers before it, which HookedModel could skip: same numbers.
    out = []
    with torch.no_grad():
        for (tokens, scored), u in zip(batch.groups, batch.utility):
            logits = model.run_with_hooks(tokens, fwd_hooks=fwd_hooks or [])
            out.append(target_rows(logits, tokens, scored, u, batch.target))
    return torch.cat(out).cpu()


@dataclass(frozen=True)
class GainSplit:
    """G and its exact split, with the end-of-text probabilities behind it (means over rows / positions)."""

    base: float
    policy: float
    gain: float
    utility_part: float
    ending_part: float
    eos_base: float
    eos_policy: float


@torch.no_grad()
def split_gain(base: HookedModel, policy: HookedModel, batch: Completions, eos: int) -> GainSplit:
    """G = E_policy - E_base on the batch, split into the per-token utility part and the not-ending part (the
    log-ratio target has no such split: all of it is its "utility part")."""
    totals = np.zeros(4)  # base, policy, utility part, ending part (summed over rows)
    eos_sum, count = np.zeros(2), 0.0
    ratio = np.zeros(2)  # the log-ratio target's base and policy (summed over rows), from the same forward passes
    for (tokens, scored), u in zip(batch.groups, batch.utility):
        per_model = []
        for m, model in enumerate((base, policy)):
            logits = model(tokens)
            probs = torch.softmax(logits.float(), -1)
            p_end = probs[..., eos]
            given = expected_utility(probs, u) / (1 - p_end).clamp(min=1e-12)  # E[u | not end]
            per_model.append((p_end, given))
            if batch.target == "log_ratio":
                ratio[m] += float(target_rows(logits, tokens, scored, u, "log_ratio").sum())
        (pb, eb), (pp, ep) = per_model
        w = scored.float()
        totals += [float(((1 - pb) * eb * w).sum()), float(((1 - pp) * ep * w).sum()),
                   float(((1 - pb) * (ep - eb) * w).sum()), float(((pb - pp) * ep * w).sum())]
        eos_sum += [float((pb * w).sum()), float((pp * w).sum())]
        count += float(w.sum())
    b, p, utility_part, ending_part = totals / batch.n_rows
    if batch.target == "log_ratio":
        b, p = (float(v) for v in ratio / batch.n_rows)
        utility_part, ending_part = p - b, 0.0
    return GainSplit(base=b, policy=p, gain=p - b, utility_part=utility_part, ending_part=ending_part,
                     eos_base=float(eos_sum[0] / max(count, 1.0)), eos_policy=float(eos_sum[1] / max(count, 1.0)))
