"""Reward models from preferences: Bradley-Terry, and the distributional ones of DPL.

Distributional preference learning (Siththaranjan, Laidlaw and Hadfield-Menell) lets a
reward model say how much annotators disagree about an alternative (hidden context)
instead of averaging it away:
- mean and variance: two outputs, mu and std = softplus(output 1); a pair's
  z = (mu_c - mu_r) / sqrt(s_c^2 + s_r^2), loss softplus(-z * sqrt(2 pi));
- categorical: N outputs, a distribution over N atoms in [0, 1];
  P(chosen) = sum_ij p_c(i) p_r(j) [a_i > a_j], ties counting one half.
Both train with TRL's ``RewardTrainer`` (subclassed: it refuses heads with more than
one output and computes the Bradley-Terry loss).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from datasets import Dataset
from jaxtyping import Float
from torch import Tensor
from transformers import AutoModelForSequenceClassification, PreTrainedModel, PreTrainedTokenizerBase
from trl import RewardConfig, RewardTrainer

from rlhf.config import Kind, ReadAt, RewardModelConfig  # noqa: F401  (re-exported: callers import it from here)
from rlhf.errors import UserError
from rlhf.registry import load
from rlhf.reward_kinds import REWARD_HEADS
from rlhf.rundir import partial_dir
from rlhf.seeding import seeded
from rlhf.training import is_main_process, quiet, save_trained, trainer_arguments

SQRT_2PI = math.sqrt(2 * math.pi)


def mean_and_variance_loss(chosen: Float[Tensor, "b 2"], rejected: Float[Tensor, "b 2"]) -> Float[Tensor, " b"]:
    """Per-pair loss of the mean-and-variance model: softplus(-z sqrt(2 pi))."""
    mu_c, mu_r = chosen[:, 0], rejected[:, 0]
    s_c, s_r = F.softplus(chosen[:, 1]), F.softplus(rejected[:, 1])
    z = (mu_c - mu_r) / torch.sqrt(s_c**2 + s_r**2)
    return F.softplus(-z * SQRT_2PI)


def atoms(n: int, device: torch.device | None = None) -> Float[Tensor, " n"]:
    return torch.linspace(0.0, 1.0, n, device=device)


def categorical_preference(chosen: Float[Tensor, "b n"], rejected: Float[Tensor, "b n"]) -> Float[Tensor, " b"]:
    """P(chosen beats rejected) under the two predicted distributions over the atoms (ties count one half)."""
    p_c, p_r = chosen.softmax(-1), rejected.softmax(-1)
    a = atoms(chosen.shape[-1], chosen.device)
    beats = (a[:, None] > a[None, :]).float() + 0.5 * (a[:, None] == a[None, :]).float()  # (i, j)
    return torch.einsum("bi,ij,bj->b", p_c, beats, p_r)


def categorical_loss(chosen: Float[Tensor, "b n"], rejected: Float[Tensor, "b n"]) -> Float[Tensor, " b"]:
    """Per-pair loss of the categorical model: -log P(chosen beats rejected)."""
    return -torch.log(categorical_preference(chosen, rejected).clamp(min=1e-12))


def bradley_terry_loss(chosen: Float[Tensor, "b 1"], rejected: Float[Tensor, "b 1"]) -> Float[Tensor, " b"]:
    return -F.logsigmoid(chosen[:, 0] - rejected[:, 0])


def _point(outputs: Float[Tensor, "b 1"]) -> tuple[Float[Tensor, " b"], Float[Tensor, " b"]]:
    return outputs[:, 0], torch.zeros_like(outputs[:, 0])


def _gaussian(outputs: Float[Tensor, "b 2"]) -> tuple[Float[Tensor, " b"], Float[Tensor, " b"]]:
    return outputs[:, 0], F.softplus(outputs[:, 1])


def _over_atoms(outputs: Float[Tensor, "b n"]) -> tuple[Float[Tensor, " b"], Float[Tensor, " b"]]:
    p = outputs.softmax(-1)
    a = atoms(outputs.shape[-1], outputs.device)
    mean = p @ a
    return mean, torch.sqrt((p * (a[None, :] - mean[:, None]) ** 2).sum(-1))


def _variance_penalty(chosen: Float[Tensor, "b 2"], rejected: Float[Tensor, "b 2"]) -> Float[Tensor, ""]:
    stds = torch.cat([F.softplus(chosen[:, 1]), F.softplus(rejected[:, 1])])
    return (stds**2).mean()


def _minus_entropy(chosen: Float[Tensor, "b n"], rejected: Float[Tensor, "b n"]) -> Float[Tensor, ""]:
    p = torch.cat([chosen, rejected]).softmax(-1)
    return (p * p.clamp(min=1e-12).log()).sum(-1).mean()


@dataclass(frozen=True)
class Head:
    """A reward model's head, as rlhf.reward_kinds.REWARD_HEADS names it: its width, its per-pair loss,
    each alternative's predicted mean and spread, and what ``reward_model.regulariser`` weighs."""

    outputs: int  # 0: one per atom (reward_model.n_atoms, at least 2)
    loss: Callable[[Tensor, Tensor], Tensor]
    mean_and_std: Callable[[Tensor], tuple[Tensor, Tensor]]
    regulariser: Callable[[Tensor, Tensor], Tensor] | None = None
    distributional: bool = True  # it predicts a spread


BRADLEY_TERRY = Head(1, bradley_terry_loss, _point, distributional=False)
MEAN_VARIANCE = Head(2, mean_and_variance_loss, _gaussian, _variance_penalty)
CATEGORICAL = Head(0, categorical_loss, _over_atoms, _minus_entropy)


def head(kind: Kind) -> Head:
    return load(REWARD_HEADS[kind])


def outputs_of(kind: Kind, n_atoms: int = 10) -> int:
    return head(kind).outputs or n_atoms


def mean_and_std(kind: Kind, outputs: Float[Tensor, "b k"]) -> tuple[Float[Tensor, " b"], Float[Tensor, " b"]]:
    """Each alternative's predicted reward mean and spread (0 spread for Bradley-Terry)."""
    return head(kind).mean_and_std(outputs)


def dpl_r_squared(means: Float[Tensor, " n"], stds: Float[Tensor, " n"]) -> float:
    """DPL's r^2: the share of the reward's variance explained by the observed alternative,
    Var(mu) / (Var(mu) + E[sigma^2]); 1 - r^2 is what the hidden context accounts for."""
    explained = float(means.float().var())
    hidden = float((stds.float() ** 2).mean())
    return explained / (explained + hidden) if explained + hidden > 0 else float("nan")


class DistributionalRewardTrainer(RewardTrainer):
    """TRL's RewardTrainer with a DPL loss, an optional variance penalty (mean-and-variance) or
    entropy bonus (categorical), and accuracy judged on the predicted means."""

    def __init__(self, *args: object, kind: Kind, model: PreTrainedModel, regulariser: float = 0.0, **kwargs: object):
        width, need = model.config.num_labels, head(kind).outputs
        if width < 2 if not need else width != need:
            raise UserError(f"a {kind} reward model needs {need or 'at least 2'} outputs, but the model has num_labels={width}")
        self.kind, self.head, self.regulariser = kind, head(kind), regulariser
        labels = model.config.num_labels
        # RewardTrainer refuses a head wider than one output; the head itself keeps its width.
        model.config.num_labels = 1
        try:
            super().__init__(*args, model=model, **kwargs)
        finally:
            model.config.num_labels = labels

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # noqa: ANN001
        inputs["use_cache"] = False
        outputs = model(**inputs)
        chosen, rejected = torch.chunk(outputs.logits.float(), chunks=2)
        loss = self.head.loss(chosen, rejected).mean()
        if self.regulariser and self.head.regulariser:
            loss = loss + self.regulariser * self.head.regulariser(chosen, rejected)
        mode = "train" if model.training else "eval"
        with torch.no_grad():
            mean_c, mean_r = self.head.mean_and_std(chosen)[0], self.head.mean_and_std(rejected)[0]
            self._metrics[mode]["accuracy"].append(float((mean_c > mean_r).float().mean()))
        return (loss, outputs) if return_outputs else loss


def check_preferences(rows: Sequence[dict]) -> None:
    """Refuse preference data a reward model cannot learn from, naming the row."""
    if not rows:
        raise UserError("no preference pairs")
    for i, row in enumerate(rows):
        missing = [k for k in ("chosen", "rejected") if k not in row]
        if missing:
            raise UserError(f"preference row {i} has no {', '.join(missing)} column (columns: {', '.join(sorted(row))})")
        if row["chosen"] == row["rejected"]:
            raise UserError(f"preference row {i} has chosen == rejected ({row['chosen'][:60]!r}): nothing to prefer")


def train_reward_model(cfg: RewardModelConfig, init: Path, tokenizer: PreTrainedTokenizerBase, train: Sequence[dict],
                       out: Path, eval_rows: Sequence[dict] | None = None) -> PreTrainedModel:
    """A reward model initialised from a causal LM checkpoint (``init``) and trained on
    ``{"chosen", "rejected"}`` texts; saved to ``out``."""
    check_preferences(train)
    with seeded(cfg.seed):  # the new head's initialisation takes no generator
        model = AutoModelForSequenceClassification.from_pretrained(str(init), num_labels=outputs_of(cfg.kind, cfg.n_atoms))
    # This model was created here: setting its config touches nothing shared.
    model.config.pad_token_id = tokenizer.pad_token_id
    model.config.reward_read_at = cfg.read_at  # saved with the model, so scoring reads where training did
    args = RewardConfig(
        **trainer_arguments(partial_dir(out) / "checkpoints", seed=cfg.seed, logging_steps=20, save_steps=None,
                            disable_tqdm=True),
        per_device_train_batch_size=cfg.batch_size, learning_rate=cfg.learning_rate, num_train_epochs=cfg.epochs,
        center_rewards_coefficient=None,
    )
    if cfg.read_at == "eos":
        data = Dataset.from_list([{"chosen": r["chosen"], "rejected": r["rejected"]} for r in train])
    else:  # token ids: RewardTrainer appends EOS to texts only
        data = Dataset.from_dict({f"{k}_ids": _ids(tokenizer, [r[k] for r in train], "last_token")
                                  for k in ("chosen", "rejected")})
    trainer = DistributionalRewardTrainer(kind=cfg.kind, model=model, regulariser=cfg.regulariser, args=args,
                                          train_dataset=data, processing_class=tokenizer)
    quiet(trainer).train()
    model = trainer.model.float().cpu()
    if is_main_process():  # under accelerate launch every process trains, one saves
        save_trained(model, tokenizer, out)
    return model


@torch.no_grad()
def outputs(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, texts: Sequence[str],
            batch_size: int = 256) -> Float[Tensor, "n k"]:
    """The reward head's raw outputs for each text."""
    model.eval()
    read_at = getattr(model.config, "reward_read_at", "eos")
    out = []
    for start in range(0, len(texts), batch_size):
        rows = _ids(tokenizer, texts[start : start + batch_size], read_at)
        batch = tokenizer.pad({"input_ids": rows}, return_tensors="pt").to(model.device)
        out.append(model(**batch).logits.float().cpu())
    return torch.cat(out)


def _ids(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], read_at: ReadAt) -> list[list[int]]:
    """Token ids as the head reads them: the head reads the last non-padding token."""
    eos = [tokenizer.eos_token_id] if read_at == "eos" else []
    return [ids + eos for ids in tokenizer(list(texts))["input_ids"]]


def score(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, texts: Sequence[str],
          kind: Kind) -> tuple[Float[Tensor, " n"], Float[Tensor, " n"]]:
    """Predicted reward mean and spread of each text."""
    return mean_and_std(kind, outputs(model, tokenizer, texts))
