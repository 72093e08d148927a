"""The activation-difference lens, stage-wise SAE fine-tuning and logit-diff amplification, on tiny
models with a planted change whose answer is known: a policy that is the base plus a bias along a
direction that raises the logits of the high-utility words."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest
import torch
from sae_lens import SAETrainer
from transformers import GPT2Config, GPT2LMHeadModel

from analysis.dictionaries import DictionaryConfig, make_sae, trainer_config
from analysis.diffing.act_diff_lens import activation_difference_lens, logit_lens, mean_difference
from analysis.diffing.amplification import logit_amplification, sample_amplified
from analysis.diffing.stagewise import stagewise_sae
from analysis.interventions import directional_ablation, sample_with_hooks
from analysis.reward_gain import token_utility
from rlhf.config import TokenizerConfig
from rlhf.hooked import to_hooked
from rlhf.tokenizer import build_tokenizer, load_tokenizer

NEUTRAL = "the cat sat on mat dog ran a house tree big small red blue walk door road car book sun".split()
HIGH = {"great", "love", "happy", "wonderful", "excellent"}  # VADER valence >= 2
LOW = ["bad", "sad", "terrible", "awful"]
HOOK = "blocks.1.hook_resid_post"


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """A 2-layer GPT-2 base on a word-level vocabulary, and a policy = base + 2 * v in layer 0's MLP bias, where v
    is the unit residual direction whose logits are the words' valences. The base's second layer writes
    little (its output weights scaled down), so the difference reaching the last residual is mostly v."""
    out = tmp_path_factory.mktemp("tokenizer")
    build_tokenizer([" ".join([*NEUTRAL, *sorted(HIGH), *LOW])], TokenizerConfig(), out)
    tokenizer = load_tokenizer(out)
    torch.manual_seed(0)
    hf = GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=64, n_head=8, n_inner=128, n_positions=32, vocab_size=len(tokenizer),
                                    activation_function="gelu", initializer_range=0.1, tie_word_embeddings=False))
    with torch.no_grad():
        hf.transformer.h[1].attn.c_proj.weight *= 0.1
        hf.transformer.h[1].mlp.c_proj.weight *= 0.1
    base = to_hooked(hf, tokenizer=tokenizer)
    u = token_utility(tokenizer, base.cfg.d_vocab, scale=1.0)
    # The centred direction whose unembedding is the words' valence (exact: d_model > vocabulary).
    system = torch.cat([base.W_U.detach().T, torch.ones(1, base.cfg.d_model)])
    v = torch.linalg.pinv(system) @ torch.cat([u - u.mean(), torch.zeros(1)])
    v = v / v.norm()
    with torch.no_grad():
        hf.transformer.h[0].mlp.c_proj.bias += 2.0 * v
    policy = to_hooked(hf, tokenizer=tokenizer)
    rng = random.Random(0)
    texts = [" ".join(rng.choice(NEUTRAL) for _ in range(8)) for _ in range(48)]
    prompts = [" ".join(rng.choice(NEUTRAL) for _ in range(rng.randint(2, 4))) for _ in range(24)]
    return base, policy, v, texts, prompts


def test_the_lens_recovers_the_planted_direction_and_the_tokens_it_promotes(planted):
    base, policy, v, texts, prompts = planted
    diffs, norms, n_texts = mean_difference(base, policy, HOOK, texts, n_positions=5)
    assert n_texts == len(texts) and diffs.shape == (5, base.cfg.d_model) and bool((norms > 0).all())
    assert torch.nn.functional.cosine_similarity(diffs, v[None], dim=-1).min() > 0.9
    names = policy.tokenizer.convert_ids_to_tokens(list(range(len(policy.tokenizer))))
    planted_top = {names[t] for t in torch.topk(logit_lens(policy, v[None])[0, : len(names)], 5).indices.tolist()}
    assert planted_top == HIGH, "the planted direction writes the valued words"
    result, found = activation_difference_lens(base, policy, HOOK, texts, prompts, top_n=5, alphas=(0.0, 1.0), seeds=(0,),
                                               max_new_tokens=8, held_out=torch.randn(50, base.cfg.d_model))
    assert set(result.promoted) == HIGH and result.high_utility_share == 1.0
    assert all(set(p.promoted) == HIGH for p in result.positions)
    assert found is not None and found.latents == [0, 1, 2, 3, 4]
    assert found.activations.shape == (50, 5) and torch.equal(found.directions, diffs)
    # Steering the base along the difference moves its reward the way the planted change does.
    unsteered, steered = result.steering
    assert result.gain_source == "sampled" and result.gain > 0
    assert unsteered.reward_change == 0.0 and steered.reward_change > 0 and steered.share_of_gain > 0.3
    assert steered.kl_per_token > 0


def test_batched_sampling_is_each_prompt_sampled_alone(planted, monkeypatch):
    """Known answer: with the draw made greedy, one left-padded batch under a hook gives each prompt the
    completion the bridge's ``generate`` gives it alone, unpadded (positional embeddings and all)."""
    _, policy, v, _, prompts = planted
    hooks = directional_ablation(HOOK, v[None])
    assert len({len(policy.tokenizer(p)["input_ids"]) for p in prompts}) > 1, "prompts of several lengths"
    monkeypatch.setattr(torch, "multinomial", lambda probs, n, generator=None: probs.argmax(-1, keepdim=True))
    texts, rows, masks, order = sample_with_hooks(policy, prompts, hooks, max_new_tokens=8, seed=0)
    eos = policy.tokenizer.eos_token_id
    with policy.hooks(fwd_hooks=hooks):
        for prompt, text in zip(prompts, texts):
            ids = torch.tensor([policy.tokenizer(prompt)["input_ids"]])
            alone = policy.generate(ids, max_new_tokens=8, do_sample=False, eos_token_id=eos, verbose=False)[0, ids.shape[1]:]
            assert text == policy.tokenizer.decode(alone[: (alone == eos).int().argmax() if eos in alone else None],
                                                   skip_special_tokens=True)
    # The rows come back unpadded, one group per prompt length, the completion marked in each.
    assert sum(len(r) for r in rows) == len(prompts) and all(r.shape == m.shape for r, m in zip(rows, masks))
    assert sorted(i for at in order for i in at) == list(range(len(prompts)))
    for tokens, at in zip(rows, order):  # each row starts with its own prompt
        for row, i in zip(tokens, at):
            ids = policy.tokenizer(prompts[i])["input_ids"]
            assert row[: len(ids)].tolist() == ids
    assert all(bool(m[:, 0].logical_not().all()) for m in masks)


def test_amplification_at_one_is_the_policy_and_beyond_one_exaggerates_the_planted_preference(planted):
    base, policy, _, _, prompts = planted
    texts, _ = sample_amplified(base, policy, prompts, 1.0, max_new_tokens=8, seed=3)
    # The sampler on the policy alone, seeded the same: the same completions.
    assert texts == sample_with_hooks(policy, prompts, [], max_new_tokens=8, seed=3)[0]
    result = logit_amplification(base, policy, prompts, alphas=(0.0, 4.0), seeds=(0, 1), max_new_tokens=8, top_n=5)
    by_a = {s.a: s for s in result.samples}
    assert sorted(by_a) == [0.0, 1.0, 4.0] and result.high_utility_vocabulary == len(HIGH)
    utility = {a: sum(s.utility) / len(s.utility) for a, s in by_a.items()}
    assert utility[0.0] < utility[1.0] < utility[4.0]
    share = [by_a[a].high_utility_token_share for a in (0.0, 1.0, 4.0)]
    assert share == sorted(share) and share[-1] > share[1] + 0.1
    assert by_a[4.0].rising_tokens[0] in HIGH and by_a[4.0].precision >= 0.6
    assert by_a[1.0].rising_tokens == () and not set(by_a[0.0].rising_tokens) & HIGH


def _batches(features: torch.Tensor, seed: int, batch: int = 512) -> Iterator[torch.Tensor]:
    """Sparse non-negative combinations of the rows of ``features``: each fires with probability 0.1."""
    gen = torch.Generator().manual_seed(seed)
    while True:
        fires = torch.rand(batch, len(features), generator=gen) < 0.1
        yield (fires * (0.5 + torch.rand(batch, len(features), generator=gen))) @ features


def test_stagewise_fine_tuning_ranks_the_latents_that_moved_to_the_planted_direction_first(tmp_path):
    d, n = 16, 12
    features = torch.nn.functional.normalize(torch.randn(n, d, generator=torch.Generator().manual_seed(0)), dim=-1)
    settings = DictionaryConfig(architecture="standard", l1_coefficient=1.0, training_tokens=150_000, batch_size=512,
                                learning_rate=3e-3, seed=0)
    sae = SAETrainer(trainer_config(settings), make_sae(settings, d, 1.5), _batches(features, 0)).fit()
    sae.save_inference_model(tmp_path / "base")
    # The fine-tune turns feature 3 into a new direction, orthogonal to it.
    new = torch.randn(d, generator=torch.Generator().manual_seed(1))
    new = torch.nn.functional.normalize(new - (new @ features[3]) * features[3], dim=0)
    moved = features.clone()
    moved[3] = new
    held_out = torch.cat([next(_batches(moved, 99)) for _ in range(4)])
    result, found = stagewise_sae(tmp_path / "base", _batches(moved, 1), held_out, hook="synthetic",
                                  training_tokens=100_000, batch_size=512, learning_rate=3e-3, top_k=3)
    assert result.live + result.set_aside == result.latents == 24
    assert result.explained_variance_after > result.explained_variance_before
    first = result.top[0]
    assert found.latents[0] == first.latent and first.movement == max(r.movement for r in result.top)
    assert torch.nn.functional.cosine_similarity(found.directions[0], new, dim=0) > 0.9
    assert found.activations.shape == (len(held_out), 3) and found.directions.shape == (3, d)
