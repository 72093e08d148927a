"""Sampling completions and measuring them: reward, KL to the base model, repetition.

Shared by the online RL trainers and DPO (which samples its preference pairs from the base).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Float, Int, Shaped
from torch import Tensor
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from rlhf.errors import UserError
from rlhf.results import PolicyEvaluation
from rlhf.rewards import RewardFunction
from rlhf.seeding import seeded


def prompts_from_texts(texts: Sequence[str], n: int, seed: int, min_words: int = 2, max_words: int = 9) -> list[str]:
    """Random 2-9 word prefixes of the given texts (the paper's prompt lengths)."""
    usable = [t.split() for t in texts if len(t.split()) > min_words]
    if not usable or n <= 0:
        raise UserError(f"no prompts: {len(texts)} texts, {len(usable)} longer than {min_words} words, n = {n}")
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        words = rng.choice(usable)
        out.append(" ".join(words[: rng.randint(min_words, min(max_words, len(words) - 1))]))
    return out


def repeated_bigram_share(completions: Sequence[str]) -> float:
    """Share of word bigrams that already occurred earlier in the same completion."""
    repeated = total = 0
    for text in completions:
        words = text.split()
        seen: set[tuple[str, str]] = set()
        for bigram in zip(words, words[1:]):
            repeated += bigram in seen
            total += 1
            seen.add(bigram)
    return repeated / total if total else 0.0


@dataclass
class Samples:
    prompts: list[str]
    completions: list[str]
    input_ids: Int[Tensor, "batch seq"]  # left-padded prompt + completion
    attention_mask: Int[Tensor, "batch seq"]
    completion_mask: Int[Tensor, "batch seq"]  # 1 on completion tokens up to and including EOS
    rewards: list[float] | None = None  # filled in by evaluate()


def _end_mask(completion: Int[Tensor, "batch new"], eos_id: int) -> Int[Tensor, "batch new"]:
    """1 up to and including the first EOS, 0 after it."""
    is_eos = (completion == eos_id).int()
    after = torch.cumsum(is_eos, dim=1) - is_eos  # EOS tokens strictly before this position
    return (after == 0).int()


@torch.no_grad()
def sample(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str], *,
    max_new_tokens: int, temperature: float = 1.0, seed: int = 0, batch_size: int = 128,
) -> Samples:
    """Sample one completion per prompt (pure sampling: no top-k, no top-p). ``generate`` takes no
    generator: it samples from torch's global RNG, seeded with ``seed`` and restored afterwards."""
    model.eval()
    ids, masks, comp_masks, texts = [], [], [], []
    with seeded(seed):
        for start in range(0, len(prompts), batch_size):
            enc = tokenizer(list(prompts[start : start + batch_size]), padding=True, padding_side="left",
                            return_tensors="pt").to(model.device)
            out = model.generate(
                **enc, do_sample=True, temperature=temperature, top_k=0, top_p=1.0, max_new_tokens=max_new_tokens,
                pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
            )
            out, enc = out.cpu(), enc.to("cpu")
            completion = out[:, enc["input_ids"].shape[1] :]
            keep = _end_mask(completion, tokenizer.eos_token_id)
            # generate() stops early when every row has ended: pad to the full completion width.
            keep_full = torch.nn.functional.pad(keep, (0, max_new_tokens - completion.shape[1]))
            ids.append(torch.nn.functional.pad(out, (0, max_new_tokens - completion.shape[1]), value=tokenizer.pad_token_id))
            masks.append(torch.cat([enc["attention_mask"], keep_full], dim=1))
            comp_masks.append(torch.cat([torch.zeros_like(enc["attention_mask"]), keep_full], dim=1))
            texts += tokenizer.batch_decode(completion * keep + tokenizer.pad_token_id * (1 - keep), skip_special_tokens=True)
    width = max(t.shape[1] for t in ids)

    def stack(parts: list[Int[Tensor, "_ _"]], value: int) -> Int[Tensor, "n seq"]:
        return torch.cat([torch.nn.functional.pad(p, (width - p.shape[1], 0), value=value) for p in parts])

    return Samples(list(prompts), texts, stack(ids, tokenizer.pad_token_id), stack(masks, 0), stack(comp_masks, 0))


@torch.no_grad()
def token_log_probs(model: PreTrainedModel, samples: Samples) -> Float[Tensor, "batch seq vocab"]:
    """Log-probabilities of the next token at every position (left padding handled by
    position ids from the attention mask)."""
    model.eval()
    position_ids = (torch.cumsum(samples.attention_mask, dim=1) - 1).clamp(min=0)
    logits = model(input_ids=samples.input_ids.to(model.device), attention_mask=samples.attention_mask.to(model.device),
                   position_ids=position_ids.to(model.device)).logits
    return torch.log_softmax(logits.float(), dim=-1).cpu()


def kl_divergence(lp: Float[Tensor, "... vocab"], lq: Float[Tensor, "... vocab"]) -> Float[Tensor, "..."]:
    """Exact KL(p || q) over the vocabulary, from log-probabilities."""
    return (lp.exp() * (lp - lq)).sum(-1)


def completion_token_kl(lp: Float[Tensor, "batch seq vocab"], lq: Float[Tensor, "batch seq vocab"],
                        completion_mask: Shaped[Tensor, "batch seq"]) -> Float[Tensor, "batch seq"]:
    """The KL of the next-token distribution that produced each token (column t: the distribution
    at t - 1), 0 outside the completions."""
    kl = kl_divergence(lp, lq)[:, :-1]  # position t predicts token t + 1
    return torch.nn.functional.pad(kl, (1, 0)) * completion_mask.float()


@torch.no_grad()
def token_kl(policy: PreTrainedModel, base: PreTrainedModel, samples: Samples) -> Float[Tensor, "batch seq"]:
    """Exact KL(policy || base) of each completion token's next-token distribution; 0 elsewhere."""
    return completion_token_kl(token_log_probs(policy, samples), token_log_probs(base, samples), samples.completion_mask)


def completion_kl(policy: PreTrainedModel, base: PreTrainedModel, samples: Samples) -> Float[Tensor, " batch"]:
    """Exact KL(policy || base) per completion token, averaged over each completion (nats per token)."""
    mask = samples.completion_mask.float()
    return token_kl(policy, base, samples).sum(1) / mask.sum(1).clamp(min=1)


def kl_per_token(policy: PreTrainedModel, base: PreTrainedModel, samples: Samples) -> float:
    """Exact KL(policy || base) per completion token over all the samples (0 when they are the same model)."""
    if policy is base:
        return 0.0
    return float(token_kl(policy, base, samples).sum() / samples.completion_mask.sum().clamp(min=1))


def evaluate(
    model: PreTrainedModel, base: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str],
    reward: RewardFunction, *, max_new_tokens: int, temperature: float = 1.0, seed: int = 0,
) -> tuple[PolicyEvaluation, Samples]:
    """Sample on held-out prompts; mean reward, exact KL to ``base`` per token, repetition."""
    samples = sample(model, tokenizer, prompts, max_new_tokens=max_new_tokens, temperature=temperature, seed=seed)
    rewards = samples.rewards = reward(prompts=samples.prompts, completions=samples.completions)
    lengths = samples.completion_mask.sum(1).float()
    return PolicyEvaluation(
        mean_reward=sum(rewards) / len(rewards), mean_kl_per_token=kl_per_token(model, base, samples),
        repeated_bigrams=repeated_bigram_share(samples.completions), mean_length=float(lengths.mean()),
    ), samples


