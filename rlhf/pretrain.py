"""Pretraining the base language model from scratch: GPT-NeoX (the Pythia architecture)
trained with the Hugging Face Trainer on the organism's corpus until the validation
loss stops improving.

Checkpoints live in the stage's partial directory, so a killed run resumes from the
last one instead of starting over.
"""

from __future__ import annotations

import math
import time

import torch
from jaxtyping import Int
from torch import Tensor
from transformers import (
    GPTNeoXConfig,
    GPTNeoXForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)

from rlhf.config import PretrainConfig  # noqa: F401  (re-exported: callers import it from here)
from rlhf.errors import UserError
from rlhf.hooked import load_hf
from rlhf.plots import save_lines
from rlhf.results import CorpusResult, PretrainResult
from rlhf.rundir import RunDir
from rlhf.seeding import seeded
from rlhf.tokenizer import load_tokenizer
from rlhf.training import curve, is_main_process, resuming, save_trained, train_resuming, trainer_arguments


def make_model(cfg: PretrainConfig, tokenizer: PreTrainedTokenizerBase) -> GPTNeoXForCausalLM:
    config = GPTNeoXConfig(
        vocab_size=len(tokenizer),
        hidden_size=cfg.d_model,
        num_hidden_layers=cfg.n_layers,
        num_attention_heads=cfg.n_heads,
        intermediate_size=cfg.d_mlp,
        max_position_embeddings=cfg.context,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": cfg.rotary_pct},
        use_parallel_residual=cfg.parallel_residual,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    with seeded(cfg.seed):  # the weights' initialisation takes no generator
        return GPTNeoXForCausalLM(config)


def encode(tokenizer: PreTrainedTokenizerBase, texts: list[str], context: int) -> list[list[int]]:
    """BOS + words + EOS per text; a text longer than the context is an error, not a silent cut."""
    ids = [row + [tokenizer.eos_token_id] for row in tokenizer(texts, add_special_tokens=True)["input_ids"]]
    too_long = [i for i, row in enumerate(ids) if len(row) > context]
    if too_long:
        raise UserError(f"{len(too_long)} texts exceed the context of {context} tokens (first: {texts[too_long[0]]!r}); raise pretrain.context")
    return ids


def collate(rows: list[list[int]], pad_id: int) -> dict[str, Int[Tensor, "batch seq"]]:
    width = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(input_ids)
    for i, r in enumerate(rows):
        input_ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
    labels = input_ids.masked_fill(mask == 0, -100)
    return {"input_ids": input_ids, "attention_mask": mask, "labels": labels}


@torch.no_grad()
def lm_loss(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, texts: list[str], context: int, batch_size: int = 256) -> float:
    """Exact mean cross-entropy (nats) per predicted token, padding excluded."""
    model.eval()
    ids = encode(tokenizer, texts, context)
    total, count = 0.0, 0
    for start in range(0, len(ids), batch_size):
        batch = collate(ids[start : start + batch_size], tokenizer.pad_token_id)
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        targets = batch["labels"][:, 1:]
        nll = torch.nn.functional.cross_entropy(
            logits[:, :-1].reshape(-1, logits.shape[-1]).float(), targets.reshape(-1), ignore_index=-100, reduction="sum"
        )
        total += nll.item()
        count += int((targets != -100).sum())
    return total / count


class PlateauStop(TrainerCallback):
    """Stop when the validation loss has not improved by ``min_improvement`` for
    ``patience`` evaluations. (transformers' EarlyStoppingCallback needs
    ``load_best_model_at_end``, whose checkpoint reload drops GPT-NeoX's renamed
    ``embed_out`` head in transformers 5.23.)"""

    def __init__(self, patience: int, min_improvement: float):
        self.patience, self.min_improvement = patience, min_improvement

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):  # noqa: ANN001
        losses = [h["eval_loss"] for h in state.log_history if "eval_loss" in h]
        if len(losses) > self.patience:
            best_before = min(losses[: -self.patience])
            if min(losses[-self.patience :]) > best_before - self.min_improvement:
                control.should_training_stop = True
        return control


class _Rows(torch.utils.data.Dataset):
    def __init__(self, rows: list[list[int]]):
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> list[int]:
        return self.rows[i]


def _adopt(cfg: PretrainConfig, run_dir: RunDir) -> PretrainResult:
    """Use a pretrained model as the base: save it with the study's tokenizer, measure its loss."""
    started = time.time()
    tokenizer = load_tokenizer(run_dir.tokenizer)
    model = load_hf(cfg.from_model)
    if len(tokenizer) > model.config.vocab_size:
        raise UserError(f"tokenizer has {len(tokenizer)} tokens but {cfg.from_model} has a vocabulary of "
                        f"{model.config.vocab_size}; set tokenizer.source to the same model")
    context = getattr(model.config, "max_position_embeddings", cfg.context)
    test_loss = lm_loss(model, tokenizer, run_dir.texts("test"), context, batch_size=32)
    save_trained(model, tokenizer, run_dir.base)
    return PretrainResult(from_model=cfg.from_model, steps=0, stopped_early=False, resumed=False,
                          parameters=sum(p.numel() for p in model.parameters()), train_curve=(), val_curve=(),
                          test_loss=test_loss, entropy_floor=None, loss_over_floor=None,
                          perplexity=math.exp(test_loss), seconds=time.time() - started)


def pretrain(cfg: PretrainConfig, run_dir: RunDir) -> PretrainResult | None:
    """Stage: train the base LM, save it (with its tokenizer) to ``models/base``, and
    record the loss curve and the held-out loss against the corpus entropy floor.
    With ``from_model`` set, adopt that pretrained model instead. Returns the result in the
    main process, None in the others of a launch."""
    if cfg.from_model:
        if not is_main_process():  # nothing to train: one process adopts the model
            return None
        result = _adopt(cfg, run_dir)
        result.save(run_dir)
        return result
    started = time.time()
    tokenizer = load_tokenizer(run_dir.tokenizer)
    train = encode(tokenizer, run_dir.texts("train"), cfg.context)
    val = encode(tokenizer, run_dir.texts("val")[: cfg.eval_reviews], cfg.context)
    checkpoints = run_dir.model_partial("base") / "checkpoints"
    args = TrainingArguments(
        **trainer_arguments(checkpoints, seed=cfg.seed, logging_steps=max(1, cfg.eval_every // 4),
                            save_steps=cfg.eval_every, save_total_limit=2),
        max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=256,
        learning_rate=cfg.learning_rate,
        warmup_steps=cfg.warmup_steps,
        lr_scheduler_type="cosine",
        weight_decay=0.01,
        eval_strategy="steps",
        eval_steps=cfg.eval_every,
        dataloader_num_workers=0,
    )
    trainer = resuming(Trainer)(
        model=make_model(cfg, tokenizer),
        args=args,
        train_dataset=_Rows(train),
        eval_dataset=_Rows(val),
        data_collator=lambda rows: collate(rows, tokenizer.pad_token_id),
        callbacks=[PlateauStop(cfg.patience, cfg.min_improvement)],
    )
    resume = train_resuming(trainer, checkpoints, "pretrain")
    if not is_main_process():
        return None
    model = trainer.model
    history = trainer.state.log_history
    test_texts = run_dir.texts("test")
    test_loss = lm_loss(model.float().cpu(), tokenizer, test_texts, cfg.context)
    floor = CorpusResult.load(run_dir).test.entropy_floor
    save_trained(model, tokenizer, run_dir.base)
    train_curve, val_curve = curve(history, "loss"), curve(history, "eval_loss")
    result = PretrainResult(
        steps=trainer.state.global_step,
        stopped_early=trainer.state.global_step < cfg.max_steps,
        parameters=sum(p.numel() for p in model.parameters()),
        train_curve=train_curve,
        val_curve=val_curve,
        test_loss=test_loss,
        entropy_floor=floor,
        loss_over_floor=test_loss / floor if floor else None,
        perplexity=math.exp(test_loss),
        resumed=resume,
        seconds=time.time() - started,
    )
    result.save(run_dir)
    save_lines(
        PretrainResult.figure(run_dir, "loss"),
        {"train": tuple(map(list, zip(*train_curve))), "validation": tuple(map(list, zip(*val_curve)))},
        title="Base LM pretraining", xlabel="step", ylabel="loss (nats/token)",
        hlines={f"entropy floor {floor:.3f}": floor} if floor else None,
    )
    return result
