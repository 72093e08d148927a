"""Hugging Face causal LM -> TransformerLens ``TransformerBridge`` in compatibility mode, with a logit check.

The bridge wraps the HF model's own modules, and TransformerLens's adapter for the architecture
names them, so every architecture TransformerLens supports converts without a table here.
Compatibility mode adds HookedTransformer's hook names (``blocks.{l}.hook_mlp_out`` ...); with
``no_processing`` the weights stay unfolded and uncentred, so hook activations are the HF model's.
Both sides run eager attention, as the bridge's documentation advises for hooks on the pattern.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

import torch
from jaxtyping import Float, Int
from safetensors import SafetensorError
from torch import Tensor
from tqdm.auto import tqdm
from transformer_lens.factories.architecture_adapter_factory import SUPPORTED_ARCHITECTURES
from transformer_lens.model_bridge import TransformerBridge
from transformers import AutoModelForCausalLM, PreTrainedModel, PreTrainedTokenizerBase

from rlhf.config import ConversionConfig  # noqa: F401  (re-exported: callers import it from here)
from rlhf.errors import UserError
from rlhf.results import ConversionResult, ConvertedModel
from rlhf.rundir import RunDir, read_json
from rlhf.tokenizer import load_tokenizer

HookedModel = TransformerBridge  # a converted model, as every analysis reads it
LIST_SUPPORTED = ("python -c 'from transformer_lens.factories.architecture_adapter_factory import "
                  "SUPPORTED_ARCHITECTURES as s; print(*sorted(s))'")


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


def _with_its_tokenizer(model_or_path: PreTrainedModel | str | Path,
                        tokenizer: PreTrainedTokenizerBase | str | Path | None) -> PreTrainedTokenizerBase:
    """The tokenizer given, or the one saved beside a local model, or a hub model's own."""
    if isinstance(tokenizer, PreTrainedTokenizerBase):
        return tokenizer
    if tokenizer is not None:
        return load_tokenizer(tokenizer)
    if isinstance(model_or_path, PreTrainedModel):
        raise UserError("a model object converts with its tokenizer: pass tokenizer= (a directory or a loaded tokenizer)")
    return load_tokenizer(model_or_path, hub=True)


def _used_as_is(tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    """A copy of ``tokenizer`` that the bridge keeps: TransformerLens reloads a tokenizer whose
    ``init_kwargs`` lack ``add_bos_token`` from its ``name_or_path`` with BOS forced on (a KeyError
    for one built in memory), and the converted model must read text as its HF side tokenizes it."""
    own = copy.copy(tokenizer)
    own.init_kwargs = {**tokenizer.init_kwargs, "name_or_path": tokenizer.name_or_path, "add_bos_token": True}
    return own


def _check(hf: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> None:
    """One-line errors for what cannot convert: an architecture with no adapter, a foreign tokenizer."""
    architecture = type(hf).__name__
    if architecture not in SUPPORTED_ARCHITECTURES:
        raise UserError(f"TransformerLens has no adapter for the architecture {architecture}; "
                        f"list the supported ones with {LIST_SUPPORTED}")
    vocab = hf.get_input_embeddings().weight.shape[0]
    if len(tokenizer) > vocab:
        raise UserError(f"tokenizer has {len(tokenizer)} tokens but the model's vocabulary has {vocab}: "
                        "they do not belong together")


def _bridge(hf: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, device: str) -> HookedModel:
    """``hf`` (checked, eager attention) as a TransformerBridge in compatibility mode, unprocessed.
    The bridge takes ``hf`` over: it rewires its module tree in place."""
    output = hf.get_output_embeddings()
    if output.weight is hf.get_input_embeddings().weight:
        # Workaround: the bridge's state_dict names the live HF tensors, so tied embeddings are one
        # tensor under embed. and unembed., and swapping the unembedding (analysis.patching) would
        # swap the embedding too. HookedTransformer held two copies; so does the converted model.
        output.weight = torch.nn.Parameter(output.weight.detach().clone())
        hf.config.tie_word_embeddings = False
    model = TransformerBridge.boot_transformers(
        "local",  # only a label: with hf_model and tokenizer given, nothing is fetched
        hf_model=hf.to(device), tokenizer=_used_as_is(tokenizer), device=device, dtype=next(hf.parameters()).dtype,
        # a model built from a config in memory has no ``architectures``, and TransformerLens's
        # fallback from the model type misses some (gemma3_text)
        hf_config_overrides={"architectures": [type(hf).__name__]},
    )
    model.enable_compatibility_mode(no_processing=True, disable_warnings=True)
    # Workaround: the GPT-NeoX adapter makes ``to_tokens`` strip the BOS that the suite's models were
    # trained with (HookedTransformer kept it).
    model.cfg.default_prepend_bos = True
    return model.eval()


def probe_tokens(vocab: int, seed: int) -> Int[Tensor, "2 16"]:
    """Random tokens on which two readings of a model are compared (conversion, caching)."""
    return torch.randint(0, vocab, (2, 16), generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def _logits(model: PreTrainedModel | HookedModel, tokens: Int[Tensor, "batch pos"]) -> Float[Tensor, "batch pos vocab"]:
    """Float32 logits on the CPU, of either side."""
    if isinstance(model, TransformerBridge):
        return model(tokens.to(model.cfg.device)).float().cpu()
    return model.eval()(input_ids=tokens.to(model.device)).logits.float().cpu()


def max_logit_difference(hf: PreTrainedModel, hooked: HookedModel, seed: int = 0) -> float:
    """Largest |logit difference| between the two models on a random probe batch."""
    tokens = probe_tokens(hooked.cfg.d_vocab, seed)
    return float((_logits(hf, tokens) - _logits(hooked, tokens)).abs().max())


def to_hooked(
    model_or_path: PreTrainedModel | str | Path,
    tokenizer: PreTrainedTokenizerBase | str | Path | None = None,
    device: str = "cpu",
    atol: float = 1e-4,
    dtype: torch.dtype = torch.float32,
) -> HookedModel:
    """Convert an HF causal LM (object, local directory or hub id) to a TransformerBridge.

    The tokenizer defaults to the one saved beside a local model (or a hub model's own); a model
    object needs one. The converted model's logits are compared with the HF model's (eager
    attention on both sides) on a probe batch; a difference above ``atol`` raises, since every
    later analysis would silently read a different model. A model object is copied, not taken over.
    """
    if not 0 < atol < float("inf"):
        raise UserError(f"atol must be a positive number, got {atol}")
    hf = load_hf(model_or_path, dtype)
    tokenizer = _with_its_tokenizer(model_or_path, tokenizer)
    _check(hf, tokenizer)
    hf = copy.deepcopy(hf) if hf is model_or_path else hf
    hf.set_attn_implementation("eager")
    tokens = probe_tokens(hf.get_input_embeddings().weight.shape[0], 0)
    expected = _logits(hf, tokens)  # before the bridge rewires the modules
    hooked = _bridge(hf, tokenizer, device)
    diff = float((expected - _logits(hooked, tokens)).abs().max())
    if not diff <= atol:
        raise ConversionMismatch(
            f"converted {hooked.cfg.architecture} disagrees with the HF model: max |logit diff| {diff:.2e} > atol "
            f"{atol:.0e} (the bridge runs the HF modules themselves: in float32 they agree to 1e-6 or better, so a gap is a bug)"
        )
    return hooked


@torch.no_grad()
def final_norm_gain(model: HookedModel) -> Float[Tensor, " d_model"]:
    """The final norm's per-coordinate gain as the model applies it: ``w`` for LayerNorm and most
    RMSNorms, ``1 + w`` for Gemma's, read off the module itself rather than a table of architectures."""
    d = model.cfg.d_model
    signs = torch.tensor([(-1.0) ** i for i in range(d)])
    if d % 2:
        signs[-1] = 0.0
    # Two probes of mean zero (centring leaves them as they are) and rms one: the norm returns
    # probe * gain (+ its bias, which the zero input gives alone); each coordinate is nonzero in one.
    probes = torch.stack([signs, signs.roll(1)])
    probes = probes / probes.pow(2).mean(-1, keepdim=True).sqrt()
    device, dtype = model.W_U.device, model.W_U.dtype
    zero = torch.zeros(1, d, device=device, dtype=dtype)
    out = (model.ln_final(probes.to(device, dtype)) - model.ln_final(zero)).float().cpu()
    first = probes[0] != 0
    gain = torch.where(first, out[0], out[1]) / torch.where(first, probes[0], probes[1])
    return gain.to(device)


def _unwrapped(name: str) -> str:
    """A module or tensor's name in the plain HF model: the bridge nests each wrapped module under
    ``_original_component``."""
    return ".".join(part for part in name.split(".") if part != "_original_component")


def plain_view(model: HookedModel) -> PreTrainedModel | None:
    """The HF model the bridge wraps, rebuilt without the bridge's components and sharing its weights (no
    copy), or None where some weight of the plain model has no counterpart in the bridge.

    Written because the bridge runs its own attention and norm code around the HF modules: on the demo
    its forward pass is about a tenth slower than HF's, which is what caching activations pays for."""
    wrapped = model.original_model
    # Every name a tensor has (a wrapped module is also reachable under the bridge's own names).
    tensors = {_unwrapped(n): t for n, t in [*wrapped.named_parameters(remove_duplicate=False),
                                              *wrapped.named_buffers(remove_duplicate=False)]}
    with torch.device("meta"):
        plain = AutoModelForCausalLM.from_config(wrapped.config, attn_implementation="eager")
    for name, tensor in [*plain.named_parameters(), *plain.named_buffers()]:
        owner, _, leaf = name.rpartition(".")
        module = plain.get_submodule(owner)
        if name not in tensors or tensors[name].shape != tensor.shape:
            return None
        store = module._parameters if leaf in module._parameters else module._buffers  # noqa: SLF001
        store[leaf] = tensors[name] if leaf in module._buffers else torch.nn.Parameter(tensors[name], requires_grad=False)  # noqa: SLF001
    return plain.eval()


def module_of_hook(model: HookedModel, hook: str) -> str | None:
    """The name, in ``plain_view(model)``, of the HF module whose output ``hook`` sees (``hook_out`` of a
    component wrapping one: ``blocks.{l}.hook_mlp_out`` -> the layer's MLP); None for any other hook."""
    point = model.hook_dict[hook]
    names = {id(m): n for n, m in model.original_model.named_modules()}
    for module in model.modules():
        if getattr(module, "hook_out", None) is point and id(getattr(module, "original_component", None)) in names:
            return _unwrapped(names[id(module.original_component)])
    return None


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
        hf.set_attn_implementation("eager")  # as the converted model runs
        hooked = to_hooked(hf, tokenizer=path, atol=cfg.atol)
        results[name] = ConvertedModel(
            architecture=hooked.cfg.architecture,
            max_abs_logit_diff=max_logit_difference(hf, hooked, seed=1),
            n_layers=hooked.cfg.n_layers, d_model=hooked.cfg.d_model, d_vocab=hooked.cfg.d_vocab,
            seconds=time.time() - started,
        )
    result = ConversionResult(atol=cfg.atol, models=results)
    result.save(run_dir)
    return result
