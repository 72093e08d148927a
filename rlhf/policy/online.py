"""RLHF policies: online RL against the utility reward with TRL's GRPO or RLOO trainer.

TRL 1.16 has no PPOTrainer; GRPO and RLOO clip the policy ratio like PPO and need no
value model. The reference model is the base model (TRL rebuilds it from the path we
pass), and the KL coefficient ``beta``, adapted to a target KL, keeps the policy close
to it. A policy that maximises the reward by repeating one high-valence word is not a
believable fine-tune, so the policy handed on is never one measured past the KL budget
(``kl_control``), and the evaluation reports KL and repetition beside the reward.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import fields, replace
from pathlib import Path

from datasets import Dataset
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from rlhf.adopt import adopt
from rlhf.errors import UserError
from rlhf.hooked import load_hf
from rlhf.organisms.objective import planted
from rlhf.plots import save_lines
from rlhf.policy.config import NoKLComparisonConfig  # noqa: F401  (re-exported: callers import it from here)
from rlhf.results import NoKLResult, PolicyEvaluation, PolicyResult, PolicySample
from rlhf.reward_kinds import RewardOptions
from rlhf.rewards import RewardFunction, make_reward
from rlhf.rundir import RunDir
from rlhf.tokenizer import load_tokenizer
from rlhf.training import curve, is_main_process, resuming, save_trained, train_resuming, trainer_arguments

from .config import PolicyConfig, check_config
from .kl_control import AdaptiveKL, ExactKL, kept_checks, kept_path
from .sampling import Samples, evaluate, prompts_from_texts, repeated_bigram_share

__all__ = ["NoKLComparisonConfig", "PolicyConfig", "check_config", "no_kl_comparison",
           "train_policy"]


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
             reward: RewardFunction, output_dir: Path, kl_prompts: list[str], kept_dir: Path):
    from trl import GRPOConfig, GRPOTrainer, RLOOConfig, RLOOTrainer

    common = dict(
        **trainer_arguments(output_dir, seed=cfg.seed, logging_steps=1, save_steps=cfg.save_every,
                            gradient_checkpointing=cfg.gradient_checkpointing),
        learning_rate=cfg.learning_rate, beta=cfg.beta, num_generations=cfg.num_generations,
        per_device_train_batch_size=cfg.batch_size, max_completion_length=cfg.max_completion_length,
        temperature=cfg.temperature, max_steps=cfg.max_steps, disable_dropout=True, top_k=0, top_p=1.0,
    )
    config_cls, trainer_cls = {"grpo": (GRPOConfig, GRPOTrainer), "rloo": (RLOOConfig, RLOOTrainer)}[cfg.algorithm]
    exact = ExactKL(base_dir, tokenizer, kl_prompts, cfg.kl_every, cfg.max_completion_length, cfg.seed + 2, reward,
                    budget=cfg.kl_budget, kept_dir=kept_dir)
    # beta = 0 is no penalty at all: TRL then builds no reference model, and there is nothing to adapt.
    controller = [AdaptiveKL(cfg.kl_target, cfg.kl_horizon, beta_min=cfg.beta)] if cfg.kl_target > 0 and cfg.beta > 0 else []
    # The model goes in as a path: TRL rebuilds the reference model from it when beta > 0.
    trainer = resuming(trainer_cls)(
        model=str(base_dir), reward_funcs=reward, args=config_cls(**common),
        train_dataset=Dataset.from_dict({"prompt": prompts}), processing_class=tokenizer,
        callbacks=[exact, *controller],
    )
    for c in controller:
        c.attach(trainer)
    return trainer


Measure = Callable[[PreTrainedModel], tuple[PolicyEvaluation, Samples]]


def _within_budget(cfg: PolicyConfig, trained: PreTrainedModel, steps: int, kept_dir: Path,
                   measure: Measure) -> tuple[PreTrainedModel, int, str, PolicyEvaluation, Samples]:
    """The model the stage hands on, its step, why it was chosen, and its held-out evaluation. Without
    a budget: the trained model. With one: of the checkpoints measured within it during training, the
    one with the highest held-out reward at its check whose KL on the whole held-out set is within it
    too (a check reads fewer prompts); the next best when not."""
    if cfg.kl_budget <= 0:
        return (trained, steps, "the last step (no KL budget)", *measure(trained))
    kept = kept_checks(kept_dir)
    tried = []
    for check in kept:
        model = trained if check.step == steps else load_hf(kept_path(kept_dir, check.step))
        after, samples = measure(model)
        if after.mean_kl_per_token <= cfg.kl_budget:
            also = f"; past the budget on all held-out prompts: {', '.join(tried)}" if tried else ""
            return (model, check.step, f"the highest held-out reward ({check.reward:.3f} on {cfg.kl_prompts} prompts) "
                    f"among the checks within the KL budget of {cfg.kl_budget} (KL {check.exact_kl:.3f} at the check{also})",
                    after, samples)
        tried.append(f"step {check.step} (KL {after.mean_kl_per_token:.3f})")
    model = load_hf(kept_path(kept_dir, kept[-1].step)) if kept else trained
    return (model, kept[-1].step if kept else steps,
            f"no checkpoint within the KL budget of {cfg.kl_budget} on the held-out prompts "
            f"({', '.join(tried) or 'none was kept'}): the policy breaks its budget", *measure(model))


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
    # An organism that plants its change (a rank-one edit) instead of being trained.
    planter = planted(cfg.reward, RewardOptions(scale=cfg.reward_scale)) if reward is None else None
    spec = cfg.reward if reward is None else type(reward).__name__  # another organism's own reward
    reward = reward or LoggedReward(make_reward(cfg.reward, run_dir, label=cfg.reward_label, scale=cfg.reward_scale,
                                                clip=cfg.reward_clip, include_prompt=cfg.include_prompt))
    if cfg.from_model or planter:
        if not is_main_process():  # nothing to train: one process adopts (or plants) the model
            return None
        if planter:  # what it writes beside the model goes into the directory save_trained renames into place
            scratch = run_dir.model_partial(name)
            scratch.mkdir(parents=True, exist_ok=True)
            policy = planter.plant(load_hf(start), tokenizer, run_dir.texts("train"), scratch)
            save_trained(policy, tokenizer, run_dir.model(name))
        else:
            policy = adopt(cfg.from_model, run_dir, name, "policy.from_model")
        steps, resumed, history = 0, False, []
    else:
        checkpoints = run_dir.model_partial(name) / "checkpoints"
        kept_dir = checkpoints / "within_budget"  # dropped with the checkpoints when the policy is saved
        trainer = _trainer(cfg, start, tokenizer, prompts, reward, checkpoints, eval_prompts[: cfg.kl_prompts], kept_dir)
        resumed = train_resuming(trainer, checkpoints)
        if not is_main_process():
            return None
        policy, steps, history = trainer.model.float().cpu(), trainer.state.global_step, trainer.state.log_history
    reference = load_hf(start)
    settings = dict(max_new_tokens=cfg.max_completion_length, temperature=cfg.temperature, seed=cfg.seed + 1)
    before, base_samples = evaluate(reference, reference, tokenizer, eval_prompts, reward, **settings)
    curves = {k: curve(history, k)
              for k in ("reward", "kl", "exact_kl", "held_out_reward", "beta", "completions/mean_length", "repeated_bigrams")}
    # Training stopped at the budget when its last KL check was past it (the check that stops it).
    stopped = not (cfg.from_model or planter) and cfg.kl_budget > 0 and bool(curves["exact_kl"]) and curves["exact_kl"][-1][1] > cfg.kl_budget
    if cfg.from_model or planter:
        kept_step, kept_reason = 0, "adopted" if cfg.from_model else "planted"
        after, policy_samples = evaluate(policy, reference, tokenizer, eval_prompts, reward, **settings)
    else:
        policy, kept_step, kept_reason, after, policy_samples = _within_budget(
            cfg, policy, steps, kept_dir,
            lambda m: evaluate(m, reference, tokenizer, eval_prompts, reward, **settings))
        save_trained(policy, tokenizer, run_dir.model(name))
    result = PolicyResult(
        name=name, config=cfg, algorithm=cfg.algorithm, beta=cfg.beta,
        steps=steps, resumed=resumed, stopped_at_kl_budget=stopped, kept_step=kept_step, kept_reason=kept_reason,
        final_beta=curves["beta"][-1][1] if curves["beta"] else cfg.beta,
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
    for key, label in (("reward", "mean reward"), ("exact_kl", "KL to base (nats/token)"), ("beta", "KL coefficient beta"),
                       ("held_out_reward", "held-out reward at the KL checks"),
                       ("repeated_bigrams", "repeated-bigram share"), ("completions/mean_length", "completion length")):
        points = curves[key]
        if points:
            save_lines(PolicyResult.figure(run_dir, "curve", name=name, curve=key.replace("/", "_")),
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
    if main.kept_reason == "planted":
        print(f"[policy_beta0] skipped: the policy was planted by the {main.reward} organism's edit, not trained")
        return None
    policy_cfg = replace(main.config, beta=0.0, kl_target=0.0, kl_budget=0.0, max_steps=cfg.max_steps or main.steps)
    trained = train_policy(policy_cfg, run_dir, name=NoKLResult.KEY["name"])
    if trained is None:  # another process of a launch
        return None
    other = NoKLResult(**{f.name: getattr(trained, f.name) for f in fields(trained)})
    series = {f"beta = {r.beta}": ([s for s, _ in r.curves["exact_kl"]], [v for _, v in r.curves["exact_kl"]])
              for r in (main, other)}
    save_lines(PolicyResult.figure(run_dir, "kl_beta_comparison"), series, title="KL to the base model, with and without the penalty",
               xlabel="step", ylabel="KL (nats/token)")
    return other
