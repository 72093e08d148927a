"""The classic RLHF loop on the digits organism: SFT -> Bradley-Terry reward model -> RL.

Everything about the digits language is known exactly, so each step can be checked:
the SFT model should reach the corpus entropy floor, the reward model should rank
held-out pairs by their first digit, and RL against it should move the first output
digit to the preferred one while later positions keep following the rule (per-position
KL to the SFT model), more tightly with the KL penalty than without it. A supervised
baseline on the chosen responses shows what plain fine-tuning does with the same data.

Artifacts live in the stage's own directory (``run.stage_dir("digits")``), laid out like a
study of their own (corpus, models/{tokenizer,base,reward,policy,policy_beta0,sft_baseline},
training/).
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch
from jaxtyping import Float
from torch import Tensor
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from rlhf.config import DigitsLoopConfig  # noqa: F401  (re-exported: callers import it from here)
from rlhf.errors import UserError
from rlhf.hooked import load_hf, to_hooked
from rlhf.organisms.digits import (
    DigitsOrganism,
    follows_rule,
    parse_digits,
    preferred_first,
    write_corpus,
)
from rlhf.plots import plt, save_figure, save_lines
from rlhf.policy.config import check_config
from rlhf.policy.online import train_policy
from rlhf.policy.sampling import completion_token_kl, sample, token_log_probs
from rlhf.policy.sft import train_sft
from rlhf.pretrain import pretrain
from rlhf.results import (
    CorpusResult,
    DigitsAttention,
    DigitsExample,
    DigitsMeasure,
    DigitsResult,
    DigitsRewardModel,
    DigitsSample,
    DigitsSFT,
    PolicyResult,
    PretrainResult,
    digits_run,
)
from rlhf.reward_models import score, train_reward_model
from rlhf.rewards import LearnedReward
from rlhf.rundir import RunDir
from rlhf.tokenizer import TokenizerConfig, load_tokenizer, tokenizer_stage

MODELS = ("base", "policy", "policy_beta0", "sft_baseline")


def _inputs(prompt: str) -> tuple[int, ...]:
    return tuple(d for d in parse_digits(prompt) if d is not None)


@torch.no_grad()
def measure(model: PreTrainedModel, base: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: list[str],
            reward: LearnedReward, n_output: int, seed: int) -> DigitsMeasure:
    """Sample one completion per held-out prompt and measure it against the known preference."""
    samples = sample(model, tokenizer, prompts, max_new_tokens=n_output + 1, seed=seed)
    inputs = [_inputs(p) for p in prompts]
    parsed = [parse_digits(c) for c in samples.completions]
    preferred = [preferred_first(x) for x in inputs]
    # The exact probability of the preferred first digit, not only how often a sample hit it.
    first = samples.completion_mask.float().argmax(1)  # each row's first completion column
    lp = token_log_probs(model, samples)
    logp: Float[Tensor, "batch vocab"] = lp[torch.arange(len(prompts)), first - 1]
    ids = torch.tensor([tokenizer.convert_tokens_to_ids(str(d)) for d in preferred])
    kl = (completion_token_kl(lp, token_log_probs(base, samples), samples.completion_mask) if model is not base
          else torch.zeros(samples.input_ids.shape))
    per_position = []
    for k in range(n_output + 1):
        column = first + k
        inside = column < samples.input_ids.shape[1]
        rows = torch.nonzero(inside).flatten()
        live = samples.completion_mask[rows, column[rows]].bool()
        values = kl[rows[live], column[rows[live]]]
        per_position.append(float(values.mean()) if len(values) else 0.0)
    rule = [follows_rule(x, p[:n_output]) for x, p in zip(inputs, parsed)]
    mask = samples.completion_mask.float()
    return DigitsMeasure(
        first_correct=sum(bool(p) and p[0] == y for p, y in zip(parsed, preferred)) / len(prompts),
        first_correct_probability=float(logp.gather(1, ids[:, None]).exp().mean()),
        rule_following_by_position=tuple(sum(len(r) > k and r[k] for r in rule) / len(rule) for k in range(n_output)),
        well_formed=sum(len(p) == n_output and None not in p for p in parsed) / len(parsed),
        kl_by_position=tuple(per_position),  # the last entry is the end-of-text token
        mean_kl_per_token=float((kl * mask).sum() / mask.sum()),
        mean_reward=sum(reward(prompts=prompts, completions=samples.completions)) / len(prompts),
        samples=tuple(DigitsSample(prompt=p, completion=c) for p, c in list(zip(prompts, samples.completions))[:8]),
    )


@torch.no_grad()
def next_digit_distributions(models: dict[str, PreTrainedModel], tokenizer: PreTrainedTokenizerBase, prompt: str,
                             outputs: tuple[int, ...]) -> dict[str, tuple[tuple[float, ...], ...]]:
    """Each model's distribution over the ten digits at each output position, given the same prefix."""
    text = f"{prompt} " + " ".join(map(str, outputs))
    ids = torch.tensor([tokenizer(text)["input_ids"]])
    digit_ids = [tokenizer.convert_tokens_to_ids(str(d)) for d in range(10)]
    start = ids.shape[1] - len(outputs) - 1  # the position that predicts the first output
    out = {}
    for name, model in models.items():
        probs = model(input_ids=ids).logits[0].float().softmax(-1)
        out[name] = tuple(tuple(round(float(probs[start + k, i]), 4) for i in digit_ids) for k in range(len(outputs)))
    return out


@torch.no_grad()
def attention_patterns(model_dir: Path, text: str) -> tuple[list[str], list]:
    """The converted model's attention patterns on one text: tokens and [layer][head][query][key]."""
    hooked = to_hooked(model_dir)
    tokens = hooked.to_tokens(text)
    _, cache = hooked.run_with_cache(tokens, names_filter=lambda n: n.endswith("hook_pattern"))
    patterns = [[[[round(float(x), 4) for x in row] for row in head] for head in cache["pattern", layer][0]]
                for layer in range(hooked.cfg.n_layers)]
    return hooked.to_str_tokens(tokens), patterns


def _split(rows: list, fraction: float, seed: int) -> tuple[list, list]:
    rows = list(rows)
    random.Random(seed).shuffle(rows)
    cut = int(len(rows) * (1 - fraction))
    if cut < 1 or cut == len(rows):
        raise UserError(f"{len(rows)} pairs cannot be split with held_out_fraction {fraction}")
    return rows[:cut], rows[cut:]


def _plots(result: DigitsResult, run_dir: RunDir, n_output: int) -> None:
    positions = list(range(1, n_output + 2))
    save_lines(DigitsResult.figure(run_dir, "kl_by_position"),
               {name: (positions, list(m.kl_by_position)) for name, m in result.models.items() if name != "base"},
               title="KL to the SFT model at each output position (last: end of text)",
               xlabel="output position", ylabel="KL (nats)")
    dist = result.example.distributions
    fig, axes = plt.subplots(1, n_output, figsize=(2.4 * n_output, 2.6), sharey=True)
    width = 0.8 / len(dist)
    for k, ax in enumerate(axes):
        for j, (name, probs) in enumerate(dist.items()):
            ax.bar([d + (j - (len(dist) - 1) / 2) * width for d in range(10)], probs[k], width=width, label=name)
        ax.set_xticks(range(10))
        ax.set_title(f"output {k + 1}" + (" (preferred: " + str(result.example.preferred) + ")" if k == 0 else ""),
                     fontsize=9)
    axes[0].set_ylabel("probability")
    axes[-1].legend(fontsize=7)
    fig.suptitle(f"Next-digit distributions after \"{result.example.prompt}\"", fontsize=10)
    save_figure(fig, DigitsResult.figure(run_dir, "distributions"))
    names = list(result.models)
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.bar(names, [result.models[n].first_correct for n in names], color="#4477aa")
    ax.axhline(result.base_rate, color="#cc3311", linestyle="--", label=f"rule's base rate {result.base_rate:.2f}")
    ax.set_ylabel("first output correct")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    save_figure(fig, DigitsResult.figure(run_dir, "first_correct"))


def digits_loop_stage(cfg: DigitsLoopConfig, run_dir: RunDir) -> DigitsResult | None:
    """Stage: the whole loop on the digits organism; writes ``digits/training/digits.json``,
    the plots beside it, and the attention patterns before and after."""
    if not cfg.enabled:
        return None
    check_config(cfg.policy)
    started = time.time()
    rd = digits_run(run_dir)
    organism = DigitsOrganism(cfg.organism)
    if cfg.policy.max_completion_length != cfg.organism.n_output + 1:
        raise UserError(f"digits.policy.max_completion_length must be n_output + 1 = {cfg.organism.n_output + 1} "
                        f"(the digits and the end-of-text token), got {cfg.policy.max_completion_length}")
    # Each step skips itself when its artifact exists: the stage's scratch directory is kept
    # only when a killed run had the same config, so a present artifact is a current one.
    if not CorpusResult.exists(rd):
        write_corpus(organism, rd.corpus).save(rd)
    if not (rd.tokenizer / "tokenizer.json").exists():
        tokenizer_stage(TokenizerConfig(), rd)
    if not PretrainResult.exists(rd):
        pretrain(cfg.sft, rd)
    tokenizer = load_tokenizer(rd.base)
    sft_loss = PretrainResult.load(rd)

    pairs = organism.preference_pairs(cfg.n_pairs, cfg.organism.seed + 7)
    train_pairs, test_pairs = _split(pairs, cfg.held_out_fraction, cfg.organism.seed)
    reward_dir = rd.model("reward")
    rm_cfg = cfg.reward_model
    if not (reward_dir / "config.json").exists():
        train_reward_model(rm_cfg, rd.base, tokenizer, [{"chosen": p["prompt"] + p["chosen"], "rejected": p["prompt"] + p["rejected"]}
                                                        for p in train_pairs], reward_dir)
    reward = LearnedReward(reward_dir, rm_cfg.kind)
    chosen, _ = score(reward.model, tokenizer, [p["prompt"] + p["chosen"] for p in test_pairs], rm_cfg.kind)
    rejected, _ = score(reward.model, tokenizer, [p["prompt"] + p["rejected"] for p in test_pairs], rm_cfg.kind)
    rm_accuracy = float((chosen > rejected).float().mean())

    train_prompts = [s.prompt for s in organism.sequences(cfg.policy.n_prompts, cfg.organism.seed * 1000 + 11)]
    eval_prompts = [s.prompt for s in organism.sequences(cfg.policy.n_eval_prompts, cfg.organism.seed * 1000 + 12)]
    runs = {"policy": cfg.policy}
    if cfg.beta0:
        runs["policy_beta0"] = replace(cfg.policy, beta=0.0, kl_target=0.0, kl_budget=0.0)
    for name, policy_cfg in runs.items():
        if not PolicyResult.exists(rd, name=name):
            train_policy(policy_cfg, rd, name, reward=reward, prompts=(train_prompts, eval_prompts))
    trained = {name: PolicyResult.load(rd, name=name) for name in runs}
    sft_dir = rd.model("sft_baseline")
    sft_curve: tuple[tuple[int, float], ...] = ()
    if cfg.sft_baseline.enabled and not (sft_dir / "config.json").exists():
        rows = [{"prompt": p["prompt"], "completion": p["chosen"]} for p in train_pairs]
        _, sft_curve = train_sft(cfg.sft_baseline, rd.base, tokenizer, rows, sft_dir)

    base = load_hf(rd.base)
    models = {"base": base} | {name: load_hf(rd.model(name)) for name in MODELS[1:]
                               if (rd.model(name) / "config.json").exists()}
    n_output = cfg.organism.n_output
    measured = {name: measure(m, base, tokenizer, eval_prompts, reward, n_output, cfg.policy.seed + 1)
                for name, m in models.items()}
    if any(math.isnan(v) for m in measured.values() for v in m.kl_by_position):
        raise UserError("NaN in the per-position KL: a model produced non-finite logits")
    example = next(s for s in organism.sequences(200, cfg.organism.seed * 1000 + 13)
                   if len(set(s.inputs)) == len(s.inputs))  # four different digits: the base rate is exactly 1/4
    outputs = organism.continue_from(example.inputs, [preferred_first(example.inputs)], random.Random(0))
    text = f"{example.prompt} " + " ".join(map(str, outputs))
    attention = {}
    for name in ("base", "policy"):
        tokens, attention[name] = attention_patterns(rd.model(name), text)
    DigitsAttention(tokens=tuple(tokens), models=attention).save(run_dir)
    result = DigitsResult(
        config=asdict(cfg), policy_beta=cfg.policy.beta, n_output=n_output,
        sft=DigitsSFT(test_loss=sft_loss.test_loss, entropy_floor=sft_loss.entropy_floor,
                      loss_over_floor=sft_loss.loss_over_floor, steps=sft_loss.steps),
        reward_model=DigitsRewardModel(kind=rm_cfg.kind, train_pairs=len(train_pairs), test_pairs=len(test_pairs),
                                       held_out_accuracy=rm_accuracy),
        base_rate=sum(organism.first_correct_rate(_inputs(p)) for p in eval_prompts) / len(eval_prompts),
        models=measured,
        policy_steps={name: r.steps for name, r in trained.items()},
        kl_curves={name: r.curves["exact_kl"] for name, r in trained.items()},
        reward_curves={name: r.curves["reward"] for name, r in trained.items()},
        sft_loss_curve=sft_curve,
        example=DigitsExample(prompt=example.prompt, outputs=tuple(outputs), preferred=preferred_first(example.inputs),
                              distributions=next_digit_distributions(models, tokenizer, example.prompt, outputs)),
        seconds=time.time() - started,
    )
    _plots(result, run_dir, n_output)
    save_lines(DigitsResult.figure(run_dir, "kl_curves"),
               {f"beta = {runs[n].beta}": ([s for s, _ in c], [v for _, v in c]) for n, c in result.kl_curves.items()},
               title="KL to the SFT model during RL", xlabel="step", ylabel="KL (nats/token)")
    result.save(run_dir)
    return result
