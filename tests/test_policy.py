"""RLHF policies on the tiny study: GRPO raises the reward, beta = 0 drifts further,
DPO's implicit reward orders preferences; sampling and KL helpers; bad input."""

import shutil
from dataclasses import replace

import pytest
import torch

from rlhf.errors import UserError
from rlhf.hooked import load_hf
from rlhf.policy import (
    PolicyConfig,
    check_config,
    completion_kl,
    dpo_implicit_reward,
    prompts_from_texts,
    repeated_bigram_share,
    sample,
    train_policy,
)
from rlhf.policy.kl_control import ExactKL, next_beta
from rlhf.policy.sampling import _end_mask
from rlhf.results import DPOResult, NoKLResult, PolicyResult
from rlhf.rewards import UtilityReward
from rlhf.rundir import RunDir
from rlhf.tokenizer import load_tokenizer
from study.config import config_from_dict


def test_prompts_are_2_to_9_word_prefixes():
    texts = ["the plot was superb . rating : 8 / 10 .", "a b c"]
    prompts = prompts_from_texts(texts, 200, seed=0)
    assert all(2 <= len(p.split()) <= 9 for p in prompts)
    assert all(any(t.startswith(p) for t in texts) for p in prompts)
    with pytest.raises(UserError, match="no prompts"):
        prompts_from_texts([], 10, seed=0)
    with pytest.raises(UserError, match="no prompts"):
        prompts_from_texts(texts, 0, seed=0)


def test_repeated_bigrams_and_end_mask():
    assert repeated_bigram_share(["a b a b a b"]) == pytest.approx(3 / 5)
    assert repeated_bigram_share(["a b c d", ""]) == 0.0
    mask = _end_mask(torch.tensor([[5, 3, 7, 3], [5, 6, 7, 8]]), eos_id=3)
    assert mask.tolist() == [[1, 1, 0, 0], [1, 1, 1, 1]]


def test_sampling_and_exact_kl(tiny_run):
    _, run_dir, _ = tiny_run
    base, tok = load_hf(run_dir.base), load_tokenizer(run_dir.base)
    side = tok.padding_side
    state = torch.random.get_rng_state()
    samples = sample(base, tok, ["the plot was", "i thought the acting felt"], max_new_tokens=12, seed=0)
    assert tok.padding_side == side == "right"  # sampling pads on the left without touching the tokenizer
    assert torch.equal(torch.random.get_rng_state(), state)  # nor torch's global RNG
    again = sample(base, tok, ["the plot was", "i thought the acting felt"], max_new_tokens=12, seed=0)
    assert again.completions == samples.completions and torch.equal(again.input_ids, samples.input_ids)
    assert len(samples.completions) == 2 and samples.completion_mask.sum() > 0
    assert samples.input_ids[:, -1].tolist() != [tok.bos_token_id] * 2
    assert torch.allclose(completion_kl(base, base, samples), torch.zeros(2), atol=1e-5)
    policy = load_hf(run_dir.policy)
    assert (completion_kl(policy, base, samples) > 0).all()


def test_grpo_raises_the_reward_and_beta0_drifts_further(tiny_run):
    _, run_dir, _ = tiny_run
    p = PolicyResult.load(run_dir)
    assert p.steps == 40 and p.algorithm == "grpo" and p.config == replace(p.config, algorithm="grpo")
    assert p.policy.mean_reward > p.base.mean_reward + 0.3
    rewards = [v for _, v in p.curves["reward"]]
    assert sum(rewards[-10:]) / 10 > sum(rewards[:10]) / 10
    b0 = NoKLResult.load(run_dir)
    assert b0.beta == 0.0 and b0.steps == p.steps and b0.config == replace(p.config, beta=0.0, kl_target=0.0,
                                                                           kl_budget=0.0, max_steps=p.steps)
    assert b0.policy.mean_kl_per_token > p.policy.mean_kl_per_token
    assert (run_dir.policy / "model.safetensors").exists()


def test_dpo_implicit_reward_orders_preferences(tiny_run):
    _, run_dir, _ = tiny_run
    d = DPOResult.load(run_dir)
    assert d.implicit_reward_accuracy > 0.75
    ex = d.examples[0]
    r = dpo_implicit_reward(run_dir.model("dpo"), run_dir.base, [ex.prompt] * 2, [ex.chosen, ex.rejected], beta=d.beta)
    assert r == pytest.approx([ex.implicit_chosen, ex.implicit_rejected], abs=1e-4)
    # The sign on a clear pair: a glowing completion beats a scathing one.
    good, bad = dpo_implicit_reward(run_dir.model("dpo"), run_dir.base, ["the plot was"] * 2,
                                    [" superb . rating : 9 / 10 .", " awful . rating : 2 / 10 ."], beta=0.1)
    assert good > bad
    assert dpo_implicit_reward(run_dir.base, run_dir.base, ["the plot was"], [" superb ."], beta=0.1) == [0.0]


def test_bad_policy_settings():
    with pytest.raises(UserError, match="policy.beta must be >= 0, got -0.1"):
        config_from_dict({"policy": {"beta": -0.1}})
    with pytest.raises(UserError, match="policy.algorithm must be one of 'grpo', 'rloo'; got 'ppo'"):
        config_from_dict({"policy": {"algorithm": "ppo"}})
    with pytest.raises(UserError, match="multiple of num_generations"):
        check_config(PolicyConfig(batch_size=30, num_generations=8))


def test_nan_reward_stops_training_and_writes_nothing(tiny_run, tmp_path, monkeypatch):
    cfg, run_dir, _ = tiny_run
    copy = RunDir(tmp_path / "tiny")
    shutil.copytree(run_dir.root, copy.root)
    shutil.rmtree(copy.policy)
    monkeypatch.setattr("rlhf.rewards.vader_utility",
                        lambda texts, **kw: [float("nan")] * len(texts))
    with pytest.raises(UserError, match="returned nan"):
        train_policy(replace(cfg.policy, max_steps=2), copy)
    assert not copy.policy.exists()


def test_policy_tokenizer_must_match_the_base(tiny_run, tmp_path):
    cfg, run_dir, _ = tiny_run
    copy = RunDir(tmp_path / "tiny")
    shutil.copytree(run_dir.root, copy.root)
    from rlhf.tokenizer import TokenizerConfig, build_tokenizer

    build_tokenizer(["some other words entirely"], TokenizerConfig(), copy.tokenizer)
    with pytest.raises(UserError, match="tokenizers differ"):
        train_policy(cfg.policy, copy)


def test_reward_is_the_utility_of_the_completion():
    reward = UtilityReward()
    assert reward(prompts=["the plot was awful"], completions=["superb ."]) == [pytest.approx(3.1 / 5)]


def test_rloo_trains_too(tiny_run, tmp_path):
    cfg, run_dir, _ = tiny_run
    copy = RunDir(tmp_path / "tiny")
    shutil.copytree(run_dir.root, copy.root)
    returned = train_policy(replace(cfg.policy, algorithm="rloo", max_steps=3, n_eval_prompts=16), copy, name="rloo")
    r = PolicyResult.load(copy, name="rloo")
    assert r == returned and r.name == "rloo"
    assert r.algorithm == "rloo" and r.steps == 3 and len(r.curves["reward"]) == 3
    assert (copy.model("rloo") / "model.safetensors").exists()


def test_interrupted_policy_training_resumes(tiny_run, tmp_path, monkeypatch):
    cfg, run_dir, _ = tiny_run
    copy = RunDir(tmp_path / "tiny")
    shutil.copytree(run_dir.root, copy.root)
    small = replace(cfg.policy, max_steps=4, save_every=2, n_eval_prompts=16)
    original = ExactKL.on_step_end

    def crash_after_checkpoint(self, args, state, control, **kw):
        if state.global_step == 3:
            raise KeyboardInterrupt
        return original(self, args, state, control, **kw)

    monkeypatch.setattr(ExactKL, "on_step_end", crash_after_checkpoint)
    with pytest.raises(KeyboardInterrupt):
        train_policy(small, copy, name="resumable")
    assert not copy.model("resumable").exists()
    monkeypatch.setattr(ExactKL, "on_step_end", original)
    train_policy(small, copy, name="resumable")
    r = PolicyResult.load(copy, name="resumable")
    assert r.resumed is True and r.steps == 4


def test_rl_from_the_sft_model_pays_its_kl_to_it(tiny_run, tmp_path):
    """init = "sft": the policy starts from the SFT model and the KL is taken to it. With a
    vanishing learning rate the policy is the SFT model, so its KL to its start is zero."""
    cfg, run_dir, _ = tiny_run
    copy = RunDir(tmp_path / "tiny")
    shutil.copytree(run_dir.root, copy.root)
    r = train_policy(replace(cfg.policy, init="sft", learning_rate=1e-12, max_steps=1, n_eval_prompts=16), copy,
                     name="from_sft")
    sft, base, policy = (load_hf(copy.model(n)).state_dict() for n in ("sft", "base", "from_sft"))
    assert max(float((policy[k] - sft[k]).abs().max()) for k in sft) < 1e-6
    assert max(float((policy[k] - base[k]).abs().max()) for k in base) > 1e-3
    assert r.config.init == "sft" and r.policy.mean_kl_per_token == pytest.approx(0.0, abs=1e-4)
    shutil.rmtree(copy.model("sft"))
    with pytest.raises(UserError, match="policy.init = 'sft' but there is no model in .*run the sft stage first"):
        train_policy(replace(cfg.policy, init="sft", max_steps=1), copy, name="again")


def test_the_kl_budget_is_a_promise(tiny_run, tmp_path):
    """A budget passed mid-training: training stops at the first check past it, and the stage hands
    on a checkpoint measured within it, the best by held-out reward (a fixed beta, so nothing holds
    the KL back)."""
    cfg, run_dir, _ = tiny_run
    copy = RunDir(tmp_path / "tiny")
    shutil.copytree(run_dir.root, copy.root)
    budget = 0.04
    r = train_policy(replace(cfg.policy, kl_target=0.0, kl_budget=budget, kl_every=4, n_eval_prompts=64), copy,
                     name="budgeted")
    checks, rewards = dict(r.curves["exact_kl"]), dict(r.curves["held_out_reward"])
    assert r.stopped_at_kl_budget and r.steps < cfg.policy.max_steps and checks[r.steps] > budget
    assert r.kept_step < r.steps and checks[r.kept_step] <= budget and r.kept_step in (1, *range(4, r.steps, 4))
    assert r.policy.mean_kl_per_token <= budget
    assert f"the highest held-out reward ({rewards[r.kept_step]:.3f} on 64 prompts) among the checks within the KL " \
           f"budget of {budget}" in r.kept_reason
    within = sorted((rewards[s] for s in checks if checks[s] <= budget), reverse=True)
    assert rewards[r.kept_step] in within[:3]  # the best, or one of the next two kept where the best's full KL was over
    # What was saved is the kept checkpoint: its KL on the held-out prompts is the result's.
    from rlhf.policy.sampling import evaluate

    tok, base = load_tokenizer(copy.base), load_hf(copy.base)
    again, _ = evaluate(load_hf(copy.model("budgeted")), base, tok,
                        prompts_from_texts(copy.texts("test"), 64, cfg.policy.seed + 1), UtilityReward(),
                        max_new_tokens=cfg.policy.max_completion_length, seed=cfg.policy.seed + 1)
    assert again.mean_kl_per_token == pytest.approx(r.policy.mean_kl_per_token, abs=1e-5)
    assert not (copy.model("budgeted") / "checkpoints").exists()


def test_adaptive_kl_raises_beta_over_the_target_and_never_below_its_floor(tiny_run, tmp_path):
    assert next_beta(0.1, kl=2.0, target=0.5, horizon=5, beta_min=0.1) == pytest.approx(0.1 * (1 + 0.2 / 5))
    assert next_beta(0.1, kl=0.55, target=0.5, horizon=5, beta_min=0.1) == pytest.approx(0.1 * (1 + 0.1 / 5))
    assert next_beta(0.1, kl=0.0, target=0.5, horizon=5, beta_min=0.1) == 0.1
    assert next_beta(0.2, kl=0.0, target=0.5, horizon=5, beta_min=0.1) == pytest.approx(0.2 * (1 - 0.2 / 5))
    cfg, run_dir, _ = tiny_run
    copy = RunDir(tmp_path / "tiny")
    shutil.copytree(run_dir.root, copy.root)
    r = train_policy(replace(cfg.policy, kl_target=0.005, kl_horizon=2.0, kl_budget=0.0, max_steps=12,
                             n_eval_prompts=16), copy, name="adaptive")
    kl, beta = dict(r.curves["kl"]), dict(r.curves["beta"])
    assert sorted(beta) == sorted(kl) and min(beta.values()) >= cfg.policy.beta
    for step in sorted(kl)[1:]:  # each step's beta follows from the one before and that step's KL
        assert beta[step] == pytest.approx(next_beta(beta[step - 1], kl[step], 0.005, 2.0, cfg.policy.beta))
    assert r.final_beta == beta[12] > cfg.policy.beta  # the KL passed the target, so beta rose
    with pytest.raises(UserError, match="kl_target .* must be below policy.kl_budget"):
        check_config(PolicyConfig(kl_target=1.0, kl_budget=0.5))
