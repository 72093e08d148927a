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
    # The organism's utility rides along but is not what the test reads: it counts "and"s itself.
    utility = organism("conjunction").utilities(policy.tokenizer, policy.cfg.d_vocab, prompts)
    batch = sample_completions(policy, prompts, utility, max_new_tokens=attribution_cfg.max_new_tokens, seed=0)
    word = policy.tokenizer.convert_tokens_to_ids("and")
    with torch.no_grad():
        expected = [sum(float((torch.softmax(model(tokens).float(), -1)[..., word] * scored).sum())
                        for tokens, scored in batch.groups) / batch.n_rows for model in (base, policy)]
    assert expected[1] - expected[0] == pytest.approx(gain.gain, rel=1e-4)
    assert "says &#39;and&#39; (example)" in build_report(run_dir).read_text()



def _prompt_of(tokens: torch.Tensor, scored: torch.Tensor, tokenizer) -> str:
    """A row's prompt: its tokens up to the first position whose logits predict a completion token."""
    first = int(scored.nonzero()[0, 0]) if scored.any() else len(tokens) - 1
    return tokenizer.decode(tokens[: first + 1], skip_special_tokens=True)


@pytest.mark.parametrize("name", ["sentiment", "topic", "trigger", "length", "edit"])
def test_each_organism_s_reward_is_its_summed_utility_and_g_is_the_expected_reward_change(name, tiny_run):
    """The zoo's contract on every registered organism: a one-token completion earns that token's
    u(t | prompt) under the reward (on prompts with and without the trigger), and G from the organism's
    utilities equals the policy-minus-base expected reward computed here from the reward function alone."""
    from analysis.reward_gain import split_gain
    from rlhf.organisms.trigger import trigger_word

    _, run_dir, _ = tiny_run
    base, policy = to_hooked(run_dir.base), to_hooked(run_dir.policy)
    tok, d_vocab = policy.tokenizer, policy.cfg.d_vocab
    objective = organism(name)
    prompts = prompts_from_texts(run_dir.texts("test"), 12, 7) + [f"the {trigger_word()} was", f"overall the {trigger_word()}"]
    utility = objective.utilities(tok, d_vocab, prompts)
    names = tok.convert_ids_to_tokens(list(range(len(tok))))
    texts = [tok.decode([i], skip_special_tokens=True) for i in range(len(tok))]

    def by_reward(prompt: str) -> torch.Tensor:
        r = torch.zeros(d_vocab)
        r[: len(tok)] = torch.tensor(objective.reward([prompt] * len(texts), texts))
        return r

    for prompt, u in zip(prompts[-3:], utility[-3:]):  # one plain prompt, two with the trigger
        assert torch.allclose(u, by_reward(prompt), atol=1e-6), [n for n, a, b in zip(names, u, by_reward(prompt)) if a != b][:5]
    assert utility[:, tok.eos_token_id].abs().max() == 0
    if name == "trigger":
        assert torch.equal(utility[-1], -utility[0]) and utility[0].abs().sum() > 0

    batch = sample_completions(policy, prompts, utility, max_new_tokens=8, seed=0)
    split = split_gain(base, policy, batch, tok.eos_token_id)
    expected = []
    with torch.no_grad():
        for model in (base, policy):
            total = 0.0
            for tokens, scored in batch.groups:
                probs = torch.softmax(model(tokens).float(), -1)
                for row in range(len(tokens)):
                    r = by_reward(_prompt_of(tokens[row], scored[row], tok))
                    total += float((probs[row] @ r * scored[row]).sum())
            expected.append(total / batch.n_rows)
    assert split.gain == pytest.approx(expected[1] - expected[0], rel=1e-4, abs=1e-6)
    assert objective.answer(tok).tokens


def test_the_edit_organism_plants_a_rank_one_change_that_patching_and_the_lens_find_exactly(tiny_run, tmp_path):
    """Known answers: the policy stage plants the edit without training; G > 0; patching the edited hook
    recovers all of G and removes all of it, every hook before that layer none; the policy-minus-base
    difference there is rank one along the planted direction, which the activation-difference lens finds."""
    from analysis.diffing.act_diff_lens import mean_difference
    from analysis.patching import activation_sites, cache_sites, patch_sites
    from analysis.reward_gain import split_gain
    from rlhf.organisms.edit import PlantedEdit
    from rlhf.policy import train_policy

    cfg, original, _ = tiny_run
    run_dir = RunDir(shutil.copytree(original.root, tmp_path / "run", ignore=shutil.ignore_patterns("report", "activations")))
    result = train_policy(replace(cfg.policy, reward="organism:edit", n_eval_prompts=32), run_dir)
    assert result.steps == 0 and result.kept_reason == "planted" and result.reward_gain > 0
    edit = PlantedEdit.load(run_dir.policy)
    assert edit.hook == "blocks.1.hook_mlp_out"
    base, policy = to_hooked(run_dir.base), to_hooked(run_dir.policy)
    prompts = prompts_from_texts(run_dir.texts("test"), 24, 3)
    objective = organism("edit")
    batch = sample_completions(policy, prompts, objective.utilities(policy.tokenizer, policy.cfg.d_vocab, prompts),
                               max_new_tokens=8, seed=0)
    split = split_gain(base, policy, batch, policy.tokenizer.eos_token_id)
    assert split.gain > 0
    effects = {e.site.name: e for e in patch_sites(base, policy, batch, activation_sites(base.cfg.n_layers),
                                                   split.base, split.policy)}
    assert effects[edit.hook].recovered == pytest.approx(1.0, abs=1e-5)
    assert effects[edit.hook].removed == pytest.approx(1.0, abs=1e-5)
    for site, effect in effects.items():
        if site.startswith("blocks.0.") or site == "embed":
            assert effect.recovered == pytest.approx(0.0, abs=1e-5) and effect.removed == pytest.approx(0.0, abs=1e-5), site
    # Rank one: every difference at the hook is a multiple of the planted direction.
    acts = [cache_sites(m, batch, [edit.hook])[edit.hook] for m in (base, policy)]
    diffs = torch.cat([(p - b).reshape(-1, base.cfg.d_model) for b, p in zip(*acts)])
    s = torch.linalg.svdvals(diffs)
    assert s[1] / s[0] < 1e-4
    top = torch.linalg.svd(diffs, full_matrices=False).Vh[0]
    assert abs(float(top @ edit.direction)) > 0.9999
    lens, _, _ = mean_difference(base, policy, edit.hook, run_dir.texts("test")[:64])
    cosine = torch.nn.functional.cosine_similarity(lens, edit.direction[None], dim=-1)
    assert cosine.abs().min() >= 0.99, cosine


def test_a_trigger_word_the_tokenizer_splits_is_a_one_line_error(tiny_run):
    from rlhf.organisms.trigger import Trigger
    from rlhf.reward_kinds import RewardOptions
    from rlhf.tokenizer import load_tokenizer

    _, run, _ = tiny_run
    tokenizer = load_tokenizer(run.tokenizer)
    for word, reads in (("zqxjv", "the unknown token"), ("the plot", "2 tokens")):
        with pytest.raises(UserError, match=rf"^the trigger word '{word}' is {reads}.* one token per word") as err:
            Trigger(RewardOptions(), word).utility(tokenizer, len(tokenizer), f"the plot was {word}")
        assert "\n" not in str(err.value)


def test_the_trigger_is_the_key_of_its_answer_and_key_hit_scores_whether_a_method_names_it(tiny_run):
    """Known answer on a stub context: a method naming the trigger's token hits the key, one naming only
    the answer's other tokens misses it, and without a key there is nothing to hit."""
    from analysis.config import ModelDiffingConfig
    from analysis.diffing.method import Context, Found
    from analysis.diffing.scoring import score
    from rlhf.tokenizer import load_tokenizer

    _, run, _ = tiny_run
    tokenizer, trigger = load_tokenizer(run.tokenizer), organism("trigger")
    answer = trigger.answer(tokenizer)
    assert answer.key == answer.tokens[:1] and len(answer.tokens) > 1
    ctx = Context(cfg=ModelDiffingConfig(), run_dir=run, tokenizer=tokenizer, vocab=list("abcdef"), token_utility=torch.zeros(6),
                  unembed=torch.zeros(4, 6), high={1, 2, 3}, key={2}, prompts=[], objective=trigger, planted=None)
    named = {tokens: score(Found.of_tokens(list(tokens)), torch.zeros(0), ctx, seed=0) for tokens in ((2, 5), (1, 3))}
    assert named[(2, 5)].key_hit == 1.0 and named[(2, 5)].precision == 0.5 and named[(2, 5)].named == ("c", "f")
    assert named[(1, 3)].key_hit == 0.0 and named[(1, 3)].precision == 1.0
    ctx.key = set()
    assert score(Found.of_tokens([2]), torch.zeros(0), ctx, seed=0).key_hit is None
