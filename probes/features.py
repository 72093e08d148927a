"""What the probes read: the cached hooks of the chosen layers that have SAEs, checked before
any model loads. Light (no torch), so the command line answers a bad run directory at once."""

from __future__ import annotations

from analysis.results import ActivationIndex, SAEIndex
from rlhf.errors import UserError
from rlhf.rundir import RunDir

EMBEDDING_HOOK = "blocks.0.hook_resid_pre"
TOP_FEATURES = 100  # kept in a probe's result: enough for the ablation's largest k


def layer_hooks(run_dir: RunDir, model: str, layers: tuple[int, ...] | None, size: str) -> list[str]:
    """The cached hooks of the requested layers, checked to have SAEs for ``model``."""
    if not ActivationIndex.exists(run_dir) or not SAEIndex.exists(run_dir):
        raise UserError(f"{run_dir.root} has no SAEs yet: run the study up to the dictionaries stage first "
                        f"(python -m study run --config <config> --until dictionaries)")
    index = ActivationIndex.load(run_dir)
    by_layer = dict(zip(index.layers, index.hooks))
    wanted = list(layers) if layers else list(index.layers)
    missing = [layer for layer in wanted if layer not in by_layer]
    if missing:
        raise UserError(f"layer(s) {missing} are not in this study; its SAEs cover layers {sorted(by_layer)}")
    hooks = [by_layer[layer] for layer in wanted]
    absent = [h for h in hooks if not (run_dir.sae(model, h, size) / "cfg.json").exists()]
    if absent:
        trained = sorted({entry.model for entry in SAEIndex.load(run_dir).saes})
        raise UserError(f"no {size} SAE for model {model!r} at {', '.join(absent)} (models with SAEs: {', '.join(trained)})")
    return hooks
