"""Adopting a model trained elsewhere as one of the study's models: a fine-tune of the base
(a hub checkpoint, another codebase's RLHF or DPO run) checked against the base, then saved
under ``models/<name>`` with the study's tokenizer, as if the stage had trained it.

Model diffing compares weights and activations position by position, so the adopted model
must be the base's architecture with the same shapes, and read the same vocabulary.
"""

from __future__ import annotations

from pathlib import Path

from transformers import PreTrainedModel

from rlhf.errors import UserError
from rlhf.hooked import load_hf
from rlhf.rundir import RunDir
from rlhf.tokenizer import load_tokenizer
from rlhf.training import save_trained

# Config fields that fix a causal LM's shapes, under the names the supported architectures use.
SHAPE_FIELDS = ("num_hidden_layers", "n_layer", "num_layers", "hidden_size", "n_embd", "num_attention_heads", "n_head",
                "num_heads", "intermediate_size", "n_inner", "vocab_size", "max_position_embeddings", "n_positions")


def architecture_difference(base: PreTrainedModel, other: PreTrainedModel) -> str | None:
    """What makes ``other`` a different architecture from ``base`` (class, a shape field, a
    parameter's shape), or None when every parameter lines up."""
    if type(base) is not type(other):
        return f"it is a {type(other).__name__} and the base a {type(base).__name__}"
    for name in SHAPE_FIELDS:
        a, b = getattr(base.config, name, None), getattr(other.config, name, None)
        if a != b:
            return f"its {name} is {b} and the base's {a}"
    theirs = {k: tuple(v.shape) for k, v in other.state_dict().items()}
    for key, tensor in base.state_dict().items():
        if key not in theirs:
            return f"it has no parameter {key}"
        if theirs[key] != tuple(tensor.shape):
            return f"its {key} has shape {theirs[key]} and the base's {tuple(tensor.shape)}"
    return None


def _vocabulary_difference(source: str, run_dir: RunDir) -> str | None:
    """How the adopted model's own tokenizer (if it has one) differs from the base's."""
    local = Path(source).is_dir()
    if local and not any((Path(source) / f).exists() for f in ("tokenizer.json", "vocab.json", "tokenizer.model")):
        return None  # weights only: it reads the base's tokenizer
    try:
        theirs = load_tokenizer(source, hub=not local)
    except (UserError, OSError, ValueError):
        return None if not local else f"its tokenizer in {source} does not load"
    ours = load_tokenizer(run_dir.base)
    if theirs.get_vocab() != ours.get_vocab():
        return f"its tokenizer has a vocabulary of {len(theirs)} tokens that differs from the base's ({len(ours)})"
    return None


def adopt(source: str, run_dir: RunDir, name: str, key: str) -> PreTrainedModel:
    """Load ``source`` (hub id or directory), check it against ``models/base`` and save it as
    ``models/<name>``. ``key`` is the config key that named it, for the error message; nothing
    is written unless every check passes."""
    if not run_dir.base.is_dir():
        raise UserError(f"{key}: no base model in {run_dir.base} to compare {source} with; run the pretrain stage")
    try:
        model = load_hf(source)
    except UserError as err:
        raise UserError(f"{key} = {source!r}: {err}") from err
    base = load_hf(run_dir.base)
    problem = architecture_difference(base, model) or _vocabulary_difference(source, run_dir)
    if problem:
        raise UserError(f"{key} = {source!r} is not a fine-tune of the base model ({run_dir.base}): {problem}")
    save_trained(model, load_tokenizer(run_dir.base), run_dir.model(name))
    return model
