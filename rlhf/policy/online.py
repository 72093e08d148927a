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

from rlhf.errors import UserError
from rlhf.hooked import load_hf
from rlhf.plots import save_lines
from rlhf.policy.config import NoKLComparisonConfig  # noqa: F401  (re-exported: callers import it from here)
from rlhf.results import NoKLResult, PolicyResult, PolicySample
from rlhf.rewards import RewardFunction, UtilityReward
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
        **trainer_arguments(output_dir, seed=cfg.seed, logging_steps=1, save_steps=cfg.save_every),
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
    """Stage: train ``models/<name>`` from the base model against the utility reward, then
    evaluate base and policy on held-out prompts (reward, KL, repetition, samples).

    Another organism passes its own ``reward`` function and (training, held-out) ``prompts``.
    Returns the result (saved as ``training/<name>.json``) in the main process, None in the others."""
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
    target = run_dir.model(name)
    checkpoints = run_dir.model_partial(name) / "checkpoints"
    trainer = _trainer(cfg, run_dir.base, tokenizer, prompts, reward, checkpoints, eval_prompts[: cfg.kl_prompts])
    resumed = train_resuming(trainer, checkpoints)
    if not is_main_process():
        return None
    policy = trainer.model.float().cpu()
    base = load_hf(run_dir.base)
    settings = dict(max_new_tokens=cfg.max_completion_length, temperature=cfg.temperature, seed=cfg.seed + 1)
    before, base_samples = evaluate(base, base, tokenizer, eval_prompts, reward, **settings)
    after, policy_samples = evaluate(policy, base, tokenizer, eval_prompts, reward, **settings)
    save_trained(policy, tokenizer, target)
    history = trainer.state.log_history
    curves = {k: curve(history, k) for k in ("reward", "kl", "exact_kl", "completions/mean_length", "repeated_bigrams")}
    result = PolicyResult(
        name=name, config=cfg, algorithm=cfg.algorithm, beta=cfg.beta,
        steps=trainer.state.global_step, resumed=resumed,
        stopped_at_kl_budget=trainer.state.global_step < cfg.max_steps,
        base=before, policy=after, reward_gain=after.mean_reward - before.mean_reward,
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
