import pytest
import torch

from analysis.divergence import component_of, divergence_report, layer_divergence
from rlhf.errors import UserError
from rlhf.hooked import to_hooked
from tests.test_hooked import neox


def test_identical_models_do_not_diverge(word_tokenizer):
    model = neox(True, 0.25)
    assert layer_divergence(model, model) == {0: 0.0, 1: 0.0}
    hooked = to_hooked(model, tokenizer=word_tokenizer)
    assert set(layer_divergence(hooked, hooked).values()) == {0.0}


def test_one_tensor_change_equals_its_frobenius_norm(word_tokenizer):
    base, policy = neox(True, 0.25), neox(True, 0.25)
    delta = torch.zeros_like(policy.gpt_neox.layers[1].mlp.dense_h_to_4h.weight)
    delta[0, :3] = torch.tensor([3.0, 4.0, 12.0])  # Frobenius norm 13
    with torch.no_grad():
        policy.gpt_neox.layers[1].mlp.dense_h_to_4h.weight += delta
    assert layer_divergence(base, policy) == pytest.approx({0: 0.0, 1: 13.0}, abs=1e-5)
    report = divergence_report(base, policy)
    assert report.layers[1]["mlp"].divergence == pytest.approx(13.0, abs=1e-5)
    assert report.layers[1]["attention"].divergence == 0.0
    assert report.ranking[0] == 1
    hooked = layer_divergence(to_hooked(base, tokenizer=word_tokenizer), to_hooked(policy, tokenizer=word_tokenizer))
    assert hooked[0] == 0.0 and hooked[1] == pytest.approx(13.0, abs=1e-4)


def test_components_are_named_for_hf_and_transformerlens():
    assert component_of("gpt_neox.layers.0.post_attention_layernorm.weight") == "layer_norm"
    assert component_of("gpt_neox.layers.0.attention.dense.weight") == "attention"
    assert component_of("blocks.0.ln2.w") == "layer_norm"
    assert component_of("blocks.0.attn.W_Q") == "attention"
    assert component_of("transformer.h.0.mlp.c_fc.weight") == "mlp"


def test_mismatched_models_name_the_parameter(word_tokenizer):
    with pytest.raises(UserError, match="differ in architecture: parameter"):
        layer_divergence(neox(True, 0.25), to_hooked(neox(True, 0.25), tokenizer=word_tokenizer))
    with pytest.raises(UserError, match=r"differ in shape at gpt_neox.embed_in.weight: \(97, 64\) vs \(50, 64\)"):
        layer_divergence(neox(True, 0.25), neox(True, 0.25, vocab=50))


def test_study_divergence_result(tiny_run):
    from analysis.results import DivergenceResult

    _, run_dir, _ = tiny_run
    d = DivergenceResult.load(run_dir)
    assert d.chosen_layers == tuple(sorted(d.ranking[: d.top_n])) and len(d.chosen_layers) == d.top_n
    assert sorted(d.ranking) == sorted(d.layers) == sorted(d.total)
    assert [d.total[layer] for layer in d.ranking] == sorted(d.total.values(), reverse=True)
    for layer, comps in d.layers.items():
        assert d.total[layer] == pytest.approx(sum(row.divergence for row in comps.values()))
