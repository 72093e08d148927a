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
from dataclasses import fields, replace
from pathlib import Path

from datasets import Dataset
from transformers import PreTrainedTokenizerBase, TrainerCallback

from rlhf.adopt import adopt
from rlhf.errors import UserError
from rlhf.hooked import load_hf
from rlhf.plots import save_lines
from rlhf.policy.config import NoKLComparisonConfig  # noqa: F401  (re-exported: callers import it from here)
from rlhf.results import NoKLResult, PolicyResult, PolicySample
from rlhf.rewards import RewardFunction, make_reward
from rlhf.rundir import RunDir
from rlhf.tokenizer import load_tokenizer
from rlhf.training import curve, is_main_process, resuming, save_trained, train_resuming, trainer_arguments

from .config import PolicyConfig, check_config
from .sampling import evaluate, kl_per_token, prompts_from_texts, repeated_bigram_share, sample

__all__ = ["KLBudgetStop", "NoKLComparisonConfig", "PolicyConfig", "check_config", "no_kl_comparison",
           "train_policy"]


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


class LoggedReward:
    """A reward function that also logs the repeated-bigram share of each batch to TRL."""

    def __init__(self, reward: RewardFunction):
        self.reward = reward

    def __call__(self, prompts: Sequence[str], completions: Sequence[str], **kwargs: object) -> list[float]:
        log_metric = kwargs.get("log_metric")
        if callable(log_metric):
            log_metric("repeated_bigrams", repeated_bigram_share(completions))
        return self.reward(prompts=prompts, completions=completions)


def _trainer(cfg: PolicyConfig, base_dir: Path, tokenizer: PreTrainedTokenizerBase, prompts: list[str],
             reward: RewardFunction, output_dir: Path, kl_prompts: list[str]):
    from trl import GRPOConfig, GRPOTrainer, RLOOConfig, RLOOTrainer

    common = dict(
        **trainer_arguments(output_dir, seed=cfg.seed, logging_steps=1, save_steps=cfg.save_every,
                            gradient_checkpointing=cfg.gradient_checkpointing),
        learning_rate=cfg.learning_rate, beta=cfg.beta, num_generations=cfg.num_generations,
        per_device_train_batch_size=cfg.batch_size, max_completion_length=cfg.max_completion_length,
        temperature=cfg.temperature, max_steps=cfg.max_steps, disable_dropout=True, top_k=0, top_p=1.0,
    )
    config_cls, trainer_cls = {"grpo": (GRPOConfig, GRPOTrainer), "rloo": (RLOOConfig, RLOOTrainer)}[cfg.algorithm]
    # The model goes in as a path: TRL rebuilds the reference model from it when beta > 0.
    return resuming(trainer_cls)(
        model=str(base_dir), reward_funcs=reward, args=config_cls(**common),
        train_dataset=Dataset.from_dict({"prompt": prompts}), processing_class=tokenizer,
        callbacks=[KLBudgetStop(cfg.kl_budget),
                   ExactKL(base_dir, tokenizer, kl_prompts, cfg.kl_every, cfg.max_completion_length, cfg.seed + 2)],
    )


def check_same_tokenizer(a: PreTrainedTokenizerBase, b: PreTrainedTokenizerBase, what: str) -> None:
    if a.get_vocab() != b.get_vocab():
        raise UserError(f"{what}: the tokenizers differ (vocabularies of {len(a)} and {len(b)} tokens); "
                        "a policy must share its base model's tokenizer")


def train_policy(cfg: PolicyConfig, run_dir: RunDir, name: str = "policy", *, reward: RewardFunction | None = None,
                 prompts: tuple[list[str], list[str]] | None = None) -> PolicyResult | None:
    """Stage: train ``models/<name>`` from the model ``cfg.init`` names (the base, or the SFT model)
    against the reward, then evaluate that start model and the policy on held-out prompts (reward, KL
    to the start model, repetition, samples). With ``cfg.from_model`` the policy is adopted, not trained.

    Another organism passes its own ``reward`` function and (training, held-out) ``prompts``.
    Returns the result (saved as ``training/<name>.json``) in the main process, None in the others."""
    check_config(cfg)
    started = time.time()
    tokenizer = load_tokenizer(run_dir.base)
    check_same_tokenizer(tokenizer, load_tokenizer(run_dir.tokenizer), "base model vs study tokenizer")
    # RL starts from this model and its KL penalty is taken to it (the writing-prompts pipeline starts from SFT).
    start = run_dir.model(cfg.init)
    if not (start / "config.json").exists():
        raise UserError(f"policy.init = {cfg.init!r} but there is no model in {start}; run the {cfg.init} stage first")
    if prompts is None:
        train_texts = run_dir.texts("train")
        test_texts = run_dir.texts("test")
        prompts = (prompts_from_texts(train_texts, cfg.n_prompts, cfg.seed),
                   prompts_from_texts(test_texts, cfg.n_eval_prompts, cfg.seed + 1))
    prompts, eval_prompts = prompts
    spec = cfg.reward if reward is None else type(reward).__name__  # another organism's own reward
    reward = reward or LoggedReward(make_reward(cfg.reward, run_dir, label=cfg.reward_label, scale=cfg.reward_scale,
                                                clip=cfg.reward_clip, include_prompt=cfg.include_prompt))
    if cfg.from_model:
        if not is_main_process():  # nothing to train: one process adopts the model
            return None
        policy, steps, resumed, history = adopt(cfg.from_model, run_dir, name, "policy.from_model"), 0, False, []
    else:
        checkpoints = run_dir.model_partial(name) / "checkpoints"
        trainer = _trainer(cfg, start, tokenizer, prompts, reward, checkpoints, eval_prompts[: cfg.kl_prompts])
        resumed = train_resuming(trainer, checkpoints)
        if not is_main_process():
            return None
        policy, steps, history = trainer.model.float().cpu(), trainer.state.global_step, trainer.state.log_history
    reference = load_hf(start)
    settings = dict(max_new_tokens=cfg.max_completion_length, temperature=cfg.temperature, seed=cfg.seed + 1)
    before, base_samples = evaluate(reference, reference, tokenizer, eval_prompts, reward, **settings)
    after, policy_samples = evaluate(policy, reference, tokenizer, eval_prompts, reward, **settings)
    if not cfg.from_model:
        save_trained(policy, tokenizer, run_dir.model(name))
    curves = {k: curve(history, k) for k in ("reward", "kl", "exact_kl", "completions/mean_length", "repeated_bigrams")}
    result = PolicyResult(
        name=name, config=cfg, algorithm=cfg.algorithm, beta=cfg.beta,
        steps=steps, resumed=resumed, stopped_at_kl_budget=not cfg.from_model and steps < cfg.max_steps,
        base=before, policy=after, reward_gain=after.mean_reward - before.mean_reward, reward=spec,
        curves=curves,
        samples=tuple(
            PolicySample(prompt=p, base=b, base_reward=rb, policy=q, policy_reward=rq)
            for p, b, rb, q, rq in list(zip(eval_prompts, base_samples.completions, base_samples.rewards,
                                            policy_samples.completions, policy_samples.rewards))[:12]
        ),
        seconds=time.time() - started,
    )
    result.save(run_dir)
    for key, label in (("reward", "mean reward"), ("exact_kl", "KL to base (nats/token)"),
                       ("repeated_bigrams", "repeated-bigram share"), ("completions/mean_length", "completion length")):
        points = curves[key]
        if points:
            save_lines(run_dir.training / f"{name}_{key.replace('/', '_')}.png",
                       {cfg.algorithm: ([s for s, _ in points], [v for _, v in points])},
                       title=f"{name}: {label}", xlabel="step", ylabel=label)
    return result


def no_kl_comparison(cfg: NoKLComparisonConfig, run_dir: RunDir) -> NoKLResult | None:
    """Stage: train ``models/policy_beta0`` with the main policy's recorded config and beta = 0,
    and plot its KL curve beside the main policy's."""
    if not cfg.enabled:
        return None
    main = PolicyResult.load(run_dir)
    if main.config.from_model:
        print(f"[policy_beta0] skipped: the policy was adopted from {main.config.from_model}, so there is no "
              "training run to repeat with beta = 0")
        return None
    policy_cfg = replace(main.config, beta=0.0, kl_budget=0.0, max_steps=cfg.max_steps or main.steps)
    trained = train_policy(policy_cfg, run_dir, name=NoKLResult.NAME)
    if trained is None:  # another process of a launch
        return None
    other = NoKLResult(**{f.name: getattr(trained, f.name) for f in fields(trained)})
    series = {f"beta = {r.beta}": ([s for s, _ in r.curves["exact_kl"]], [v for _, v in r.curves["exact_kl"]])
              for r in (main, other)}
    save_lines(run_dir.training / "kl_beta_comparison.png", series, title="KL to the base model, with and without the penalty",
               xlabel="step", ylabel="KL (nats/token)")
    return other
