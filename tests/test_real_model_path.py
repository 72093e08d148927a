"""The real-model path (hub model + real dataset) exercised offline: a local HF-format
checkpoint with a byte-level BPE tokenizer, and a local IMDb-style JSONL file."""

import pytest

from probes.results import ImplicitRewardResult, ValenceProbeResult
from rlhf.errors import UserError
from rlhf.results import ConversionResult, DPOResult, PolicyResult, PretrainResult
from rlhf.rundir import read_json
from study.config import config_from_dict
from study.pipeline import run_study


def real_config(tmp_path, data, model_dir, **dataset):
    return config_from_dict({
        "name": "real", "runs_dir": str(tmp_path),
        "corpus": {"source": "dataset", "dataset": {"path": str(data), "n_train": 300, "n_val": 40, "n_test": 40, **dataset}},
        "tokenizer": {"source": str(model_dir)}, "pretrain": {"from_model": str(model_dir)},
        "valence_probe": {"examples_per_word": 1},
        "policy": {"max_steps": 3, "batch_size": 16, "n_prompts": 64, "n_eval_prompts": 16, "max_completion_length": 8},
        "policy_beta0": {"enabled": False},
        "dpo": {"max_steps": 3, "batch_size": 8, "n_pairs": 120, "min_reward_gap": 0.0, "max_completion_length": 8},
        "implicit_reward": {"n_triples": 60, "ablation": {"n_prompts": 16, "seeds": [0], "random_sets": 1, "max_new_tokens": 8, "sweep": []},
                            "sequence": {"n_prompts": 60, "max_new_tokens": 8}},
        "hidden_context": {"n_pairs": 200, "contexts_per_word": 1, "kinds": ["mean_variance"]},
        "sft": {"n_samples": 64, "max_completion_length": 8, "n_eval_prompts": 16},
        "model_diffing": {"seeds": [0], "top_k": 3, "n_prompts": 8, "sampling_seeds": [0], "max_new_tokens": 8,
                          "cards": 1, "crosscoder": {"training_tokens": 20000, "batch_size": 512},
                          "methods": {"kl": {"texts": 20}, "activation_difference_lens": {"texts": 20, "steering_alphas": [1.0]},
                                      "stagewise_sae": {"tokens": 20000}, "logit_amplification": {"alphas": [2.0]}}},
        "reward_attribution": {"n_prompts": 16, "seeds": [0], "ks": [1, 3, 10], "random_sets": 1, "max_new_tokens": 8},
        "digits": {"enabled": False},
    })


def test_pretrained_model_and_dataset_run_through_the_study(tmp_path, local_hub):
    data, model_dir = local_hub
    run_dir = run_study(real_config(tmp_path, data, model_dir), log=lambda _: None)
    test = (run_dir.corpus / "test.txt").read_text().splitlines()
    assert len(test) == 40 and all("<br" not in t and len(t.split()) <= 48 for t in test)
    p = PretrainResult.load(run_dir)
    assert p.steps == 0 and p.from_model == str(model_dir) and p.entropy_floor is None
    assert 4.0 < p.test_loss < 7.0  # a random model over 320 tokens: about ln(320) = 5.8
    assert ConversionResult.load(run_dir).models["base"].max_abs_logit_diff < 1e-4
    policy = PolicyResult.load(run_dir)
    assert policy.steps == 3 and (run_dir.policy / "tokenizer.json").exists()
    assert DPOResult.load(run_dir).steps == 3
    probes = read_json(ImplicitRewardResult.path(run_dir))  # lexicon swaps in the dataset's own sentences
    assert probes["linear"]["policy_sae"]["notes"][0].startswith("60 triples")
    assert probes["sequence"]["n_completions"] == 120
    v = read_json(ValenceProbeResult.path(run_dir))
    assert v["trained"]["n_held_out_words"] == 360 and v["summary"]["passes"] is False
    page = (run_dir.report / "index.html").read_text()
    assert str(model_dir) in page and "entropy floor" not in page.split("Base model pretraining")[1].split("<h2")[0]


def test_dataset_errors_are_clear(tmp_path, local_hub):
    data, model_dir = local_hub
    with pytest.raises(UserError, match="has no column 'review'; columns: text, label"):
        run_study(real_config(tmp_path, data, model_dir, text_column="review"), log=lambda _: None)
    with pytest.raises(UserError, match="does not exist"):
        run_study(real_config(tmp_path, tmp_path / "absent.jsonl", model_dir), log=lambda _: None)


def test_from_model_needs_the_models_tokenizer():
    with pytest.raises(UserError, match="go together"):
        config_from_dict({"pretrain": {"from_model": "some/model"}})
