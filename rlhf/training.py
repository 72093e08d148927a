"""What every Hugging Face / TRL trainer of the suite shares: the common arguments,
resuming from the checkpoints in a stage's partial directory, and curves from the
trainer's log."""

from __future__ import annotations

import contextlib
import contextvars
import functools
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from accelerate import PartialState
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase, Trainer
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from rlhf.rundir import atomic_dir
from rlhf.tokenizer import save_tokenizer

# The trackers the trainers of the running stage report to, and that stage's name: set by the
# pipeline around each stage (``reporting``), so that no stage's config or fingerprint carries them.
_REPORTING: contextvars.ContextVar[tuple[tuple[str, ...], str]] = contextvars.ContextVar("reporting", default=((), ""))


@contextlib.contextmanager
def reporting(report_to: tuple[str, ...], logs: Path, project: str, stage: str) -> Iterator[None]:
    """The trainers built inside report their curves to ``report_to`` ("tensorboard": event files
    in ``logs/tensorboard/<stage>``; "wandb": project ``project``, run ``stage``, files under ``logs``)."""
    # transformers' TensorBoard callback takes its directory only from this variable (TrainingArguments
    # has no logging_dir since transformers 5); W&B takes its project and directory from these.
    env = {"TENSORBOARD_LOGGING_DIR": str(logs / "tensorboard" / stage), "WANDB_PROJECT": project,
           "WANDB_DIR": str(logs)} if report_to else {}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    token = _REPORTING.set((tuple(report_to), stage))
    try:
        yield
    finally:
        _REPORTING.reset(token)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def trainer_arguments(output_dir: Path, *, seed: int, logging_steps: int, save_steps: int | None,
                      save_total_limit: int = 1, disable_tqdm: bool | None = None,
                      gradient_checkpointing: bool = False) -> dict[str, Any]:
    """The arguments every trainer of the suite (pretraining, the online policy, DPO, SFT, reward
    models) passes to its ``TrainingArguments`` (or TRL config): reporting to the study's [logging]
    trackers (none by default; see ``reporting``), float32, the CPU when there is no GPU, the stage's
    seed; checkpoints every ``save_steps`` (None: none).

    Gradient checkpointing is off unless asked for: TRL's configs turn it on by default, which
    recomputes every forward pass in the backward (18% of a reward model's training time and
    7% of GRPO's on the demo, by py-spy) to save memory that only a large model on a small GPU needs."""
    saving = ({"save_strategy": "steps", "save_steps": save_steps, "save_total_limit": save_total_limit}
              if save_steps else {"save_strategy": "no"})
    report_to, stage = _REPORTING.get()
    named = {"run_name": stage} if stage else {}
    return dict(output_dir=str(output_dir), report_to=list(report_to), **named, bf16=False, use_cpu=not torch.cuda.is_available(), seed=seed,
                logging_steps=logging_steps, disable_tqdm=disable_tqdm,
                # transformers 5's name for it; TRL's configs still default the old one to True
                activation_checkpointing=gradient_checkpointing,
                **saving)


class FromPretrainedResume:
    """Mixin for a ``transformers.Trainer`` subclass: reload checkpoints through
    ``from_pretrained``, which maps renamed keys (GPT-NeoX ``embed_out`` -> ``lm_head``).
    The Trainer's raw state-dict load (transformers 5.23) would leave the LM head as it
    was initialised."""

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: torch.nn.Module | None = None) -> None:
        target = model if model is not None else self.model
        loaded = type(target).from_pretrained(resume_from_checkpoint, dtype=next(target.parameters()).dtype)
        target.load_state_dict(loaded.state_dict())


@functools.cache
def resuming(trainer_cls: type[Trainer]) -> type[Trainer]:
    """``trainer_cls`` with ``FromPretrainedResume``: the one resuming trainer class of each kind."""
    return type(f"Resuming{trainer_cls.__name__}", (FromPretrainedResume, trainer_cls), {})


class BarOnly(ProgressCallback):
    """The trainer's progress bar without the dict of numbers it prints at every logging step
    (hundreds of lines a stage): the numbers stay in the trainer's log history, which the
    stages keep as curves and plot."""

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        return None


def quiet(trainer: Trainer) -> Trainer:
    """One progress bar for the trainer's steps and no per-step printing."""
    for callback in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(callback)
    trainer.add_callback(BarOnly)
    return trainer


def train_resuming(trainer: Trainer, checkpoints: Path, stage: str = "") -> bool:
    """Train quietly (``quiet``), resuming from the last complete checkpoint in ``checkpoints`` if
    a killed run left one; returns whether it resumed."""
    resume = has_checkpoint(checkpoints)
    if resume and stage:
        tqdm.write(f"{stage}: resuming from the last checkpoint in {checkpoints}")
    quiet(trainer).train(resume_from_checkpoint=True if resume else None)
    return resume


def process_state() -> PartialState:
    """This process's place in an ``accelerate launch`` (one process when not launched). Without a
    GPU the state must be asked for on the CPU, or accelerate does not see the other processes."""
    return PartialState(cpu=not torch.cuda.is_available())


def is_main_process() -> bool:
    """False in the other processes of an ``accelerate launch``: they train, the main process
    alone evaluates and writes the run directory."""
    return process_state().is_main_process


def has_checkpoint(checkpoints: Path) -> bool:
    """Whether a killed run left a complete checkpoint to resume from."""
    return any(checkpoints.glob("checkpoint-*/trainer_state.json"))


def curve(history: list[dict[str, Any]], key: str) -> tuple[tuple[int, float], ...]:
    """(step, value) pairs of one logged metric."""
    return tuple((h["step"], float(h[key])) for h in history if key in h)


def save_trained(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, target: Path) -> Path:
    """Save model and tokenizer to ``target`` through its partial directory (where the
    checkpoints were), dropping the checkpoints: the finished model replaces them."""
    with atomic_dir(target) as work:
        model.save_pretrained(str(work))
        save_tokenizer(tokenizer, work)
        shutil.rmtree(work / "checkpoints", ignore_errors=True)
    return target
