"""The supervised baseline: fine-tune the base model on good completions with TRL's SFTTrainer.

The writing-prompts study compares RL policies with plain supervised fine-tuning on
preferred responses; so does this one. On the sentiment organism the preferred responses
are the base model's own best completions (rejection sampling: sample, score with the
utility, keep the top share), so SFT and RL see the same reward through different
channels. On the digits organism they are the chosen responses of the preference pairs.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from datasets import Dataset
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from rlhf.adopt import adopt
from rlhf.errors import UserError
from rlhf.hooked import load_hf
from rlhf.policy.config import SFTConfig  # noqa: F401  (re-exported: callers import it from here)
from rlhf.results import Curve, SFTResult, SFTSample
from rlhf.rewards import UtilityReward
from rlhf.rundir import RunDir, partial_dir
from rlhf.tokenizer import load_tokenizer
from rlhf.training import curve, is_main_process, resuming, save_trained, train_resuming, trainer_arguments

from .sampling import evaluate, prompts_from_texts, sample


def train_sft(cfg: SFTConfig, base_dir: Path, tokenizer: PreTrainedTokenizerBase, rows: Sequence[dict],
              target: Path) -> tuple[PreTrainedModel | None, Curve]:
    """Fine-tune the model in ``base_dir`` on ``{"prompt", "completion"}`` rows (loss on the
    completion only), save it to ``target``; return it with its training-loss curve. Under an
    ``accelerate launch`` every process trains and the main one saves; the others get None."""
    from trl import SFTConfig as TRLConfig
    from trl import SFTTrainer

    if not rows:
        raise UserError("no rows to fine-tune on")
    missing = [k for k in ("prompt", "completion") if k not in rows[0]]
    if missing:
        raise UserError(f"SFT rows need prompt and completion columns; missing {', '.join(missing)}")
    checkpoints = partial_dir(target) / "checkpoints"
    args = TRLConfig(
        **trainer_arguments(checkpoints, seed=cfg.seed, logging_steps=5, save_steps=cfg.save_every, disable_tqdm=True,
                            gradient_checkpointing=cfg.gradient_checkpointing),
        learning_rate=cfg.learning_rate, num_train_epochs=cfg.epochs, per_device_train_batch_size=cfg.batch_size,
        completion_only_loss=True,
    )
    trainer = resuming(SFTTrainer)(
        model=load_hf(base_dir), args=args, processing_class=tokenizer,
        train_dataset=Dataset.from_list([{"prompt": r["prompt"], "completion": r["completion"]} for r in rows]))
    train_resuming(trainer, checkpoints)
    losses = curve(trainer.state.log_history, "loss")
    if not is_main_process():
        return None, losses
    model = trainer.model.float().cpu()
    save_trained(model, tokenizer, target)
    return model, losses


def sft_stage(cfg: SFTConfig, run_dir: RunDir) -> SFTResult | None:
    """Stage: rejection-sampling SFT of the base model on the sentiment organism (or, with
    ``from_model``, an adopted supervised fine-tune), evaluated like the RL policy (utility reward,
    KL to the base, repetition) on the same held-out prompts. None when disabled, and in the other
    processes of a launch."""
    if not cfg.enabled:
        return None
    if cfg.from_model and not is_main_process():  # nothing to train: one process adopts the model
        return None
    started = time.time()
    tokenizer = load_tokenizer(run_dir.base)
    base = load_hf(run_dir.base)
    reward = UtilityReward()
    test_texts = run_dir.texts("test")
    if cfg.from_model:
        model, losses, kept, rows = adopt(cfg.from_model, run_dir, "sft", "sft.from_model"), (), [], []
    else:
        prompts = prompts_from_texts(run_dir.texts("train"), cfg.n_samples, cfg.seed)
        drawn = sample(base, tokenizer, prompts, max_new_tokens=cfg.max_completion_length, seed=cfg.seed)
        rewards = reward(prompts=drawn.prompts, completions=drawn.completions)
        ranked = sorted(zip(rewards, drawn.prompts, drawn.completions), key=lambda r: -r[0])
        kept = ranked[: max(1, round(cfg.top_fraction * len(ranked)))]
        rows = [{"prompt": p, "completion": " " + c} for _, p, c in kept if c.strip()]
        model, losses = train_sft(cfg, run_dir.base, tokenizer, rows, run_dir.model("sft"))
        if model is None:  # another process of a launch
            return None
    # The same held-out prompts and sampling seed as the RL policy's evaluation (policy.seed 0 by default).
    eval_prompts = prompts_from_texts(test_texts, cfg.n_eval_prompts, cfg.seed + 1)
    settings = dict(max_new_tokens=cfg.max_completion_length, seed=cfg.seed + 1)
    before, _ = evaluate(base, base, tokenizer, eval_prompts, reward, **settings)
    after, samples = evaluate(model, base, tokenizer, eval_prompts, reward, **settings)
    result = SFTResult(
        config=asdict(cfg), n_samples=0 if cfg.from_model else cfg.n_samples, top_fraction=cfg.top_fraction,
        rows=len(rows), reward_threshold=kept[-1][0] if kept else None,
        mean_reward_of_rows=sum(r for r, _, _ in kept) / len(kept) if kept else None, base=before, sft=after,
        reward_gain=after.mean_reward - before.mean_reward, loss_curve=losses,
        samples=tuple(SFTSample(prompt=p, completion=c, reward=r)
                      for p, c, r in list(zip(samples.prompts, samples.completions, samples.rewards))[:8]),
        seconds=time.time() - started,
    )
    result.save(run_dir)
    return result
