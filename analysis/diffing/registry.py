"""The diffing methods' registry: what the model-diffing stage runs, the report labels and reward
attribution reads. Light on purpose (no torch): the report and the config read it, and each
method's module loads only when the stage runs (``MethodSpec.find`` names it)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from analysis.diffing.settings import (
    AmplificationConfig,
    DifferenceConfig,
    KLConfig,
    LensConfig,
    MMCSDiffConfig,
    StagewiseConfig,
)
from rlhf.registry import load


@dataclass(frozen=True)
class MethodSpec:
    """A diffing method's contract with the stage, the report and reward attribution."""

    find: str  # "module:function", find(ctx, at, seed) -> Found (analysis.diffing.method.Find)
    label: str  # how the report names it
    names: Literal["latents", "tokens"] = "latents"  # tokens: it returns Found.of_tokens (the stage checks)
    per_seed: bool = True  # False: no dictionary of its own to seed; found once and recorded as seed 0
    # A dictionary reward attribution can read (reward_attribution.dictionaries lists it by this name):
    # "module:function", (name, run_dir, hook, seed) -> feature_attribution.Dictionary
    dictionary: str = ""
    dictionary_name: str = ""
    config: type | None = None  # its settings, [model_diffing.methods.<name>] (a light dataclass)
    record: str = ""  # "module:Type": what it keeps per hook and seed (Found.record), a light dataclass
    # "module:function", (ctx, {hook: its records there}) -> a record of ``per_run`` type or None: a step run
    # once after every hook (what reads the models rather than a hook, or plots across hooks)
    once: str = ""
    per_run: str = ""  # "module:Type" of what ``once`` returns

    def finder(self) -> Callable[..., Any]:
        return load(self.find)


METHODS: dict[str, MethodSpec] = {
    "mmcs_diff": MethodSpec("analysis.diffing.mmcs_diff:find", "MMCS feature diff (SAEs)", per_seed=False,
                            config=MMCSDiffConfig),
    "crosscoder_scaling": MethodSpec("analysis.diffing.crosscoder:by_scaling", "crosscoder + latent scaling",
                                     dictionary="analysis.diffing.crosscoder:dictionary", dictionary_name="crosscoder"),
    "crosscoder_norm": MethodSpec("analysis.diffing.crosscoder:by_norm", "crosscoder, relative norm only"),
    "difference_dictionary": MethodSpec("analysis.diffing.difference_dictionary:find", "difference dictionary (base -> policy)",
                                        dictionary="analysis.diffing.difference_dictionary:dictionary",
                                        dictionary_name="difference_dictionary", config=DifferenceConfig),
    "difference_sae": MethodSpec("analysis.diffing.difference_sae:find", "SAE on policy - base",
                                 dictionary="analysis.diffing.difference_sae:dictionary", dictionary_name="difference_sae",
                                 config=DifferenceConfig),
    "activation_difference_lens": MethodSpec("analysis.diffing.act_diff_lens:find", "activation-difference lens",
                                             per_seed=False, config=LensConfig, record="analysis.results.model_diffing:ActivationDifferenceLens",
                                             once="analysis.diffing.act_diff_lens:plot"),
    "stagewise_sae": MethodSpec("analysis.diffing.stagewise:find", "stage-wise SAE fine-tuning", config=StagewiseConfig,
                                record="analysis.results.model_diffing:StagewiseSAE"),
    "kl": MethodSpec("analysis.diffing.kl:find", "per-token KL (tokens)", names="tokens", per_seed=False, config=KLConfig,
                     once="analysis.diffing.kl:record", per_run="analysis.results.model_diffing:KLTokens"),
    "logit_amplification": MethodSpec("analysis.diffing.amplification:find", "logit-diff amplification (tokens)",
                                      names="tokens", config=AmplificationConfig,  # its seed draws the samples
                                      once="analysis.diffing.amplification:record", per_run="analysis.results.model_diffing:AmplificationRuns"),
}


def dictionaries() -> dict[str, MethodSpec]:
    """The diffing methods' dictionaries reward attribution can read, by their name."""
    return {spec.dictionary_name: spec for spec in METHODS.values() if spec.dictionary}


def method_settings() -> dict[str, type | None]:
    """Each registered method's settings type (None: it has none), for ``[model_diffing.methods]``."""
    return {name: spec.config for name, spec in METHODS.items()}


def record_type(name: str) -> Any:
    """How a method's records load back: a tuple of its registered type (plain JSON for a method the
    registry no longer holds, an older run's)."""
    spec = METHODS.get(name)
    return tuple[load(spec.record) if spec and spec.record else Any, ...]


def per_run_type(name: str) -> Any:
    """How a method's once-per-run record loads back."""
    spec = METHODS.get(name)
    return load(spec.per_run) if spec and spec.per_run else Any
