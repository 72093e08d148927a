"""The classic RLHF loop on the digits organism, run as configs/digits.toml runs it (about a minute)."""

from __future__ import annotations

import math

import pytest
import torch

from rlhf.errors import UserError
from rlhf.organisms.digits import DigitsConfig, DigitsOrganism, follows_rule, parse_digits, write_corpus
from rlhf.results import CorpusResult, DigitsAttention, DigitsResult
from rlhf.results import digits_run as digits_run_dir
from rlhf.rundir import read_json
from study.config import load_config
from study.pipeline import run_study
from tests.browser import open_page
from tests.conftest import ROOT, run_config

DIGITS = ROOT / "configs" / "digits.toml"


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    cfg, run_dir, lines = run_config(DIGITS, tmp_path_factory.mktemp("runs"))
    return cfg, run_dir, lines, DigitsResult.load(run_dir)


def test_only_the_listed_stage_runs(digits_run):
    cfg, run_dir, lines, _ = digits_run
    assert cfg.stages == ("digits",)
    assert [line for line in lines if line.endswith("running")] == ["[digits] running"]
    assert not run_dir.corpus.exists()  # the sentiment corpus stage did not run
    assert CorpusResult.exists(digits_run_dir(run_dir))  # the stage's own run directory


def test_sft_model_reaches_the_entropy_floor(digits_run):
    sft = digits_run[3].sft
    assert sft.test_loss >= sft.entropy_floor - 0.01  # no model beats the floor (up to sampling noise)
    assert sft.loss_over_floor < 1.05


def test_reward_model_ranks_held_out_pairs(digits_run):
    rm = digits_run[3].reward_model
    assert rm.kind == "bradley_terry" and rm.test_pairs >= 200
    assert rm.held_out_accuracy >= 0.95


def test_rl_moves_the_first_digit_and_keeps_the_rest(digits_run):
    d = digits_run[3]
    base, policy, beta0 = d.models["base"], d.models["policy"], d.models["policy_beta0"]
    assert abs(base.first_correct_probability - d.base_rate) < 0.08  # the SFT model follows the rule
    assert policy.first_correct >= 0.9 and policy.first_correct_probability >= 0.9
    later = policy.kl_by_position[1:-1]
    assert sum(later) / len(later) < 0.25 < policy.kl_by_position[0]
    assert d.later_mean("policy", "kl_by_position") == pytest.approx(sum(later) / len(later))
    assert min(policy.rule_following_by_position[1:]) > 0.9
    assert beta0.mean_kl_per_token > 3 * policy.mean_kl_per_token  # no penalty: it drifts far further
    assert d.models["sft_baseline"].first_correct > base.first_correct + 0.3
    # The KL curves of both runs were measured the same way, beta = 0 included (TRL logs none for it).
    assert set(d.kl_curves) == {"policy", "policy_beta0"} and all(len(c) >= 10 for c in d.kl_curves.values())
    assert d.policy_beta == digits_run[0].digits.policy.beta and d.n_output == digits_run[0].digits.organism.n_output


def test_attention_patterns_before_and_after(digits_run):
    att = DigitsAttention.load(digits_run[1])
    cfg = digits_run[0].digits
    assert set(att.models) == {"base", "policy"}
    n = len(att.tokens)
    assert n == 1 + cfg.organism.n_input + 1 + cfg.organism.n_output
    for layers in att.models.values():
        pattern = torch.tensor(layers)
        assert pattern.shape == (cfg.sft.n_layers, cfg.sft.n_heads, n, n)
        assert torch.allclose(pattern.sum(-1), torch.ones(pattern.shape[:-1]), atol=1e-3)
        assert pattern.triu(1).abs().max() == 0  # causal


def test_report_shows_the_loop_with_its_checks(digits_run, tmp_path):
    run_dir = digits_run[1]
    page = (run_dir.report / "index.html").read_text()
    assert "classic RLHF loop" in page and page.count("class='pass'") >= 4 and "class='fail'" not in page
    summary = read_json(run_dir.report / "summary.json")
    assert summary["digits_first_correct_after"] >= 0.9
    dom, messages = open_page(run_dir.report / "index.html", tmp_path / "digits.png")
    assert messages == []
    assert dom.count("<h4>Head selector") == 4  # rendered views: two layers, before and after


def test_rerun_is_skipped(digits_run):
    cfg, run_dir, _, _ = digits_run
    lines: list[str] = []
    run_study(cfg, log=lines.append)
    assert "[digits] done already, skipped" in lines


def test_corpus_statistics_and_grammar_helpers(tmp_path):
    organism = DigitsOrganism(DigitsConfig(n_train=300, n_val=50, n_test=50))
    stats = write_corpus(organism, tmp_path)
    rows = (tmp_path / "train.txt").read_text().splitlines()
    assert len(rows) == 300 and stats.train.tokens == 300 * (4 + 1 + 6 + 1) and stats.source == "digits"
    # Four uniform inputs and at most log 4 per output, over 12 predicted tokens.
    assert 4 * math.log(10) / 12 < stats.test.entropy_floor < (4 * math.log(10) + 6 * math.log(4)) / 12
    assert parse_digits("3 x 4") == [3, None, 4]
    assert follows_rule((1, 2, 3, 4), [5, 2, None, 9]) == [True, False, False, False]


def test_stage_list_errors_name_the_problem(tmp_path):
    with pytest.raises(UserError, match=r"stages\[0\] must be one of 'corpus', .*; got 'digitz'"):
        run_study(load_config(DIGITS, {"runs_dir": str(tmp_path), "stages": ["digitz"]}))
    with pytest.raises(UserError, match="'policy' but not 'pretrain'"):
        run_study(load_config(DIGITS, {"runs_dir": str(tmp_path), "stages": ["policy"]}))


def test_a_nested_section_keeps_its_own_defaults():
    cfg = load_config(DIGITS, {"digits": {"policy": {"max_steps": 7}}})
    assert cfg.digits.policy.max_steps == 7
    assert cfg.digits.policy.max_completion_length == 7 and cfg.digits.policy.beta == 0.5  # not the sentiment policy's
