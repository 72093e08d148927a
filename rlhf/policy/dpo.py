"""DPO: offline preference learning from pairs of base-model completions ranked by a
reward (``dpo.reward``, the VADER utility by default), with TRL's DPOTrainer, and the
policy's implicit reward.

A DPO policy carries its reward in closed form: r(x, y) = beta * log(pi(y|x) / pi_ref(y|x)).
How often that implicit reward orders held-out pairs like the true reward says how
much of the preference the policy absorbed.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import torch
from datasets import Dataset
from jaxtyping import Float, Int
from torch import Tensor
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from rlhf.adopt import adopt
from rlhf.errors import UserError
from rlhf.hooked import load_hf
from rlhf.plots import save_lines
from rlhf.policy.config import DPOStageConfig  # noqa: F401  (re-exported: callers import it from here)
from rlhf.results import DPOExample, DPOResult
from rlhf.rewards import RewardFunction, make_reward
from rlhf.rundir import RunDir
from rlhf.tokenizer import load_tokenizer
from rlhf.training import curve, is_main_process, resuming, save_trained, train_resuming, trainer_arguments

from .sampling import evaluate, prompts_from_texts, sample


def _completion_ids(tokenizer: PreTrainedTokenizerBase, prompt: str, completion: str) -> tuple[list[int], int]:
    """Token ids of prompt + completion, and where the completion starts (as TRL's DPO
    tokenises: the completion begins where the two tokenisations diverge)."""
    prompt_ids = tokenizer(prompt)["input_ids"]
    full = tokenizer(prompt + completion)["input_ids"] + [tokenizer.eos_token_id]
    start = 0
    while start < min(len(prompt_ids), len(full)) and prompt_ids[start] == full[start]:
        start += 1
    return full, start


@torch.no_grad()
def sequence_log_probs(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str], completions: Sequence[str],
    batch_size: int = 64,
) -> Float[Tensor, " n"]:
    """log pi(completion + EOS | prompt) for each pair, summed over the completion's tokens."""
    model.eval()
    out = []
    for start in range(0, len(prompts), batch_size):
        rows = [_completion_ids(tokenizer, p, c) for p, c in zip(prompts[start : start + batch_size],
                                                                 completions[start : start + batch_size])]
        width = max(len(ids) for ids, _ in rows)
        ids: Int[Tensor, "batch seq"] = torch.full((len(rows), width), tokenizer.pad_token_id)
        mask = torch.zeros_like(ids)
        target = torch.zeros_like(ids)
        for i, (row, first) in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row)
            mask[i, : len(row)] = 1
            target[i, first : len(row)] = 1
        logp = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits.float(), dim=-1)
        token_logp = logp[:, :-1].gather(-1, ids[:, 1:, None])[..., 0]
        out.append((token_logp * target[:, 1:]).sum(1))
    return torch.cat(out)


def dpo_implicit_reward(
    policy: PreTrainedModel | str | Path,
    reference: PreTrainedModel | str | Path,
    prompts: Sequence[str],
    completions: Sequence[str],
    beta: float,
    tokenizer: PreTrainedTokenizerBase | str | Path | None = None,
) -> list[float]:
    """beta * log(pi(y|x) / pi_ref(y|x)) per completion. Models are objects or directories;
    the tokenizer defaults to the one saved with the policy. Completions are appended to
    their prompts as they are (start them with a space for word-level text)."""
    if len(prompts) != len(completions):
        raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
    if tokenizer is None:
        if isinstance(policy, PreTrainedModel):
            raise ValueError("pass the tokenizer when the policy is a model object")
        tokenizer = policy
    tokenizer = load_tokenizer(tokenizer) if isinstance(tokenizer, (str, Path)) else tokenizer
    pi, ref = load_hf(policy), load_hf(reference)
    diff = sequence_log_probs(pi, tokenizer, prompts, completions) - sequence_log_probs(ref, tokenizer, prompts, completions)
    return (beta * diff).tolist()


def preference_pairs(
    base: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str], reward: RewardFunction,
    cfg: DPOStageConfig,
) -> list[dict[str, str | float]]:
    """Two sampled base completions per prompt; the higher reward is chosen."""
    a = sample(base, tokenizer, prompts, max_new_tokens=cfg.max_completion_length, seed=cfg.seed + 10)
    b = sample(base, tokenizer, prompts, max_new_tokens=cfg.max_completion_length, seed=cfg.seed + 11)
    ra = reward(prompts=prompts, completions=a.completions)
    rb = reward(prompts=prompts, completions=b.completions)
    pairs = []
    for p, ca, cb, xa, xb in zip(prompts, a.completions, b.completions, ra, rb):
        if abs(xa - xb) >= cfg.min_reward_gap:
            (chosen, rc), (rejected, rr) = sorted(((ca, xa), (cb, xb)), key=lambda t: -t[1])
            pairs.append({"prompt": p, "chosen": " " + chosen, "rejected": " " + rejected,
                          "chosen_reward": rc, "rejected_reward": rr})
    return pairs


def _train(cfg: DPOStageConfig, run_dir: RunDir, tokenizer: PreTrainedTokenizerBase, train: list[dict]
           ) -> tuple[PreTrainedModel | None, int, list[dict]]:
    """DPOTrainer from the base on the training pairs: (model, steps, log history); no model in the
    other processes of a launch."""
    from trl import DPOConfig, DPOTrainer

    checkpoints = run_dir.model_partial("dpo") / "checkpoints"
    args = DPOConfig(
        **trainer_arguments(checkpoints, seed=cfg.seed, logging_steps=5, save_steps=cfg.save_every,
                            gradient_checkpointing=cfg.gradient_checkpointing),
        beta=cfg.beta, learning_rate=cfg.learning_rate, max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.batch_size,
    )
    columns = ("prompt", "chosen", "rejected")
    trainer = resuming(DPOTrainer)(model=str(run_dir.base), args=args, processing_class=tokenizer,
                                   train_dataset=Dataset.from_dict({k: [p[k] for p in train] for k in columns}))
    train_resuming(trainer, checkpoints)
    if not is_main_process():
        return None, 0, []
    return trainer.model.float().cpu(), trainer.state.global_step, trainer.state.log_history


def train_dpo(cfg: DPOStageConfig, run_dir: RunDir) -> DPOResult | None:
    """Stage: preference pairs from the base model, ``models/dpo`` trained with DPOTrainer,
    and the implicit reward's accuracy on held-out pairs. None when disabled, and in the
    other processes of a launch."""
    if not cfg.enabled:
        return None
    if cfg.beta <= 0:
        raise UserError(f"dpo.beta must be > 0, got {cfg.beta}")
    if cfg.from_model and not is_main_process():  # nothing to train: one process adopts the model
        return None
    started = time.time()
    reward = make_reward(cfg.reward, run_dir, label=cfg.reward_label)  # a bad spec fails before anything is written
    # Adopted first, so that a model that is no fine-tune of the base is refused before any sampling.
    adopted = adopt(cfg.from_model, run_dir, "dpo", "dpo.from_model") if cfg.from_model else None
    tokenizer = load_tokenizer(run_dir.base)
    base = load_hf(run_dir.base)
    texts = run_dir.texts("train")
    pairs = preference_pairs(base, tokenizer, prompts_from_texts(texts, cfg.n_pairs, cfg.seed + 5), reward, cfg)
    random.Random(cfg.seed).shuffle(pairs)
    n_test = int(cfg.held_out_fraction * len(pairs))
    test, train = pairs[:n_test], pairs[n_test:]
    if len(train) < cfg.batch_size or n_test < 10:
        raise UserError(f"only {len(pairs)} preference pairs differ by {cfg.min_reward_gap} or more; raise dpo.n_pairs")
    if adopted is not None:  # its implicit reward is read with dpo.beta on the same held-out pairs
        policy, steps, history = adopted, 0, []
    else:
        policy, steps, history = _train(cfg, run_dir, tokenizer, train)
        if policy is None:  # another process of a launch
            return None
    prompts = [p["prompt"] for p in test]
    r_chosen = dpo_implicit_reward(policy, base, prompts, [p["chosen"] for p in test], cfg.beta, tokenizer)
    r_rejected = dpo_implicit_reward(policy, base, prompts, [p["rejected"] for p in test], cfg.beta, tokenizer)
    accuracy = sum(c > r for c, r in zip(r_chosen, r_rejected)) / len(test)
    eval_prompts = prompts_from_texts(run_dir.texts("test"), 256, cfg.seed + 1)
    settings = dict(max_new_tokens=cfg.max_completion_length, seed=cfg.seed + 1)
    before, _ = evaluate(base, base, tokenizer, eval_prompts, reward, **settings)
    after, _ = evaluate(policy, base, tokenizer, eval_prompts, reward, **settings)
    if not cfg.from_model:
        save_trained(policy, tokenizer, run_dir.model("dpo"))
    curves = {k: curve(history, k) for k in ("loss", "rewards/accuracies", "rewards/margins")}
    result = DPOResult(
        config=asdict(cfg), beta=cfg.beta, steps=steps, train_pairs=len(train), held_out_pairs=n_test,
        implicit_reward_accuracy=accuracy, base=before, policy=after,
        reward_gain=after.mean_reward - before.mean_reward, curves=curves,
        examples=tuple(DPOExample(**p, implicit_chosen=c, implicit_rejected=r)
                       for p, c, r in list(zip(test, r_chosen, r_rejected))[:8]),
        seconds=time.time() - started, reward=cfg.reward,
    )
    result.save(run_dir)
    points = curves["rewards/accuracies"]
    if points:
        save_lines(DPOResult.figure(run_dir, "accuracy"), {"training batches": ([s for s, _ in points], [v for _, v in points])},
                   title="DPO: implicit reward accuracy on training pairs", xlabel="step", ylabel="accuracy",
                   hlines={f"held-out {accuracy:.2f}": accuracy})
    return result
