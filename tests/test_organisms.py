"""The organisms' registry: a planted objective is one module and one registry entry."""

from __future__ import annotations

import shutil
from dataclasses import replace

import pytest
import torch

from analysis.reward_attribution import PROMPT_SEED
from analysis.reward_gain import sample_completions
from rlhf.errors import UserError
from rlhf.hooked import to_hooked
from rlhf.organisms.objective import organism
from rlhf.policy import prompts_from_texts
from rlhf.rundir import RunDir
from rlhf.zoo import ORGANISMS, OrganismSpec
from tests.test_pluggable_rewards import assert_rises, train_with


def test_the_sentiment_organism_s_reward_is_its_summed_utility(tiny_run):
    """The organisms' contract on the default one: a completion of one token earns that token's u(t)
    under the reward the policy trains on, u(end of text) = 0, and the answer is the high-valence words."""
    _, run_dir, _ = tiny_run
    policy = to_hooked(run_dir.policy)
    sentiment = organism("sentiment")
    u = sentiment.utility(policy.tokenizer, policy.cfg.d_vocab)
    words = [(i, t) for i, t in enumerate(policy.tokenizer.convert_ids_to_tokens(list(range(len(policy.tokenizer)))))
             if t.isalpha()]
    assert len(words) > 100 and any(u[i] != 0 for i, _ in words)
    assert sentiment.reward([""] * len(words), [t for _, t in words]) == pytest.approx([float(u[i]) for i, _ in words], abs=1e-6)
    assert u[policy.tokenizer.eos_token_id] == 0
    answer = sentiment.answer(policy.tokenizer).tokens
    assert "great" in answer and all(u[policy.tokenizer.convert_tokens_to_ids(t)] >= 2.0 / 5 for t in answer)


def test_a_new_organism_is_one_module_and_one_registry_entry(tiny_run, tmp_path, monkeypatch):
    """tests/organism_example.py registered with one entry: a config naming it loads (an unknown one is
    refused at load), the policy trains on its reward and says "and" more, reward attribution measures G
    with its utility (equal to the expected count of "and" under each model, computed here), and the
    result and the report name it and its answer."""
    from study.config import config_from_dict
    from study.report import build_report
    from study.reward_attribution import reward_attribution_stage

    cfg, original, _ = tiny_run
    run_dir = RunDir(shutil.copytree(original.root, tmp_path / "run", ignore=shutil.ignore_patterns("report")))
    monkeypatch.setitem(ORGANISMS, "conjunction", OrganismSpec("tests.organism_example:build", "says 'and' (example)"))
    assert config_from_dict({"policy": {"reward": "organism:conjunction"}}).policy.reward == "organism:conjunction"
    with pytest.raises(UserError, match=r"policy.reward must be 'organism:<a registered organism>'.*got 'organism:nope'"):
        config_from_dict({"policy": {"reward": "organism:nope"}})

    assert_rises(train_with(run_dir, "organism:conjunction", steps=25), 1.0)
    attribution_cfg = replace(cfg.reward_attribution, seeds=(0,), n_prompts=16, ks=(1, 3), dictionaries=("sae_policy",))
    result = reward_attribution_stage(attribution_cfg, run_dir)
    assert result.organism == "conjunction" and result.answer.tokens == ("and",)

    # G again, by hand: the expected number of "and"s each model writes on the stage's completions
    # (its prompts, its sampling seed), teacher-forced, per completion.
    (gain,) = result.gain
    assert gain.gain > 0.5 and gain.sampled_gain > 0.5
    base, policy = to_hooked(run_dir.base), to_hooked(run_dir.policy)
    prompts = prompts_from_texts(run_dir.texts("test"), attribution_cfg.n_prompts, PROMPT_SEED)
    batch = sample_completions(policy, prompts, max_new_tokens=attribution_cfg.max_new_tokens, seed=0)
    word = policy.tokenizer.convert_tokens_to_ids("and")
    with torch.no_grad():
        expected = [sum(float((torch.softmax(model(tokens).float(), -1)[..., word] * scored).sum())
                        for tokens, scored in batch.groups) / batch.n_rows for model in (base, policy)]
    assert expected[1] - expected[0] == pytest.approx(gain.gain, rel=1e-4)
    assert "says &#39;and&#39; (example)" in build_report(run_dir).read_text()

