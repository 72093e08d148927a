"""RLHF policies: online RL against the utility reward with TRL's GRPO or RLOO trainer.

TRL 1.16 has no PPOTrainer; GRPO and RLOO clip the policy ratio like PPO and need no
value model. The reference model is the base model (TRL rebuilds it from the path we
pass), and the KL coefficient ``beta`` keeps the policy close to it. A policy that
maximises the reward by repeating one high-valence word is not a believable fine-tune,
so training also stops once the mean per-token KL to the base passes a budget, and
the evaluation reports KL and repetition beside the reward.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from datasets import Dataset
from transformers import PreTrainedTokenizerBase, TrainerCallback

from rlhf.errors import UserError
from rlhf.hooked import load_hf
from rlhf.plots import save_lines
from rlhf.rewards import RewardFunction, UtilityReward
from rlhf.rundir import RunDir, atomic_write_json, partial_dir, read_json
from rlhf.tokenizer import load_tokenizer
from rlhf.training import FromPretrainedResume, curve, has_checkpoint, is_main_process, save_trained

from .sampling import evaluate, kl_per_token, prompts_from_texts, repeated_bigram_share, sample

ALGORITHMS = ("grpo", "rloo")


@dataclass(frozen=True)
class PolicyConfig:
    algorithm: str = "grpo"  # "grpo" or "rloo"
    beta: float = 0.1  # KL coefficient against the base model
    learning_rate: float = 1e-4
    max_steps: int = 400
    kl_budget: float = 1.0  # stop once the logged mean KL per token passes this (nats); 0 = never
    num_generations: int = 8  # completions per prompt (the group)
    batch_size: int = 64  # completions per step
    max_completion_length: int = 19
    temperature: float = 1.0
    n_prompts: int = 4000
    n_eval_prompts: int = 256
    reward_scale: float = 5.0
    reward_clip: float = 10.0
    include_prompt: bool = False  # score prompt + completion instead of the completion only
    save_every: int = 25
    kl_every: int = 10  # steps between exact KL measurements on held-out prompts; 0 = never
    kl_prompts: int = 64
    seed: int = 0


class KLBudgetStop(TrainerCallback):
    """Stop training once the mean KL per token to the reference, averaged over the last
    ``window`` logged steps (one step's estimate is noisy), passes the budget."""

    def __init__(self, budget: float, window: int = 10):
        self.budget, self.window, self.recent = budget, window, []

    def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001
        if logs and "kl" in logs:
            self.recent = [*self.recent, logs["kl"]][-self.window :]
            if self.budget > 0 and len(self.recent) == self.window and sum(self.recent) / self.window > self.budget:
                control.should_training_stop = True
        return control


class ExactKL(TrainerCallback):
    """Every ``every`` steps, the exact KL(policy || base) per token on fixed held-out prompts,
    written into the trainer's log history as ``exact_kl`` (so a resumed run keeps it). TRL
    logs its KL estimate only when beta > 0: without this, the beta = 0 run has no KL curve."""

    def __init__(self, base_dir: Path, tokenizer: PreTrainedTokenizerBase, prompts: list[str], every: int,
                 max_new_tokens: int, seed: int):
        self.base, self.tokenizer, self.prompts, self.every = load_hf(base_dir), tokenizer, prompts, every
        self.settings = dict(max_new_tokens=max_new_tokens, seed=seed)

    def on_step_end(self, args, state, control, model=None, **kwargs):  # noqa: ANN001
        due = bool(self.every) and (state.global_step % self.every == 0 or state.global_step == 1)
        # The replicas of a launch hold the same weights, and only the main process saves the log.
        if due and model is not None and is_main_process():
            training = model.training
            samples = sample(model, self.tokenizer, self.prompts, **self.settings)
            kl = kl_per_token(model, self.base.to(model.device), samples)
            state.log_history.append({"step": state.global_step, "exact_kl": kl})
            model.train(training)
        return control


class LoggedUtility(UtilityReward):
    """The utility reward, also logging the repeated-bigram share of each batch to TRL."""

    def __call__(self, prompts: Sequence[str], completions: Sequence[str], **kwargs: object) -> list[float]:
        log_metric = kwargs.get("log_metric")
        if callable(log_metric):
            log_metric("repeated_bigrams", repeated_bigram_share(completions))
        return super().__call__(prompts, completions)


def _trainer(cfg: PolicyConfig, base_dir: Path, tokenizer: PreTrainedTokenizerBase, prompts: list[str],
             reward: RewardFunction, output_dir: Path, kl_prompts: list[str]):
    from trl import GRPOConfig, GRPOTrainer, RLOOConfig, RLOOTrainer

    common = dict(
        output_dir=str(output_dir), learning_rate=cfg.learning_rate, beta=cfg.beta, num_generations=cfg.num_generations,
        per_device_train_batch_size=cfg.batch_size, max_completion_length=cfg.max_completion_length,
        temperature=cfg.temperature, max_steps=cfg.max_steps, logging_steps=1, save_steps=cfg.save_every,
        save_total_limit=1, report_to=[], bf16=False, use_cpu=not torch.cuda.is_available(), seed=cfg.seed,
        disable_dropout=True, top_k=0, top_p=1.0,
    )
    config_cls, trainer_cls = {"grpo": (GRPOConfig, GRPOTrainer), "rloo": (RLOOConfig, RLOOTrainer)}[cfg.algorithm]
    resuming_cls = type(f"Resuming{trainer_cls.__name__}", (FromPretrainedResume, trainer_cls), {})
    # The model goes in as a path: TRL rebuilds the reference model from it when beta > 0.
    return resuming_cls(
        model=str(base_dir), reward_funcs=reward, args=config_cls(**common),
        train_dataset=Dataset.from_dict({"prompt": prompts}), processing_class=tokenizer,
        callbacks=[KLBudgetStop(cfg.kl_budget),
                   ExactKL(base_dir, tokenizer, kl_prompts, cfg.kl_every, cfg.max_completion_length, cfg.seed + 2)],
    )


def check_config(cfg: PolicyConfig) -> None:
    if cfg.algorithm not in ALGORITHMS:
        raise UserError(f"policy.algorithm must be one of {', '.join(ALGORITHMS)}, got {cfg.algorithm!r}")
    if cfg.beta < 0:
        raise UserError(f"policy.beta must be >= 0 (the KL coefficient), got {cfg.beta}")
    if cfg.batch_size % cfg.num_generations:
        raise UserError(f"policy.batch_size ({cfg.batch_size}) must be a multiple of num_generations ({cfg.num_generations})")


def check_same_tokenizer(a: PreTrainedTokenizerBase, b: PreTrainedTokenizerBase, what: str) -> None:
    if a.get_vocab() != b.get_vocab():
        raise UserError(f"{what}: the tokenizers differ (vocabularies of {len(a)} and {len(b)} tokens); "
                        "a policy must share its base model's tokenizer")


def train_policy(cfg: PolicyConfig, run_dir: RunDir, name: str = "policy", *, reward: RewardFunction | None = None,
                 prompts: tuple[list[str], list[str]] | None = None) -> Path:
    """Stage: train ``models/<name>`` from the base model against the utility reward, then
    evaluate base and policy on held-out prompts (reward, KL, repetition, samples).

    Another organism passes its own ``reward`` function and (training, held-out) ``prompts``."""
    check_config(cfg)
    started = time.time()
    tokenizer = load_tokenizer(run_dir.base)
    check_same_tokenizer(tokenizer, load_tokenizer(run_dir.tokenizer), "base model vs study tokenizer")
    if prompts is None:
        train_texts = run_dir.texts("train")
        test_texts = run_dir.texts("test")
        prompts = (prompts_from_texts(train_texts, cfg.n_prompts, cfg.seed),
                   prompts_from_texts(test_texts, cfg.n_eval_prompts, cfg.seed + 1))
    prompts, eval_prompts = prompts
    reward = reward or LoggedUtility(cfg.reward_scale, cfg.reward_clip, cfg.include_prompt)
    target = run_dir.root / "models" / name
    checkpoints = partial_dir(target) / "checkpoints"
    trainer = _trainer(cfg, run_dir.base, tokenizer, prompts, reward, checkpoints, eval_prompts[: cfg.kl_prompts])
    resumed = has_checkpoint(checkpoints)
    trainer.train(resume_from_checkpoint=True if resumed else None)
    if not is_main_process():
        return target
    policy = trainer.model.float().cpu()
    base = load_hf(run_dir.base)
    settings = dict(max_new_tokens=cfg.max_completion_length, temperature=cfg.temperature, seed=cfg.seed + 1)
    before, base_samples = evaluate(base, base, tokenizer, eval_prompts, reward, **settings)
    after, policy_samples = evaluate(policy, base, tokenizer, eval_prompts, reward, **settings)
    save_trained(policy, tokenizer, target)
    history = trainer.state.log_history
    curves = {k: curve(history, k) for k in ("reward", "kl", "exact_kl", "completions/mean_length", "repeated_bigrams")}
    result = {
        "name": name, "config": asdict(cfg), "algorithm": cfg.algorithm, "beta": cfg.beta,
        "steps": trainer.state.global_step, "resumed": resumed,
        "stopped_at_kl_budget": trainer.state.global_step < cfg.max_steps,
        "base": vars(before), "policy": vars(after), "reward_gain": after.mean_reward - before.mean_reward,
        "curves": curves,
        "samples": [
            {"prompt": p, "base": b, "base_reward": rb, "policy": q, "policy_reward": rq}
            for p, b, rb, q, rq in list(zip(eval_prompts, base_samples.completions, base_samples.rewards,
                                            policy_samples.completions, policy_samples.rewards))[:12]
        ],
        "seconds": time.time() - started,
    }
    atomic_write_json(run_dir.training / f"{name}.json", result)
    for key, label in (("reward", "mean reward"), ("exact_kl", "KL to base (nats/token)"),
                       ("repeated_bigrams", "repeated-bigram share"), ("completions/mean_length", "completion length")):
        points = curves[key]
        if points:
            save_lines(run_dir.training / f"{name}_{key.replace('/', '_')}.png",
                       {cfg.algorithm: ([s for s, _ in points], [v for _, v in points])},
                       title=f"{name}: {label}", xlabel="step", ylabel=label)
    return target


@dataclass(frozen=True)
class NoKLComparisonConfig:
    """A second run with beta = 0, otherwise as the main policy: without the KL penalty the
    policy drifts further from the base (the minimal-RLHF observation)."""

    enabled: bool = True
    max_steps: int = 0  # 0: as many steps as the main policy took


def no_kl_comparison(cfg: NoKLComparisonConfig, run_dir: RunDir) -> Path | None:
    """Stage: train ``models/policy_beta0`` and plot its KL curve beside the main policy's."""
    if not cfg.enabled:
        return None
    main = read_json(run_dir.training / "policy.json")
    policy_cfg = replace(PolicyConfig(**main["config"]), beta=0.0, kl_budget=0.0, max_steps=cfg.max_steps or main["steps"])
    train_policy(policy_cfg, run_dir, name="policy_beta0")
    if not is_main_process():
        return None
    other = read_json(run_dir.training / "policy_beta0.json")
    series = {f"beta = {r['beta']}": ([s for s, _ in r["curves"]["exact_kl"]], [v for _, v in r["curves"]["exact_kl"]])
              for r in (main, other)}
    save_lines(run_dir.training / "kl_beta_comparison.png", series, title="KL to the base model, with and without the penalty",
               xlabel="step", ylabel="KL (nats/token)")
    return run_dir.training / "policy_beta0.json"
