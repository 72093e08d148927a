"""Keeping an online RL policy near its start model: the exact KL measured during training,
a KL coefficient that adapts to a target, and a budget the handed-on model never exceeds.

- ``ExactKL`` measures KL(policy || start) per token, and the reward, on fixed held-out prompts
  every few steps. With a budget, each measurement within it saves the model as a *kept*
  checkpoint (the few with the highest held-out reward are kept), and one past it stops training,
  so the stage can always hand on a model that was measured within the budget, whatever happened
  between two measurements: the best of them by held-out reward (early stopping on held-out data).
- ``AdaptiveKL`` is the proportional controller of Ziegler et al. 2019 (the old TRL PPO's
  ``AdaptiveKLController``): after every step, beta *= 1 + clip(KL / target - 1, -0.2, 0.2) / horizon,
  never below the configured beta. GRPO normalises advantages by the group's reward spread, so the
  pull of the reward does not shrink as the policy improves while a fixed beta's pull back stays
  the same: on the demo's organism a fixed beta = 0.1 held the KL near 0.4 for 150 steps and then
  let the policy run into a repetitive loop (KL 0.4 -> 1.1 within 40 steps). A beta that rises with
  the KL holds it. The floor matters: let down to 0 while the early KL is under the target, beta
  fell to 0.016 in 90 steps and the KL shot past the 1-nat budget by step 90 (measured on the
  other machine's base, seed 0).
TRL's GRPO and RLOO trainers read ``trainer.beta`` at every loss computation; no library
offers the controller for them, hence this callback.
"""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from transformers import PreTrainedModel, PreTrainedTokenizerBase, Trainer, TrainerCallback

from rlhf.hooked import load_hf
from rlhf.rewards import RewardFunction
from rlhf.rundir import atomic_write_json, read_json
from rlhf.training import is_main_process

from .sampling import kl_per_token, sample

KEPT_PREFIX, CHECK_FILE = "step-", "check.json"


@dataclass(frozen=True)
class KeptCheck:
    """A checkpoint measured within the KL budget: its step, its KL and the mean reward of its samples
    on the held-out prompts of the check."""

    step: int
    exact_kl: float
    reward: float


class ExactKL(TrainerCallback):
    """Every ``every`` steps (and at the first and the last), the exact KL(policy || start) per token
    on fixed held-out prompts, written into the trainer's log history as ``exact_kl`` (so a resumed
    run keeps it), with the mean ``reward`` of the same samples as ``held_out_reward``. TRL logs its
    KL estimate only when beta > 0: without this, the beta = 0 run has no KL curve.

    With ``budget`` > 0 the measurement is also the budget's check: within it, the model is saved
    to ``kept_dir/step-N`` (the ``keep`` with the highest held-out reward are kept); past it,
    training stops."""

    def __init__(self, start_dir: Path, tokenizer: PreTrainedTokenizerBase, prompts: list[str], every: int,
                 max_new_tokens: int, seed: int, reward: RewardFunction, *, budget: float = 0.0,
                 kept_dir: Path | None = None, keep: int = 3):
        self.start, self.tokenizer, self.prompts, self.every = load_hf(start_dir), tokenizer, prompts, every
        self.settings, self.reward = dict(max_new_tokens=max_new_tokens, seed=seed), reward
        self.budget, self.kept_dir, self.keep = budget, kept_dir, keep
        if budget > 0 and (kept_dir is None or not every):
            raise ValueError("a KL budget needs a directory for the kept checkpoints and a measurement interval")

    def on_step_end(self, args, state, control, model=None, **kwargs):  # noqa: ANN001
        step = state.global_step
        due = bool(self.every) and (step % self.every == 0 or step in (1, state.max_steps))
        # The replicas of a launch hold the same weights, and only the main process saves the log.
        if not (due and model is not None and is_main_process()):
            return control
        training = model.training
        samples = sample(model, self.tokenizer, self.prompts, **self.settings)
        kl = kl_per_token(model, self.start.to(model.device), samples)
        rewards = self.reward(prompts=samples.prompts, completions=samples.completions)
        check = KeptCheck(step, kl, sum(rewards) / len(rewards))
        state.log_history.append({"step": step, "exact_kl": kl, "held_out_reward": check.reward})
        model.train(training)
        if self.budget > 0:
            if kl <= self.budget:
                self._keep(model, check)
            else:
                control.should_training_stop = True
        return control

    def _keep(self, model: PreTrainedModel, check: KeptCheck) -> None:
        assert self.kept_dir is not None
        target = kept_path(self.kept_dir, check.step)
        model.save_pretrained(str(target))
        atomic_write_json(target / CHECK_FILE, asdict(check))  # written last: a complete kept checkpoint has it
        for worse in kept_checks(self.kept_dir)[self.keep:]:
            shutil.rmtree(kept_path(self.kept_dir, worse.step))


def kept_path(kept_dir: Path, step: int) -> Path:
    """Where the checkpoint kept at ``step`` is saved."""
    return kept_dir / f"{KEPT_PREFIX}{step}"


def kept_checks(kept_dir: Path) -> list[KeptCheck]:
    """The kept (within-budget) checkpoints in ``kept_dir``, the highest held-out reward first (the
    later step first among equals)."""
    if not kept_dir.is_dir():
        return []
    checks = [KeptCheck(**read_json(p / CHECK_FILE)) for p in kept_dir.glob(f"{KEPT_PREFIX}*") if (p / CHECK_FILE).exists()]
    return sorted(checks, key=lambda c: (-c.reward, -c.step))


class AdaptiveKL(TrainerCallback):
    """Adapt the trainer's KL coefficient to a target KL per token (Ziegler et al. 2019) from the KL
    the trainer logs at every step; the coefficient goes into the log history as ``beta``, and a
    resumed run starts from the last one logged."""

    def __init__(self, target: float, horizon: float, beta_min: float, beta_max: float = 100.0):
        self.target, self.horizon, self.beta_min, self.beta_max = target, horizon, beta_min, beta_max
        self.trainer: Trainer | None = None

    def attach(self, trainer: Trainer) -> Trainer:
        """The trainer whose ``beta`` this controls (a callback is not handed the trainer)."""
        self.trainer = trainer
        return trainer

    def on_train_begin(self, args, state, control, **kwargs):  # noqa: ANN001
        logged = [h["beta"] for h in state.log_history if "beta" in h]
        if logged and self.trainer is not None:
            self.trainer.beta = logged[-1]
        return control

    def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001
        if self.trainer is None or not logs or "kl" not in logs:
            return control
        self.trainer.beta = next_beta(self.trainer.beta, logs["kl"], self.target, self.horizon,
                                      self.beta_min, self.beta_max)
        state.log_history[-1]["beta"] = self.trainer.beta  # the entry the trainer just appended for these logs
        return control


def next_beta(beta: float, kl: float, target: float, horizon: float, beta_min: float, beta_max: float = 100.0) -> float:
    """One step of the proportional controller: the error is clipped to +-20%, so one noisy step
    moves beta by at most 0.2 / horizon of itself."""
    error = min(max(kl / target - 1.0, -0.2), 0.2)
    return min(max(beta * (1.0 + error / horizon), beta_min), beta_max)
