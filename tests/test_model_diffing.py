"""The model-diffing stage on the tiny study: every method scored against the known reward."""

from __future__ import annotations

import shutil
from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file, save_file

from analysis.config import ModelDiffingConfig
from analysis.diffing import METHODS
from analysis.diffing import crosscoder as crosscoder_method
from analysis.diffing.method import Context, HookData, held_out, pick, work_dir
from analysis.diffing.scoring import Splice
from analysis.diffing.stage import model_diffing_stage
from analysis.patching import activation_sites, patch_sites
from analysis.results import ActivationIndex, ModelDiffingResult, SeedStat
from rlhf.errors import UserError
from rlhf.rundir import RunDir
from study.report.sections.model_diffing import leaderboard, verdict

TOKEN_METHODS = {name for name, spec in METHODS.items() if spec.names == "tokens"}


def test_every_method_is_scored_on_every_layer(tiny_run):
    cfg, run_dir, _ = tiny_run
    result = ModelDiffingResult.load(run_dir)
    hooks = ActivationIndex.load(run_dir).hooks_at((), every_kind=True)
    assert tuple(layer.hook for layer in result.layers) == hooks
    assert set(result.summary) == set(METHODS)
    k = cfg.model_diffing.top_k
    assert result.top_k == k and result.seeds == cfg.model_diffing.seeds
    for layer in result.layers:
        assert set(layer.methods) == set(METHODS)
        for name, rows in layer.methods.items():
            for row in rows:
                assert 0 <= row.precision <= 1 and 0 <= row.recall <= 1
                if name in TOKEN_METHODS:
                    assert row.n == 0 and not row.splice and row.share_tracking_reward is None
                    continue
                # A crosscoder may find no latent leaning to the policy; the other methods always rank some.
                assert (0 if name.startswith("crosscoder") else 1) <= row.n <= k
                assert len(set(row.latents)) == row.n and 0 <= row.share_tracking_reward <= 1
                # The sampled ablation runs for the first dictionary seed only.
                ablated = row.n > 0 and row.seed == (result.seeds[0] if METHODS[name].per_seed else 0)
                assert (row.reward_change is not None and row.kl_per_token >= 0) == ablated
                # Every method naming directions gets the causal score at every k, on at most k of them.
                assert set(row.splice) == (set(cfg.model_diffing.splice_ks) if row.n else set())
                assert all(0 < e.directions <= kk for kk, e in row.splice.items())
        c = layer.crosscoder[0]
        assert c.explained_variance["base"] > 0.5 and c.explained_variance["policy"] > 0.5
        assert 0 <= c.dead_fraction < 1 and c.l0 > 0
        lat = layer.latents
        assert len(lat.relative_norm) == c.n_latents and all(0 <= r <= 1 for r in lat.relative_norm)
        # The crosscoder methods set aside exactly the crosscoder's dead latents, and name only firing ones.
        dead = sum(f == 0 for f in lat.frequency)
        assert dead == round(c.dead_fraction * c.n_latents) == layer.cards_set_aside
        for name in ("crosscoder_scaling", "crosscoder_norm"):
            assert layer.methods[name][0].set_aside == dead
            assert all(lat.frequency[i] > 0 for i in layer.methods[name][0].latents)
        # The crosscoder-scaling method only names latents leaning to the policy, most specific first.
        named = layer.methods["crosscoder_scaling"][0].latents
        assert all(lat.relative_norm[i] > cfg.model_diffing.relative_norm_threshold for i in named)
        # The cards' data: the firing latents leaning furthest to the policy, with their top texts.
        assert len(layer.cards) <= cfg.model_diffing.cards
        assert all(card.frequency > 0 for card in layer.cards)
        assert [card.relative_norm for card in layer.cards] == sorted((card.relative_norm for card in layer.cards), reverse=True)
        assert all(len(e.tokens) == len(e.policy) == len(e.base) for card in layer.cards for e in card.examples)
        # The methods' own records: the lens per position with its steering curve, a stage-wise SAE per seed.
        md = cfg.model_diffing
        lens_settings, stagewise_settings = md.method("activation_difference_lens"), md.method("stagewise_sae")
        (lens,) = layer.records["activation_difference_lens"]
        assert len(lens.positions) == lens_settings.positions and lens.gain > 0
        assert [p.alpha for p in lens.steering] == [0.0, *lens_settings.steering_alphas]
        assert lens.steering[0].reward_change == 0 and lens.steering[0].kl_per_token < 1e-6
        stagewise = layer.records["stagewise_sae"]
        assert [w.seed for w in stagewise] == list(md.seeds)
        assert all(w.live + w.set_aside == w.latents and w.training_tokens == stagewise_settings.tokens for w in stagewise)
        assert set(layer.random_splice) == set(md.splice_ks)
    # The once-per-run steps' records, typed as the registry declares them.
    kl, amplification = result.per_run["kl"], result.per_run["logit_amplification"].runs
    assert len(kl.tokens) == 20 and kl.mean_kl > 0
    assert len(result.gain) == len(cfg.model_diffing.sampling_seeds) and all(g > 0 for g in result.gain)
    assert [r.seeds for r in amplification] == [(s,) for s in cfg.model_diffing.seeds]
    assert all([s.a for s in r.samples] == sorted({1.0, *cfg.model_diffing.method("logit_amplification").alphas})
               for r in amplification)


def test_report_has_the_benchmark_table_and_crosscoder_cards(tiny_run):
    run_dir = tiny_run[1]
    page = (run_dir.report / "index.html").read_text()
    assert "Model diffing against the known reward" in page and "crosscoder + latent scaling" in page
    assert "crosscoder latent" in page and ModelDiffingResult.figure(run_dir, "scores").exists()
    assert "latents set aside (never fire)" in page
    for section in ("Leaderboard", "By share of G its top 10 directions recover", "Activation-difference lens",
                    "Logit-diff amplification", "stage-wise SAE fine-tuning"):
        assert section in page, section
    for figure in ("steering", "amplification"):
        assert ModelDiffingResult.figure(run_dir, figure).exists()


def test_splicing_every_direction_is_patching_the_hook(tiny_run):
    """Known answer: the difference projected on a full basis is the whole difference, so the causal
    score equals activation patching of the hook (``analysis.patching``) on the same completions."""
    cfg, run_dir, _ = tiny_run
    ctx = Context.load(cfg.model_diffing, run_dir)
    splice = Splice.load(ctx)
    hook = ModelDiffingResult.load(run_dir).layers[-1].hook
    d = ctx.hooked("base").cfg.d_model
    basis = torch.linalg.qr(torch.randn(d, d, generator=torch.Generator().manual_seed(3)))[0].T
    full = replace(ctx.cfg, splice_ks=(d,))
    effect = Splice(replace(ctx, cfg=full), splice.batches)(hook, basis)[d]
    (batch, split), = splice.batches
    site = next(s for s in activation_sites(ctx.hooked("base").cfg.n_layers) if s.hook == hook)
    patched, = patch_sites(ctx.hooked("base"), ctx.hooked("policy"), batch, [site], split.base, split.policy)
    assert effect.directions == d
    assert effect.recovered == pytest.approx(patched.recovered, abs=1e-4)
    assert effect.removed == pytest.approx(patched.removed, abs=1e-4)


def test_the_leaderboard_ranks_methods_only_where_their_intervals_separate():
    tight = {"a": SeedStat(0.50, 0.01, 3), "b": SeedStat(0.40, 0.01, 3), "c": SeedStat(0.10, 0.01, 3)}
    assert leaderboard(tight) == [["a"], ["b"], ["c"]]
    # The same means with wide spreads: a and b cannot be told apart, so neither is ahead.
    wide = tight | {"a": SeedStat(0.50, 0.08, 3), "b": SeedStat(0.40, 0.05, 3)}
    assert leaderboard(wide) == [["a", "b"], ["c"]]
    assert "a ≈ b > c" in verdict({k: {"x": v} for k, v in wide.items()}, "x")


def test_a_rerun_reuses_the_saved_dictionaries_and_finds_the_same_latents(tiny_run):
    cfg, run_dir, _ = tiny_run
    layer = ModelDiffingResult.load(run_dir).layers[0]
    work = work_dir(run_dir, layer.hook)
    saved = {p: p.stat().st_mtime_ns for p in work.rglob("*") if p.is_file()}
    assert any(p.name == "crosscoder_seed0.safetensors" for p in saved)
    assert any(p.name == "difference_dictionary_seed0.safetensors" for p in saved)
    ctx, at = Context.load(cfg.model_diffing, run_dir), HookData.load(run_dir, layer.hook)
    for name in ("crosscoder_scaling", "difference_dictionary", "difference_sae"):
        found = METHODS[name].finder()(ctx, at, 0)
        assert tuple(found.top(cfg.model_diffing.top_k).latents) == layer.methods[name][0].latents, name
        assert found.set_aside == layer.methods[name][0].set_aside, name
    assert {p: p.stat().st_mtime_ns for p in work.rglob("*") if p.is_file()} == saved  # loaded, not retrained


def test_unknown_layers_are_refused_with_the_cached_ones(tiny_run):
    _, run_dir, _ = tiny_run
    with pytest.raises(UserError, match="not cached; cached layers"):
        model_diffing_stage(ModelDiffingConfig(layers=(99,)), run_dir)


def test_a_ranking_counts_only_latents_that_fire_on_held_out_text():
    codes = torch.tensor([[0.0, 1.0, 0.0, 0.0, 2.0], [0.0, 0.0, 0.0, 3.0, 0.0]])  # latents 0 and 2 never fire
    directions = torch.arange(10.0).reshape(5, 2)
    found = pick([0, 2, 3, 1, 4], codes, directions, k=2)
    assert found.latents == [3, 1] and found.set_aside == 2
    assert torch.equal(found.activations, codes[:, [3, 1]]) and torch.equal(found.directions, directions[[3, 1]])
    assert pick([0, 2], codes, directions, k=2).latents == []


def _silence(path, key_enc: str, key_bias: str, latent: int, encoder_axis: int) -> None:
    """Zero one latent's encoder and push its bias far below zero in a saved dictionary: it never fires."""
    state = load_file(str(path))
    state[key_enc].select(encoder_axis, latent).zero_()
    state[key_bias][latent] = -1e4
    save_file(state, str(path))


def test_a_latent_that_never_fires_is_neither_ranked_nor_carded(tiny_run, tmp_path):
    """Silence, in a copy of the tiny study, the crosscoder latent carded first and the MMCS method's top
    feature: neither is named or carded any more, and each count of set-aside latents grows by one."""
    from analysis.diffing import cards
    from analysis.diffing.crosscoder import crosscoded

    cfg, original, _ = tiny_run
    run_dir = RunDir(shutil.copytree(original.root, tmp_path / "run"))
    layer = ModelDiffingResult.load(run_dir).layers[0]
    hook, ctx = layer.hook, Context.load(cfg.model_diffing, run_dir)
    first = layer.cards[0].latent
    _silence(crosscoder_method.path(run_dir, hook, 0), "W_enc", "b_enc", first, 2)
    top = layer.methods["mmcs_diff"][0].latents[0]
    _silence(run_dir.sae("policy", hook, cfg.model_diffing.method("mmcs_diff").size) / "sae_weights.safetensors", "W_enc", "b_enc",
             top, 1)
    at = HookData.load(run_dir, hook)

    c = crosscoded(ctx, at, 0)
    assert c.latents.frequency[first] == 0
    carded = [card.latent for card in cards.latent_cards(c, at, ctx)]
    assert first not in carded and carded[: len(layer.cards) - 1] == [card.latent for card in layer.cards[1:]]
    for name in ("crosscoder_scaling", "crosscoder_norm"):
        found = METHODS[name].finder()(ctx, at, 0)
        assert first not in found.latents and found.set_aside == layer.methods[name][0].set_aside + 1

    before = layer.methods["mmcs_diff"][0]
    found = METHODS["mmcs_diff"].finder()(ctx, at, 0)
    assert top not in found.latents and found.set_aside == before.set_aside + 1
    assert found.latents[: before.n - 1] == [i for i in before.latents if i != top]


def test_a_new_method_is_one_module_and_one_registry_line(tiny_run, tmp_path, monkeypatch):
    """tests/diffing_example.py registered with one line, nothing else changed: its settings load from
    [model_diffing.methods.mean_difference] (an unknown method's are refused), the stage scores it on every
    layer beside the others and keeps its records and its once-per-run record, typed as registered when the
    result loads back, and the report's leaderboard names it by its label."""
    from analysis.diffing.registry import MethodSpec
    from study.config import config_from_dict
    from study.report import build_report
    from tests.diffing_example import Largest, MeanDifference, MeanDifferenceConfig

    cfg, original, _ = tiny_run
    run_dir = RunDir(shutil.copytree(original.root, tmp_path / "run"))
    monkeypatch.setitem(METHODS, "mean_difference", MethodSpec(
        "tests.diffing_example:find", "mean difference (example)", per_seed=False, config=MeanDifferenceConfig,
        record="tests.diffing_example:MeanDifference", once="tests.diffing_example:once", per_run="tests.diffing_example:Largest"))
    loaded = config_from_dict({"model_diffing": {"seeds": [0], "methods": {"mean_difference": {"skip": 7}}}}).model_diffing
    assert loaded.method("mean_difference") == MeanDifferenceConfig(skip=7)
    with pytest.raises(UserError, match=r"unknown name 'no_such_method' in \[model_diffing.methods\]; registered: mmcs_diff"):
        config_from_dict({"model_diffing": {"methods": {"no_such_method": {}}}})
    with pytest.raises(UserError, match="crosscoder_norm takes no settings"):
        config_from_dict({"model_diffing": {"methods": {"crosscoder_norm": {"k": 1}}}})

    result = model_diffing_stage(replace(cfg.model_diffing, seeds=(0,), methods={**loaded.methods}), run_dir)
    assert "mean_difference" in result.summary
    for layer in result.layers:
        (row,) = layer.methods["mean_difference"]
        assert row.latents == (0,) and row.seed == 0
        (record,) = layer.records["mean_difference"]
        assert record.hook == layer.hook and record.tokens == len(held_out(run_dir, "base", layer.hook)) - 7
    largest = max((layer.records["mean_difference"][0] for layer in result.layers), key=lambda r: r.norm)
    assert result.per_run["mean_difference"] == Largest(largest.hook, largest.norm)
    again = ModelDiffingResult.load(run_dir)
    assert again.per_run["mean_difference"] == result.per_run["mean_difference"]
    assert isinstance(again.layers[0].records["mean_difference"][0], MeanDifference)
    assert "mean difference (example)" in build_report(run_dir).read_text()
