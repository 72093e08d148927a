"""Conversion to TransformerBridge on tiny random models of the architectures the suite has met."""

import json
import warnings

import pytest
import torch
import transformers as hf
from transformers import GPTNeoXConfig, GPTNeoXForCausalLM, PreTrainedModel

from analysis.activations import cache_hooks, check_hook_names, module_cache
from rlhf import hooked
from rlhf.errors import UserError
from rlhf.hooked import ConversionMismatch, max_logit_difference, to_hooked
from rlhf.tokenizer import TokenizerConfig, build_tokenizer, save_tokenizer

VOCAB = 97
SMALL = {"vocab_size": VOCAB, "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
         "intermediate_size": 96, "max_position_embeddings": 32}
GQA = {**SMALL, "num_key_value_heads": 2}


def neox(parallel: bool, rotary: float, vocab: int = VOCAB) -> GPTNeoXForCausalLM:
    torch.manual_seed(0)
    return GPTNeoXForCausalLM(GPTNeoXConfig(
        **{**SMALL, "vocab_size": vocab}, use_parallel_residual=parallel,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": rotary},
    ))


MODELS = {
    "neox-parallel-rotary-0.25": lambda: neox(True, 0.25),
    "neox-sequential-rotary-0.5": lambda: neox(False, 0.5),
    "gpt2-n_inner": lambda: hf.GPT2LMHeadModel(hf.GPT2Config(vocab_size=VOCAB, n_embd=64, n_layer=2, n_head=4,
                                                             n_positions=32, n_inner=96)),
    "gpt-neo-local": lambda: hf.GPTNeoForCausalLM(hf.GPTNeoConfig(
        vocab_size=VOCAB, hidden_size=64, num_layers=2, num_heads=4, attention_types=[[["global", "local"], 1]],
        max_position_embeddings=32, window_size=4)),
    "llama-gqa": lambda: hf.LlamaForCausalLM(hf.LlamaConfig(**GQA)),
    "mistral-sliding": lambda: hf.MistralForCausalLM(hf.MistralConfig(**GQA, sliding_window=8)),
    "qwen3": lambda: hf.Qwen3ForCausalLM(hf.Qwen3Config(**GQA, head_dim=16)),
    "phi3": lambda: hf.Phi3ForCausalLM(hf.Phi3Config(**SMALL, pad_token_id=0)),
    "gemma2-softcap": lambda: hf.Gemma2ForCausalLM(hf.Gemma2Config(**GQA, head_dim=16, sliding_window=8)),
    "gemma3-text": lambda: hf.Gemma3ForCausalLM(hf.Gemma3TextConfig(**GQA, head_dim=16, sliding_window=8)),
}


def saved(model: PreTrainedModel, tokenizer, directory):
    model.save_pretrained(directory)
    save_tokenizer(tokenizer, directory)
    return directory


@pytest.mark.parametrize("name", sorted(MODELS))
def test_logits_match_hf(name, word_tokenizer, tmp_path):
    torch.manual_seed(1)
    model = MODELS[name]().eval()
    model.set_attn_implementation("eager")  # the bridge's advice; both sides run the same attention
    converted = to_hooked(saved(model, word_tokenizer, tmp_path))
    assert converted.cfg.architecture == type(model).__name__
    tokens = torch.randint(0, VOCAB, (3, 20))
    with torch.no_grad():
        diff = float((converted(tokens) - model(input_ids=tokens).logits).abs().max())
    assert diff < 1e-4, diff
    assert max_logit_difference(model, converted) < 1e-4
    # Compatibility mode's hook names, with HookedTransformer's meaning.
    _, cache = converted.run_with_cache(tokens, names_filter=["blocks.1.hook_resid_pre", "blocks.1.hook_attn_out",
                                                              "blocks.1.hook_mlp_out", "blocks.1.hook_resid_post"])
    written = cache["blocks.1.hook_attn_out"] + cache["blocks.1.hook_mlp_out"]
    assert torch.allclose(cache["blocks.1.hook_resid_post"] - cache["blocks.1.hook_resid_pre"], written, atol=1e-4)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_final_norm_gain_is_the_one_the_model_applies(name, word_tokenizer):
    """The logit lens and the direct-path gradients scale by the final norm's gain: ``w`` for most
    norms, ``1 + w`` for Gemma's. With random norm weights, the norm of a centred direction of rms one
    is that direction times the gain (plus the bias the zero input gives)."""
    torch.manual_seed(2)
    model = MODELS[name]().eval()
    with torch.no_grad():
        for param_name, p in model.named_parameters():
            if "norm" in param_name or ".ln" in param_name:
                p.add_(0.3 * torch.randn_like(p))
    converted = to_hooked(model, tokenizer=word_tokenizer)
    x = torch.randn(5, converted.cfg.d_model)
    x = x - x.mean(-1, keepdim=True)
    x = x / x.pow(2).mean(-1, keepdim=True).sqrt()
    with torch.no_grad():
        through = converted.ln_final(x) - converted.ln_final(torch.zeros_like(x[:1]))
    assert torch.allclose(through, x * hooked.final_norm_gain(converted), atol=1e-4)


def test_conversion_and_what_reads_it_raise_no_deprecation_warning(word_tokenizer):
    """HookedTransformer's constructor warned that it goes in TransformerLens 4; the bridge path
    (conversion, caching, hooks, sampling with the cache) must say nothing of the kind."""
    from analysis.interventions import sample_tokens

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = to_hooked(neox(True, 0.25, vocab=len(word_tokenizer)), tokenizer=word_tokenizer)
        tokens = model.to_tokens("the plot was superb .")
        model.run_with_cache(tokens, names_filter=["blocks.0.hook_mlp_out", "blocks.1.hook_resid_post"])
        model.run_with_hooks(tokens, fwd_hooks=[("blocks.0.hook_mlp_out", lambda x, hook: 0 * x)])
        sample_tokens([model], ["the plot", "the plot was"], max_new_tokens=3, seed=0)
    deprecations = [f"{w.filename}:{w.lineno}: {w.message}" for w in caught
                    if issubclass(w.category, DeprecationWarning | FutureWarning)]
    assert not deprecations, deprecations


def test_tied_embeddings_are_two_tensors_in_the_converted_model(word_tokenizer):
    model = MODELS["gpt2-n_inner"]()
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight
    state = to_hooked(model, tokenizer=word_tokenizer).state_dict()
    assert state["unembed.weight"].data_ptr() != state["embed.weight"].data_ptr()
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight, "the caller's model is untouched"


def test_a_hook_that_never_fires_is_refused_by_name(word_tokenizer):
    model = to_hooked(neox(True, 0.25), tokenizer=word_tokenizer)
    check_hook_names(model, ["hook_embed", "blocks.1.hook_mlp_out"])
    with pytest.raises(UserError, match="hook_pos_embed never fire in GPTNeoXForCausalLM"):
        check_hook_names(model, ["hook_embed", "hook_pos_embed"])


def test_local_directory_with_tokenizer(word_tokenizer, tmp_path):
    converted = to_hooked(saved(neox(True, 0.25, vocab=len(word_tokenizer)), word_tokenizer, tmp_path))
    assert converted.tokenizer("the plot")["input_ids"] == word_tokenizer("the plot")["input_ids"]
    tokens = converted.to_tokens("the plot was superb .")
    assert tokens[0, 0].item() == word_tokenizer.bos_token_id and tokens.shape[1] == 6  # one BOS, not two


def test_a_wrong_conversion_is_caught(word_tokenizer, monkeypatch):
    """Weight processing (layer-norm folding, centring) shifts the logits: the check sees it."""
    compatibility = hooked.TransformerBridge.enable_compatibility_mode
    monkeypatch.setattr(hooked.TransformerBridge, "enable_compatibility_mode",
                        lambda self, **_: compatibility(self, disable_warnings=True))
    with pytest.raises(ConversionMismatch, match="converted GPTNeoXForCausalLM disagrees"):
        to_hooked(neox(True, 0.25), tokenizer=word_tokenizer)


def test_unsupported_architecture_names_itself_and_the_list(word_tokenizer):
    model = hf.BioGptForCausalLM(hf.BioGptConfig(vocab_size=50, hidden_size=32, num_hidden_layers=1,
                                                 num_attention_heads=2, intermediate_size=64, max_position_embeddings=16))
    with pytest.raises(UserError, match="no adapter for the architecture BioGptForCausalLM; list the supported ones with "
                                        "python -c .*SUPPORTED_ARCHITECTURES") as err:
        to_hooked(model, tokenizer=word_tokenizer)
    assert "\n" not in str(err.value)


def test_tokenizer_larger_than_the_vocabulary_is_refused(tmp_path):
    tok = build_tokenizer([" ".join(f"w{i}" for i in range(200))], TokenizerConfig(), tmp_path)
    with pytest.raises(UserError, match="tokenizer has 204 tokens but the model's vocabulary has 97") as err:
        to_hooked(saved(neox(True, 0.25), tok, tmp_path))
    assert "\n" not in str(err.value)


def test_a_model_object_needs_its_tokenizer():
    with pytest.raises(UserError, match="pass tokenizer="):
        to_hooked(neox(True, 0.25))


def test_corrupt_checkpoint_is_a_user_error(tmp_path):
    neox(True, 0.25).save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(UserError, match="cannot load a causal LM from directory"):
        to_hooked(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"garbage": True}))
    with pytest.raises(UserError):
        to_hooked(tmp_path)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_caching_through_the_plain_view_reads_what_the_bridge_hooks_read(name, word_tokenizer):
    """The activations stage reads hooks that are an HF module's output through PyTorch hooks on the plain HF
    model (sharing the bridge's weights); every other hook, and a bridge with a hook attached, through the
    bridge. Either way the activations are the bridge's own."""
    torch.manual_seed(3)
    converted = to_hooked(MODELS[name]().eval(), tokenizer=word_tokenizer)
    plain = hooked.plain_view(converted)
    assert plain is not None
    weight = converted.blocks[1].mlp.original_component
    assert any(p.data_ptr() == q.data_ptr() for p in plain.parameters() for q in weight.parameters())  # shared, not copied
    tokens = torch.randint(0, VOCAB, (3, 20))
    with torch.no_grad():
        assert float((plain(input_ids=tokens).logits - converted(tokens)).abs().max()) < 1e-4
    outputs = ["blocks.0.hook_mlp_out", "blocks.1.hook_mlp_out", "blocks.1.hook_resid_post"]
    assert all(hooked.module_of_hook(converted, h) for h in outputs)
    assert hooked.module_of_hook(converted, "blocks.1.hook_resid_pre") is None
    for hooks in (outputs, [*outputs, "blocks.1.hook_resid_pre"]):
        expected = cache_hooks(converted, tokens, hooks)
        with module_cache(converted, hooks) as run:
            got = run(tokens)
        for h in hooks:
            assert torch.allclose(got[h], expected[h], atol=1e-5), (h, float((got[h] - expected[h]).abs().max()))
    # Through the bridge where a hook is attached: what it does to the activations counts.
    with converted.hooks(fwd_hooks=[("blocks.0.hook_mlp_out", lambda x, hook: 2 * x)]):
        doubled = cache_hooks(converted, tokens, outputs[:1])["blocks.0.hook_mlp_out"]
        with module_cache(converted, outputs[:1]) as run:
            assert torch.equal(run(tokens)["blocks.0.hook_mlp_out"], doubled)
