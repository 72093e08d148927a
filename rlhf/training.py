"""What every Hugging Face / TRL trainer of the suite shares: resuming from the
checkpoints in a stage's partial directory, and curves from the trainer's log."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch
from accelerate import PartialState
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from rlhf.rundir import atomic_dir


class FromPretrainedResume:
    """Mixin for a ``transformers.Trainer`` subclass: reload checkpoints through
    ``from_pretrained``, which maps renamed keys (GPT-NeoX ``embed_out`` -> ``lm_head``).
    The Trainer's raw state-dict load (transformers 5.23) would leave the LM head as it
    was initialised."""

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: torch.nn.Module | None = None) -> None:
        target = model if model is not None else self.model
        loaded = type(target).from_pretrained(resume_from_checkpoint, dtype=next(target.parameters()).dtype)
        target.load_state_dict(loaded.state_dict())


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


def curve(history: list[dict[str, Any]], key: str) -> list[tuple[int, float]]:
    """(step, value) pairs of one logged metric."""
    return [(h["step"], float(h[key])) for h in history if key in h]


def save_trained(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, target: Path) -> Path:
    """Save model and tokenizer to ``target`` through its partial directory (where the
    checkpoints were), dropping the checkpoints: the finished model replaces them."""
    with atomic_dir(target) as work:
        model.save_pretrained(str(work))
        tokenizer.save_pretrained(str(work))
        shutil.rmtree(work / "checkpoints", ignore_errors=True)
    return target
