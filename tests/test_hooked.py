"""Conversion to HookedTransformer on random models of every supported architecture."""

import json

import pytest
import torch
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    GPTNeoConfig,
    GPTNeoForCausalLM,
    GPTNeoXConfig,
    GPTNeoXForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    OPTConfig,
    OPTForCausalLM,
)

from rlhf import hooked
from rlhf.errors import UserError
from rlhf.hooked import ConversionMismatch, max_logit_difference, to_hooked
from rlhf.tokenizer import TokenizerConfig, build_tokenizer


def neox(parallel: bool, rotary: float, vocab: int = 97) -> GPTNeoXForCausalLM:
    torch.manual_seed(0)
    return GPTNeoXForCausalLM(GPTNeoXConfig(
        vocab_size=vocab, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=96,
        max_position_embeddings=32, use_parallel_residual=parallel,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": rotary},
    ))


MODELS = {
    "neox-parallel-rotary-0.25": lambda: neox(True, 0.25),
    "neox-sequential-rotary-0.5": lambda: neox(False, 0.5),
    "gpt2-n_inner": lambda: GPT2LMHeadModel(GPT2Config(vocab_size=97, n_embd=64, n_layer=2, n_head=4, n_positions=32, n_inner=96)),
    "gpt-neo-local": lambda: GPTNeoForCausalLM(GPTNeoConfig(
        vocab_size=97, hidden_size=64, num_layers=2, num_heads=4, attention_types=[[["global", "local"], 1]],
        max_position_embeddings=32, window_size=4)),
    "llama-gqa": lambda: LlamaForCausalLM(LlamaConfig(
        vocab_size=97, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        intermediate_size=96, max_position_embeddings=32)),
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_logits_match_hf(name):
    torch.manual_seed(1)
    model = MODELS[name]()
    converted = to_hooked(model)
    tokens = torch.randint(0, 97, (3, 20))
    with torch.no_grad():
        expected = model(input_ids=tokens).logits
    assert torch.allclose(converted(tokens), expected, atol=1e-4)
    assert max_logit_difference(model, converted) < 1e-4


def test_neox_config_carries_rotary_fraction_and_residual_layout():
    converted = to_hooked(neox(False, 0.25))
    assert converted.cfg.rotary_dim == 4  # 0.25 of d_head 16
    assert converted.cfg.parallel_attn_mlp is False
    assert "blocks.1.hook_mlp_out" in converted.hook_dict


def test_local_directory_with_tokenizer(tmp_path):
    tok = build_tokenizer(["the plot was superb ."] * 2, TokenizerConfig(), tmp_path)
    model = neox(True, 0.25, vocab=len(tok))
    model.save_pretrained(tmp_path)
    converted = to_hooked(tmp_path)
    assert converted.tokenizer is not None
    tokens = converted.to_tokens("the plot was superb .")
    assert tokens[0, 0].item() == tok.bos_token_id and tokens.shape[1] == 6  # one BOS, not two


def test_a_wrong_conversion_is_caught(monkeypatch):
    arch = hooked.ARCHITECTURES["GPTNeoXForCausalLM"]

    def broken(model, cfg):
        state = arch.weights(model, cfg)
        state["blocks.0.mlp.W_in"] = state["blocks.0.mlp.W_in"] * 1.5
        return state

    monkeypatch.setitem(hooked.ARCHITECTURES, "GPTNeoXForCausalLM", hooked._Architecture(arch.config, broken))
    with pytest.raises(ConversionMismatch, match="disagrees"):
        to_hooked(neox(True, 0.25))


def test_unsupported_architecture_names_the_supported_ones():
    model = OPTForCausalLM(OPTConfig(vocab_size=50, hidden_size=32, num_hidden_layers=1, ffn_dim=64,
                                     num_attention_heads=2, max_position_embeddings=16, word_embed_proj_dim=32))
    with pytest.raises(UserError, match="unsupported architecture OPTForCausalLM; supported: GPT2LMHeadModel"):
        to_hooked(model)


def test_tokenizer_larger_than_the_vocabulary_is_refused(tmp_path):
    tok = build_tokenizer([" ".join(f"w{i}" for i in range(200))], TokenizerConfig(), tmp_path)
    with pytest.raises(UserError, match="tokenizer has 204 tokens but the model's vocabulary has 97"):
        to_hooked(neox(True, 0.25), tokenizer=tok)


def test_corrupt_checkpoint_is_a_user_error(tmp_path):
    neox(True, 0.25).save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(UserError, match="cannot load a causal LM from directory"):
        to_hooked(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"garbage": True}))
    with pytest.raises(UserError):
        to_hooked(tmp_path)
