"""The model-diffing stage on the tiny study: every method scored against the known reward."""

from __future__ import annotations

import pytest

from analysis.model_diffing import METHODS, ModelDiffingConfig, model_diffing_stage
from rlhf.errors import UserError
from rlhf.rundir import read_json


def test_every_method_is_scored_on_every_layer(tiny_run):
    cfg, run_dir, _ = tiny_run
    result = read_json(run_dir.analysis / "model_diffing.json")
    hooks = read_json(run_dir.root / "activations" / "index.json")["hooks"]
    assert [layer["hook"] for layer in result["layers"]] == hooks
    assert set(result["summary"]) == set(METHODS)
    k = cfg.model_diffing.top_k
    for layer in result["layers"]:
        assert set(layer["methods"]) == set(METHODS)
        for name, rows in layer["methods"].items():
            for row in rows:
                assert 0 <= row["precision"] <= 1 and 0 <= row["recall"] <= 1
                if name != "kl":
                    # A crosscoder may find no latent leaning to the policy; the other methods always rank some.
                    assert (0 if name.startswith("crosscoder") else 1) <= row["n"] <= k
                    assert len(set(row["latents"])) == row["n"] and 0 <= row["share_tracking_reward"] <= 1
                    assert ("reward_change" in row and row["kl_per_token"] >= 0) == (row["n"] > 0)
        c = layer["crosscoder"]["0"]
        assert c["explained_variance"]["base"] > 0.5 and c["explained_variance"]["policy"] > 0.5
        assert 0 <= c["dead_fraction"] < 1 and c["l0"] > 0
        lat = layer["latents"]
        assert len(lat["relative_norm"]) == c["n_latents"] and all(0 <= r <= 1 for r in lat["relative_norm"])
        # The crosscoder-scaling method only names latents leaning to the policy, most specific first.
        named = layer["methods"]["crosscoder_scaling"][0]["latents"]
        assert all(lat["relative_norm"][i] > cfg.model_diffing.relative_norm_threshold for i in named)
    assert len(result["kl"]["tokens"]) == 20 and result["kl"]["mean_kl"] > 0


def test_report_has_the_benchmark_table_and_crosscoder_cards(tiny_run):
    run_dir = tiny_run[1]
    page = (run_dir.report / "index.html").read_text()
    assert "Model diffing against the known reward" in page and "crosscoder + latent scaling" in page
    assert "crosscoder latent" in page and (run_dir.analysis / "model_diffing.png").exists()


def test_resumes_from_saved_dictionaries_and_refuses_unknown_layers(tiny_run):
    cfg, run_dir, _ = tiny_run
    saved = sorted(p.name for p in (run_dir.root / "model_diffing").rglob("*") if p.is_file() or p.name.startswith("difference_sae"))
    assert any(name.startswith("crosscoder_seed0") for name in saved)
    assert any(name.startswith("difference_dictionary_seed0") for name in saved)
    with pytest.raises(UserError, match="not cached; cached layers"):
        model_diffing_stage(ModelDiffingConfig(layers=(99,)), run_dir)
