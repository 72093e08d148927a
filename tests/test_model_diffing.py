"""The model-diffing stage on the tiny study: every method scored against the known reward."""

from __future__ import annotations

import pytest

from analysis.model_diffing import METHODS, ModelDiffingConfig, model_diffing_stage
from analysis.results import ActivationIndex, ModelDiffingResult
from rlhf.errors import UserError


def test_every_method_is_scored_on_every_layer(tiny_run):
    cfg, run_dir, _ = tiny_run
    result = ModelDiffingResult.load(run_dir)
    hooks = ActivationIndex.load(run_dir).hooks
    assert tuple(layer.hook for layer in result.layers) == hooks
    assert set(result.summary) == set(METHODS)
    k = cfg.model_diffing.top_k
    assert result.top_k == k and result.seeds == cfg.model_diffing.seeds
    for layer in result.layers:
        assert set(layer.methods) == set(METHODS)
        for name, rows in layer.methods.items():
            for row in rows:
                assert 0 <= row.precision <= 1 and 0 <= row.recall <= 1
                if name != "kl":
                    # A crosscoder may find no latent leaning to the policy; the other methods always rank some.
                    assert (0 if name.startswith("crosscoder") else 1) <= row.n <= k
                    assert len(set(row.latents)) == row.n and 0 <= row.share_tracking_reward <= 1
                    assert (row.reward_change is not None and row.kl_per_token >= 0) == (row.n > 0)
        c = layer.crosscoder[0]
        assert c.explained_variance["base"] > 0.5 and c.explained_variance["policy"] > 0.5
        assert 0 <= c.dead_fraction < 1 and c.l0 > 0
        lat = layer.latents
        assert len(lat.relative_norm) == c.n_latents and all(0 <= r <= 1 for r in lat.relative_norm)
        # The crosscoder-scaling method only names latents leaning to the policy, most specific first.
        named = layer.methods["crosscoder_scaling"][0].latents
        assert all(lat.relative_norm[i] > cfg.model_diffing.relative_norm_threshold for i in named)
        # The cards' data: the latents leaning furthest to the policy, with their top texts.
        assert len(layer.cards) <= cfg.model_diffing.cards
        assert [card.relative_norm for card in layer.cards] == sorted((card.relative_norm for card in layer.cards), reverse=True)
        assert all(len(e.tokens) == len(e.policy) == len(e.base) for card in layer.cards for e in card.examples)
    assert len(result.kl.tokens) == 20 and result.kl.mean_kl > 0


def test_report_has_the_benchmark_table_and_crosscoder_cards(tiny_run):
    run_dir = tiny_run[1]
    page = (run_dir.report / "index.html").read_text()
    assert "Model diffing against the known reward" in page and "crosscoder + latent scaling" in page
    assert "crosscoder latent" in page and ModelDiffingResult.plot_path(run_dir).exists()


def test_a_rerun_reuses_the_saved_dictionaries_and_finds_the_same_latents(tiny_run):
    from analysis.model_diffing import _val, find_latents, work_dir

    cfg, run_dir, _ = tiny_run
    layer = ModelDiffingResult.load(run_dir).layers[0]
    hook, work = layer.hook, work_dir(run_dir, layer.hook)
    saved = {p: p.stat().st_mtime_ns for p in work.rglob("*") if p.is_file()}
    assert any(p.name == "crosscoder_seed0.safetensors" for p in saved)
    assert any(p.name == "difference_dictionary_seed0.safetensors" for p in saved)
    found, _ = find_latents(cfg.model_diffing, run_dir, hook, 0, _val(run_dir, "base", hook), _val(run_dir, "policy", hook),
                            work)
    assert {p: p.stat().st_mtime_ns for p in work.rglob("*") if p.is_file()} == saved  # loaded, not retrained
    for name in ("crosscoder_scaling", "difference_dictionary", "difference_sae"):
        assert tuple(found[name].latents) == layer.methods[name][0].latents, name


def test_unknown_layers_are_refused_with_the_cached_ones(tiny_run):
    _, run_dir, _ = tiny_run
    with pytest.raises(UserError, match="not cached; cached layers"):
        model_diffing_stage(ModelDiffingConfig(layers=(99,)), run_dir)
