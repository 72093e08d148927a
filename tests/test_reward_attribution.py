"""Where the reward lives: the exact gain, patching and weight swaps, attribution checked by splicing,
the writer probe, and the stage on the tiny study."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from analysis.config import RewardAttributionConfig
from analysis.feature_attribution import direction_dictionary, encode, gradients, latent_scores, spliced
from analysis.patching import Site, activation_sites, cache_sites, patch_sites, swapped, weight_sites
from analysis.results import RewardAttributionResult
from analysis.reward_attribution import resolve_target
from analysis.reward_gain import expected_reward, sample_completions, split_gain, token_utility
from rlhf.errors import UserError
from rlhf.hooked import to_hooked
from rlhf.organisms.objective import organism
from rlhf.policy import prompts_from_texts
from rlhf.results import PolicyResult
from rlhf.rundir import RunDir
from study.reward_attribution import reward_attribution_stage


@pytest.fixture(scope="module")
def pair(tiny_run):
    """The tiny study's base and policy, the utility vector, and 24 teacher-forced policy completions."""
    _, run_dir, _ = tiny_run
    base, policy = to_hooked(run_dir.base), to_hooked(run_dir.policy)
    u = token_utility(policy.tokenizer, policy.cfg.d_vocab)
    prompts = prompts_from_texts(run_dir.texts("test"), 24, 5)
    batch = sample_completions(policy, prompts, u.expand(len(prompts), -1), max_new_tokens=19, seed=0)
    return run_dir, base, policy, u, batch


def test_expected_reward_is_the_utility_of_the_next_token_distribution(pair):
    _, base, _, u, batch = pair
    tokens, scored = batch.groups[0]
    probs = torch.softmax(base(tokens).detach().float(), -1)
    by_hand = sum(float(probs[0, j] @ u) for j in range(tokens.shape[1]) if scored[0, j])
    assert expected_reward(base, batch)[0].item() == pytest.approx(by_hand, rel=1e-5)
    assert scored[:, -1].sum() == 0, "the last position predicts nothing"


def test_gain_splits_exactly_and_is_positive_for_the_trained_policy(pair):
    _, base, policy, u, batch = pair
    split = split_gain(base, policy, batch, policy.tokenizer.eos_token_id)
    assert split.utility_part + split.ending_part == pytest.approx(split.gain, abs=1e-6)
    assert split.base == pytest.approx(float(expected_reward(base, batch).mean()), abs=1e-5)
    assert split.policy == pytest.approx(float(expected_reward(policy, batch).mean()), abs=1e-5)
    assert split.gain > 0, "GRPO on the utility raised the expected utility of the policy's choices"


def test_patching_everything_recovers_all_of_the_gain_and_nothing_none(pair):
    _, base, policy, _, batch = pair
    split = split_gain(base, policy, batch, policy.tokenizer.eos_token_id)
    sites = [s for s in activation_sites(base.cfg.n_layers) if s.name == "all"] + [Site("nothing", None, "nothing")]
    everything, nothing = patch_sites(base, policy, batch, sites, split.base, split.policy)
    assert everything.recovered == pytest.approx(1.0, abs=1e-5) and everything.removed == pytest.approx(1.0, abs=1e-5)
    assert nothing.recovered == pytest.approx(0.0, abs=1e-5) and nothing.removed == pytest.approx(0.0, abs=1e-5)


def test_swapping_all_weights_turns_the_base_into_the_policy_exactly(pair):
    _, base, policy, _, batch = pair
    tokens, _ = batch.groups[0]
    before = base(tokens)
    everything = next(s for s in weight_sites(base.cfg.n_layers) if s.name == "all")
    with torch.no_grad(), swapped(base, policy, everything.params):
        assert torch.equal(base(tokens), policy(tokens))
    assert torch.equal(base(tokens), before), "the swap is undone on exit"


def test_attribution_agrees_in_sign_with_real_splicing_on_a_planted_change(pair):
    """A fine-tune that moves one layer's MLP output along a direction that writes the high-utility
    tokens, and along an unrelated one: the planted utility direction ranks first, and every
    latent's attribution has the sign of its real splice."""
    run_dir, base, _, u, batch = pair
    layer, hook = 0, "blocks.0.hook_mlp_out"
    writes = base.W_U @ (u - u.mean())  # residual direction that raises the logits of valued tokens
    basis, _ = torch.linalg.qr(torch.cat([writes[:, None], torch.randn(base.cfg.d_model, 5,
                                         generator=torch.Generator().manual_seed(0))], 1))
    planted = to_hooked(run_dir.base)  # a used bridge holds non-leaf tensors: no deepcopy
    with torch.no_grad():
        planted.blocks[layer].mlp.out.bias += 2.0 * basis[:, 0] * torch.sign(basis[:, 0] @ writes) + 1.5 * basis[:, 1]
    split = split_gain(base, planted, batch, base.tokenizer.eos_token_id)
    assert split.gain > 0
    encoded = encode(direction_dictionary("planted", hook, basis.T), cache_sites(base, batch, [hook])[hook],
                     cache_sites(planted, batch, [hook])[hook])
    assert encoded.live == [0, 1], "only the planted directions differ"
    scores = latent_scores(encoded, gradients(base, batch, hook)) / (batch.n_rows * split.gain)
    assert int(torch.argmax(scores)) == 0
    for latent in encoded.live:
        into_base, _ = spliced(base, planted, batch, encoded, [latent])
        real = (into_base - split.base) / split.gain
        assert torch.sign(scores[latent]) == torch.sign(torch.tensor(real)), (latent, float(scores[latent]), real)
    both_in, both_out = spliced(base, planted, batch, encoded, [0, 1])
    assert (both_in - split.base) / split.gain == pytest.approx(1.0, abs=1e-4)
    assert (split.policy - both_out) / split.gain == pytest.approx(1.0, abs=1e-4)


def test_the_stage_wrote_every_table_and_the_report_section(tiny_run):
    cfg, run_dir, _ = tiny_run
    result = RewardAttributionResult.load(run_dir)
    assert len(result.gain) == len(cfg.reward_attribution.seeds) >= 3
    everything = next(r for r in result.patching if r.site == "all")
    assert all(abs(v - 1) < 1e-4 for v in everything.recovered + everything.removed)
    swap_all = next(r for r in result.weight_swap if r.site == "all")
    assert all(abs(v - 1) < 1e-4 for v in swap_all.recovered + swap_all.removed)
    assert {c.dictionary for c in result.curves} == set(cfg.reward_attribution.dictionaries)
    assert {c.ranking for c in result.curves} >= {"attribution", "random", "writer_probe"}
    for c in result.curves:
        assert all(len(per_seed) == len(result.gain) for per_seed in c.recovered)
    data = json.loads(RewardAttributionResult.path(run_dir).read_text())
    assert {"gain", "patching", "weight_swap", "curves"} <= set(data)
    page = (run_dir.report / "index.html").read_text()
    assert "Where the reward lives" in page and "fraction of G" in page
    summary = json.loads((run_dir.report / "summary.json").read_text())
    assert summary["reward_gain_exact"] == pytest.approx(sum(g.gain for g in result.gain) / len(result.gain))


@pytest.mark.parametrize("change, message", [
    ({"layers": (7,)}, "not cached"),
    ({"size": "9x"}, "no 9x SAE"),
    ({"ks": (1, 100_000)}, "lower the largest k"),
    ({"seeds": ()}, "seeds is empty"),
])
def test_bad_input_is_a_one_line_error(tiny_run, change, message):
    cfg, run_dir, _ = tiny_run
    with pytest.raises(UserError, match=message):
        reward_attribution_stage(dataclasses.replace(cfg.reward_attribution, **change), run_dir)


def test_a_run_without_a_policy_is_refused(tmp_path):
    with pytest.raises(UserError, match="needs a policy"):
        reward_attribution_stage(RewardAttributionConfig(), RunDir(tmp_path))


def test_writer_probe_command_line_beats_its_untrained_null(tiny_run, tmp_path, capsys):
    from probes.fit_linear_reward import main

    _, run_dir, _ = tiny_run
    out = tmp_path / "writer.json"
    assert main(["--run-dir", str(run_dir.root), "--target", "next_utility", "--features", "activations",
                 "--prompts", "64", "--out", str(out)]) == 0
    assert "writer probe" in capsys.readouterr().out
    data = json.loads(out.read_text())
    assert data["features"] == "activations" and data["test_positions"] > 0
    # Random-weight probes on raw activations spread widely (sd ~0.3 in tau); R^2 separates clearly.
    assert data["kendall_tau"] > data["untrained_tau"] + 1.5 * data["untrained_tau_std"]
    assert data["r2"] > 0.5 > data["untrained_r2"]
    assert main(["--run-dir", str(run_dir.root), "--target", "next_utility", "--prompts", "2"]) == 2


def test_the_log_ratio_target_is_each_models_log_likelihood_and_zero_for_the_base_itself(pair):
    _, base, policy, u, batch = pair
    ratio = dataclasses.replace(batch, target="log_ratio")
    tokens, scored = ratio.groups[0]
    logp = torch.log_softmax(policy(tokens).detach().float(), -1)
    by_hand = sum(float(logp[0, j, tokens[0, j + 1]]) for j in range(tokens.shape[1] - 1) if scored[0, j])
    assert expected_reward(policy, ratio)[0].item() == pytest.approx(by_hand, rel=1e-5)
    assert split_gain(base, base, ratio, base.tokenizer.eos_token_id).gain == 0.0
    assert split_gain(base, policy, ratio, base.tokenizer.eos_token_id).gain > 0, "the policy's own samples"


def test_a_utility_target_without_a_utility_reward_is_a_one_line_error(tiny_run, tmp_path):
    cfg, run_dir, _ = tiny_run
    copy = RunDir(tmp_path / "run")
    PolicyResult.path(copy).parent.mkdir(parents=True)
    data = json.loads(PolicyResult.path(run_dir).read_text())
    PolicyResult.path(copy).write_text(json.dumps({**data, "reward": "python:tests.reward_functions:count_and"}))
    with pytest.raises(UserError, match="target = 'utility' needs a token-level utility"):
        resolve_target("utility", "reward_attribution.target", 5.0, copy, organism("sentiment"))
    target, reward = resolve_target("auto", "reward_attribution.target", 5.0, copy, organism("sentiment"))
    assert target == "log_ratio" and reward(prompts=["a"], completions=["and and"]) == [2.0], "the python: reward"
