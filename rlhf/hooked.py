"""Hugging Face causal LM -> TransformerLens HookedTransformer, with a logit check.

``HookedTransformer.from_pretrained`` accepts only official model names and fetches
their config from the hub, so it cannot load the organism's models or a local
fine-tune. We build the ``HookedTransformerConfig`` from the HF config by hand (TL's
own config reader mis-sizes GPT-2's MLP and misses transformers 5's rotary fraction)
and reuse TransformerLens's weight converters. Weights are loaded unprocessed (no
layer-norm folding or centring), so hook activations are those of the HF model.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from tqdm.auto import tqdm
from transformer_lens import HookedTransformer, HookedTransformerConfig
from transformer_lens.pretrained.weight_conversions import (
    convert_gpt2_weights,
    convert_llama_weights,
    convert_neo_weights,
    convert_neox_weights,
)
from transformers import AutoModelForCausalLM, PreTrainedModel, PreTrainedTokenizerBase

from rlhf.config import ConversionConfig  # noqa: F401  (re-exported: callers import it from here)
from rlhf.errors import UserError
from rlhf.results import ConversionResult, ConvertedModel
from rlhf.rundir import RunDir, read_json
from rlhf.tokenizer import load_tokenizer


def _rope(config: Any) -> dict[str, float]:
    """transformers 5 keeps rotary settings in ``rope_parameters``; older configs as attributes."""
    params = dict(getattr(config, "rope_parameters", None) or {})
    return {
        "theta": float(params.get("rope_theta", getattr(config, "rope_theta", 10000.0))),
        "fraction": float(params.get("partial_rotary_factor", getattr(config, "rotary_pct", 1.0))),
    }


def _neox(c: Any) -> dict[str, Any]:
    d_head = c.hidden_size // c.num_attention_heads
    rope = _rope(c)
    return {
        "d_model": c.hidden_size, "d_head": d_head, "n_heads": c.num_attention_heads,
        "d_mlp": c.intermediate_size, "n_layers": c.num_hidden_layers, "n_ctx": c.max_position_embeddings,
        "eps": c.layer_norm_eps, "d_vocab": c.vocab_size, "act_fn": c.hidden_act,
        "parallel_attn_mlp": c.use_parallel_residual, "positional_embedding_type": "rotary",
        "rotary_dim": round(rope["fraction"] * d_head), "rotary_base": rope["theta"],
        "rotary_adjacent_pairs": False, "normalization_type": "LN",
    }


def _gpt2(c: Any) -> dict[str, Any]:
    return {
        "d_model": c.n_embd, "d_head": c.n_embd // c.n_head, "n_heads": c.n_head,
        "d_mlp": c.n_inner or 4 * c.n_embd, "n_layers": c.n_layer, "n_ctx": c.n_positions,
        "eps": c.layer_norm_epsilon, "d_vocab": c.vocab_size, "act_fn": c.activation_function,
        "use_attn_scale": c.scale_attn_weights, "scale_attn_by_inverse_layer_idx": c.scale_attn_by_inverse_layer_idx,
        "normalization_type": "LN",
    }


def _neo(c: Any) -> dict[str, Any]:
    return {
        "d_model": c.hidden_size, "d_head": c.hidden_size // c.num_heads, "n_heads": c.num_heads,
        "d_mlp": c.intermediate_size or 4 * c.hidden_size, "n_layers": c.num_layers,
        "n_ctx": c.max_position_embeddings, "eps": c.layer_norm_epsilon, "d_vocab": c.vocab_size,
        "act_fn": c.activation_function, "attn_types": c.attention_layers, "use_attn_scale": False,
        "use_local_attn": True, "window_size": c.window_size, "normalization_type": "LN",
    }


def _llama(c: Any) -> dict[str, Any]:
    d_head = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    kv = c.num_key_value_heads
    return {
        "d_model": c.hidden_size, "d_head": d_head, "n_heads": c.num_attention_heads,
        "d_mlp": c.intermediate_size, "n_layers": c.num_hidden_layers, "n_ctx": c.max_position_embeddings,
        "eps": c.rms_norm_eps, "d_vocab": c.vocab_size, "act_fn": c.hidden_act,
        "n_key_value_heads": kv if kv != c.num_attention_heads else None,
        "normalization_type": "RMS", "final_rms": True, "gated_mlp": True,
        "positional_embedding_type": "rotary", "rotary_adjacent_pairs": False,
        "rotary_dim": d_head, "rotary_base": _rope(c)["theta"],
    }


@dataclass(frozen=True)
class _Architecture:
    config: Callable[[Any], dict[str, Any]]
    weights: Callable[[Any, HookedTransformerConfig], dict[str, torch.Tensor]]


ARCHITECTURES: dict[str, _Architecture] = {
    "GPTNeoXForCausalLM": _Architecture(_neox, convert_neox_weights),
    "GPT2LMHeadModel": _Architecture(_gpt2, convert_gpt2_weights),
    "GPTNeoForCausalLM": _Architecture(_neo, convert_neo_weights),
    "LlamaForCausalLM": _Architecture(_llama, convert_llama_weights),
}


class ConversionMismatch(UserError):
    """The converted model's logits differ from the HF model's by more than the tolerance."""


def load_hf(model_or_path: PreTrainedModel | str | Path, dtype: torch.dtype = torch.float32) -> PreTrainedModel:
    """An HF causal LM from an object, a local directory, or a hub id."""
    if isinstance(model_or_path, PreTrainedModel):
        return model_or_path
    source = str(model_or_path)
    local = Path(source).is_dir()
    if not local and (Path(source).exists() or source.startswith((".", "/"))):
        raise UserError(f"{source} is not a model directory")
    try:
        model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, local_files_only=local)
    except (OSError, ValueError, RuntimeError, KeyError, SafetensorError) as err:
        where = "directory" if local else "hub id (is the hub reachable? HF_HUB_OFFLINE set?)"
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"cannot load a causal LM from {where} {source}: {first}") from err
    # AutoModelForCausalLM loads a classifier's body under a freshly initialised LM head without
    # a word; such a checkpoint is refused rather than converted into a model nobody trained.
    saved_as = [a for a in getattr(model.config, "architectures", None) or [] if not a.endswith(("ForCausalLM", "LMHeadModel"))]
    if saved_as:
        raise UserError(f"{source} is a {saved_as[0]} checkpoint, not a causal language model; "
                        "only causal LMs (…ForCausalLM, …LMHeadModel) convert")
    return model


def architecture_of(model: PreTrainedModel) -> str:
    names = list(getattr(model.config, "architectures", None) or []) + [type(model).__name__]
    for name in names:
        if name in ARCHITECTURES:
            return name
    raise UserError(
        f"unsupported architecture {names[0]}; supported: {', '.join(sorted(ARCHITECTURES))}"
    )


def hooked_config(model: PreTrainedModel, device: str = "cpu") -> HookedTransformerConfig:
    arch = architecture_of(model)
    cfg = ARCHITECTURES[arch].config(model.config)
    return HookedTransformerConfig(
        **cfg, original_architecture=arch, device=device, dtype=next(model.parameters()).dtype,
        tokenizer_prepends_bos=True,
    )


@torch.no_grad()
def max_logit_difference(hf: PreTrainedModel, hooked: HookedTransformer, seed: int = 0) -> float:
    """Largest |logit difference| between the two models on a random probe batch."""
    gen = torch.Generator().manual_seed(seed)
    seq = min(16, hooked.cfg.n_ctx)
    tokens = torch.randint(0, hooked.cfg.d_vocab, (2, seq), generator=gen).to(hooked.cfg.device)
    hf.eval()
    expected = hf(input_ids=tokens.to(hf.device)).logits.float().cpu()
    got = hooked(tokens).float().cpu()
    return float((expected - got).abs().max())


def to_hooked(
    model_or_path: PreTrainedModel | str | Path,
    tokenizer: PreTrainedTokenizerBase | str | Path | None = None,
    device: str = "cpu",
    atol: float = 1e-4,
    dtype: torch.dtype = torch.float32,
) -> HookedTransformer:
    """Convert an HF causal LM (object, local directory or hub id) to a HookedTransformer.

    The tokenizer defaults to the one saved beside a local model. The converted model's
    logits are compared with the HF model's on a probe batch; a difference above ``atol``
    raises, since every later analysis would silently read a different model.
    """
    if not 0 < atol < float("inf"):
        raise UserError(f"atol must be a positive number, got {atol}")
    hf = load_hf(model_or_path, dtype)
    cfg = hooked_config(hf, device)
    if tokenizer is None and not isinstance(model_or_path, PreTrainedModel) and Path(str(model_or_path)).is_dir():
        if (Path(str(model_or_path)) / "tokenizer.json").exists():
            tokenizer = Path(str(model_or_path))
    if isinstance(tokenizer, (str, Path)):
        tokenizer = load_tokenizer(tokenizer)
    if tokenizer is not None and len(tokenizer) > cfg.d_vocab:
        raise UserError(
            f"tokenizer has {len(tokenizer)} tokens but the model's vocabulary has {cfg.d_vocab}: "
            "they do not belong together"
        )
    state = ARCHITECTURES[cfg.original_architecture].weights(hf, cfg)
    hooked = HookedTransformer(cfg, tokenizer=tokenizer, move_to_device=True)
    hooked.load_and_process_state_dict(
        state, fold_ln=False, center_writing_weights=False, center_unembed=False, fold_value_biases=False
    )
    hooked.eval()
    diff = max_logit_difference(hf, hooked)
    if not diff <= atol:
        raise ConversionMismatch(
            f"converted {cfg.original_architecture} disagrees with the HF model: max |logit diff| {diff:.2e} > atol "
            f"{atol:.0e} (float32 conversions agree to about 1e-6: a smaller atol cannot pass, a larger gap is a bug)"
        )
    return hooked


def causal_models(run_dir: RunDir) -> dict[str, Path]:
    """Every causal LM the study holds (base, policies, DPO, SFT, adopted ones), by name; reward
    models (sequence classifiers) and the tokenizer are not language models and are left out."""
    out = {}
    for path in sorted(run_dir.models.glob("*/config.json")):
        architectures = read_json(path).get("architectures") or []
        if any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in architectures):
            out[path.parent.name] = path.parent
    return dict(sorted(out.items(), key=lambda item: (item[0] not in ("base", "policy"), item[0] != "base", item[0])))


def conversion_stage(cfg: ConversionConfig, run_dir: RunDir) -> ConversionResult:
    """Stage: convert every causal LM of the study and record the logit agreement."""
    models = causal_models(run_dir)
    if not models:
        raise UserError(f"no model to convert in {run_dir.models}")
    results: dict[str, ConvertedModel] = {}
    for name, path in tqdm(models.items(), desc="conversion", unit="model"):
        started = time.time()
        hf = load_hf(path)
        hooked = to_hooked(hf, tokenizer=path, atol=cfg.atol)
        results[name] = ConvertedModel(
            architecture=hooked.cfg.original_architecture,
            max_abs_logit_diff=max_logit_difference(hf, hooked, seed=1),
            n_layers=hooked.cfg.n_layers, d_model=hooked.cfg.d_model, d_vocab=hooked.cfg.d_vocab,
            seconds=time.time() - started,
        )
    result = ConversionResult(atol=cfg.atol, models=results)
    result.save(run_dir)
    return result
