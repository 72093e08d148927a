"""A study's configuration: one TOML file, one dataclass section per stage.

Unknown keys and wrongly typed values are errors that name the key and the valid
choices: a typo must never silently fall back to a default.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
import types
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Annotated, Any

from analysis.config import (
    ActivationCacheConfig,
    AutointerpConfig,
    CircuitsConfig,
    DictionaryConfig,
    DivergenceConfig,
    FeatureDiffConfig,
    MMCSConfig,
    ModelDiffingConfig,
    QualityConfig,
    RewardAttributionConfig,
)
from probes.config import ImplicitRewardConfig, ValenceProbeConfig
from rlhf.config import (
    ConversionConfig,
    CorpusConfig,
    DigitsLoopConfig,
    HiddenContextConfig,
    LoggingConfig,
    PretrainConfig,
    TokenizerConfig,
)
from rlhf.configtypes import Hook, Layer, OneOf, Sections
from rlhf.errors import UserError
from rlhf.policy.config import DPOStageConfig, NoKLComparisonConfig, PolicyConfig, SFTConfig, check_reward_label
from rlhf.policy.config import check_config as check_policy_config
from study.stages import STAGES, stage_names
from study.stages import stage as study_stage

StageName = Annotated[str, OneOf(stage_names)]  # a stage of study.stages.STAGES


@dataclass(frozen=True)
class StudyConfig:
    name: str = "sentiment"
    runs_dir: str = "runs"
    stages: tuple[StageName, ...] = ()  # run only these stages (e.g. ["digits"]); empty: all of them
    corpus: CorpusConfig = field(default_factory=CorpusConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    conversion: ConversionConfig = field(default_factory=ConversionConfig)
    valence_probe: ValenceProbeConfig = field(default_factory=ValenceProbeConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    policy_beta0: NoKLComparisonConfig = field(default_factory=NoKLComparisonConfig)
    dpo: DPOStageConfig = field(default_factory=DPOStageConfig)
    divergence: DivergenceConfig = field(default_factory=DivergenceConfig)
    activations: ActivationCacheConfig = field(default_factory=ActivationCacheConfig)
    dictionaries: DictionaryConfig = field(default_factory=DictionaryConfig)
    sae_quality: QualityConfig = field(default_factory=QualityConfig)
    mmcs: MMCSConfig = field(default_factory=MMCSConfig)
    feature_diff: FeatureDiffConfig = field(default_factory=FeatureDiffConfig)
    model_diffing: ModelDiffingConfig = field(default_factory=ModelDiffingConfig)
    implicit_reward: ImplicitRewardConfig = field(default_factory=ImplicitRewardConfig)
    reward_attribution: RewardAttributionConfig = field(default_factory=RewardAttributionConfig)
    circuits: CircuitsConfig = field(default_factory=CircuitsConfig)
    autointerp: AutointerpConfig = field(default_factory=AutointerpConfig)
    hidden_context: HiddenContextConfig = field(default_factory=HiddenContextConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)
    digits: DigitsLoopConfig = field(default_factory=DigitsLoopConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)  # not a stage: where training curves go
    # The sections of stages registered beyond the built-in ones (study.stages.register), by stage name.
    registered: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_policy_config(self.policy)
        check_reward_label("dpo", self.dpo.reward, self.dpo.reward_label)
        if self.policy.init == "sft" and not (self.sft.enabled and (not self.stages or "sft" in self.stages)):
            raise UserError("policy.init = \"sft\" starts RL from the sft stage's model: enable [sft] "
                            "(and list \"sft\" in stages when stages is set)")
        if bool(self.pretrain.from_model) != (self.tokenizer.source != "corpus"):
            raise UserError("pretrain.from_model and tokenizer.source go together: either both name the same "
                            "pretrained model, or from_model is empty and tokenizer.source is \"corpus\"")

        if not self.pretrain.from_model:
            _check_hooks_exist(self, self.pretrain)

    @property
    def run_dir(self) -> Path:
        return Path(self.runs_dir) / self.name

    def section(self, stage: str) -> Any:
        """A stage's config section: a field of this class, or a registered stage's (its defaults where
        the config leaves it out)."""
        if stage in self.registered:
            return self.registered[stage]
        if hasattr(self, stage):
            return getattr(self, stage)
        config = study_stage(stage).config
        assert config is not None, f"stage {stage} has no config section"  # register() requires one
        return config()

    def to_dict(self) -> dict[str, Any]:
        """The config as TOML would give it: registered stages' sections at the top level, beside the others."""
        data = asdict(self)
        return {**data.pop("registered"), **data}


def marked_fields(obj: Any, marker: Any, where: str = "") -> list[tuple[str, Any]]:
    """(key, value) of every field (or list item) whose annotation carries ``marker`` (``Hook()``,
    ``Layer()``) in a config tree."""
    out = []
    hints = typing.get_type_hints(type(obj), include_extras=True)
    for f in fields(obj):
        value, kind = getattr(obj, f.name), hints[f.name]
        key = f"{where}.{f.name}" if where else f.name
        if typing.get_origin(kind) in (typing.Union, types.UnionType):  # e.g. ``Layers | None``
            kind = next(a for a in typing.get_args(kind) if a is not type(None))
        if typing.get_origin(kind) is typing.Annotated:
            kind = typing.get_args(kind)[0] if marker not in typing.get_args(kind) else kind
        if dataclasses.is_dataclass(value):
            out += marked_fields(value, marker, key)
        elif f.name == "registered":  # registered stages' sections, each [its stage's name]
            out += [m for name, section in value.items() for m in marked_fields(section, marker, name)]
        elif marker in typing.get_args(kind):
            out.append((key, value))
        elif value and typing.get_origin(kind) is tuple and any(marker in typing.get_args(a) for a in typing.get_args(kind)):
            out += [(f"{key}[{i}]", v) for i, v in enumerate(value)]
    return out


def _check_hooks_exist(cfg: StudyConfig, model: PretrainConfig) -> None:
    """Hook names and layer indices against the architecture the study trains (GPT-NeoX): rotary
    models have no positional-embedding hook, parallel-residual blocks no ``hook_resid_mid``, and a
    fixed layer must exist."""
    missing = {"hook_pos_embed": "rotary position embeddings have no hook_pos_embed"}
    if model.parallel_residual:
        missing["hook_resid_mid"] = "parallel-residual blocks (pretrain.parallel_residual) have no hook_resid_mid"
    depth = f"the model has layers 0-{model.n_layers - 1} (pretrain.n_layers)"
    for key, hook in marked_fields(cfg, Hook()):
        name = hook.rsplit(".", 1)[-1]
        if name in missing:
            raise UserError(f"{key} = {hook!r}: {missing[name]}")
        parts = hook.split(".")
        if parts[0] == "blocks" and parts[1].isdigit() and int(parts[1]) >= model.n_layers:
            raise UserError(f"{key} = {hook!r}: {depth}")
    for key, layer in marked_fields(cfg, Layer()):
        if layer >= model.n_layers:
            raise UserError(f"{key} = {layer}: {depth}")


def _allowed(kind: Any) -> str:
    return ", ".join(repr(a) for a in typing.get_args(kind))


def _coerce(value: Any, kind: Any, where: str) -> Any:
    """``value`` as the field's type ``kind``, or a UserError naming the key, the value and what is allowed."""
    origin = typing.get_origin(kind)
    if origin is typing.Annotated:
        base, *checks = typing.get_args(kind)
        value = _coerce(value, base, where)
        for check in checks:
            problem = check.check(value) if hasattr(check, "check") else None
            if problem:
                raise UserError(f"{where} {problem}")
        return value
    if origin is typing.Literal:
        if value not in typing.get_args(kind) or isinstance(value, bool) != any(isinstance(a, bool) for a in typing.get_args(kind)):
            raise UserError(f"{where} must be one of {_allowed(kind)}; got {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(kind)
        if value is None and type(None) in options:
            return None
        for option in options:
            try:
                return _coerce(value, option, where)
            except UserError:
                continue
        raise UserError(f"{where} must be {' or '.join(getattr(o, '__name__', str(o)) for o in options)}, got {value!r}")
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise UserError(f"{where} must be a list, got {value!r}")
        args = typing.get_args(kind)
        item = args[0] if args else Any
        return tuple(_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value))
    if kind is Any:
        return value
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    expected = origin or kind
    if isinstance(expected, type) and not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
        raise UserError(f"{where} must be {getattr(expected, '__name__', expected)}, got {value!r}")
    if kind is float and value != value:
        raise UserError(f"{where} must be a number, got nan")
    return value


def _build(cls: type, data: dict[str, Any], where: str, default: Any = None) -> Any:
    """``cls`` from a TOML table; keys the table leaves out keep ``default``'s values (a nested
    section's own defaults, which may differ from its class's), else the class defaults."""
    hints = typing.get_type_hints(cls, include_extras=True)
    defaults = {f.name: f.default_factory() for f in fields(cls) if f.default_factory is not dataclasses.MISSING}
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        section = f"[{where}]" if where else "the top level"
        raise UserError(f"unknown config key {unknown[0]!r} in {section}; valid keys: {', '.join(sorted(known))}")
    kwargs = {}
    for name, value in data.items():
        key = f"{where}.{name}" if where else name
        if dataclasses.is_dataclass(hints[name]):
            kwargs[name] = _build(hints[name], _table(value, key), key, defaults.get(name))
        elif sections := next((m for m in typing.get_args(hints[name]) if isinstance(m, Sections)), None):
            kwargs[name] = {**defaults.get(name, {}), **_sections(sections, _table(value, key), key)}
        else:
            kwargs[name] = _coerce(value, hints[name], key)
    return dataclasses.replace(default, **kwargs) if default is not None else cls(**kwargs)


def _sections(sections: Sections, data: dict[str, Any], where: str) -> dict[str, Any]:
    """``[where.<name>]`` tables, each built as its registry entry's settings type."""
    types_ = sections.types()
    out = {}
    for name, value in data.items():
        if name not in types_:
            raise UserError(f"unknown name {name!r} in [{where}]; registered: {', '.join(types_)}")
        if types_[name] is None:
            raise UserError(f"[{where}.{name}]: {name} takes no settings; those that do: "
                            f"{', '.join(n for n, t in types_.items() if t is not None)}")
        out[name] = _build(types_[name], _table(value, f"{where}.{name}"), f"{where}.{name}")
    return out


def config_from_dict(data: dict[str, Any]) -> StudyConfig:
    data = dict(data)
    if "registered" in data:
        raise UserError("unknown config key 'registered' in the top level; a registered stage's section is [its name]")
    known = {f.name for f in fields(StudyConfig)}
    registered = {s.name: _build(s.config, _table(data.pop(s.name), s.name), s.name)
                  for s in STAGES if s.config is not None and s.name not in known and s.name in data}
    cfg = _build(StudyConfig, data, "")
    return dataclasses.replace(cfg, registered=registered) if registered else cfg


def _table(value: Any, key: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise UserError(f"{key} must be a table ([{key}])")
    return value


# Settings that moved into a diffing method's own table ([model_diffing.methods.<name>]): a run
# directory written before keeps its config.json readable (status, report, resuming it).
MOVED_DIFFING_SETTINGS = {
    "kl_texts": [("kl", "texts"), ("activation_difference_lens", "texts")], "lens_positions": [("activation_difference_lens", "positions")],
    "steering_alphas": [("activation_difference_lens", "steering_alphas")], "stagewise_tokens": [("stagewise_sae", "tokens")],
    "stagewise_learning_rate": [("stagewise_sae", "learning_rate")], "mmcs_size": [("mmcs_diff", "size"), ("stagewise_sae", "size")],
    "match_threshold": [("mmcs_diff", "match_threshold")], "amplification_alphas": [("logit_amplification", "alphas")],
    "amplification_prompts": [("logit_amplification", "prompts")],
    "difference_tokens": [("difference_dictionary", "tokens"), ("difference_sae", "tokens")],
}


def _moved(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` with the diffing settings an older version kept flat moved to their methods' tables."""
    section = data.get("model_diffing")
    if not isinstance(section, dict) or not set(section) & set(MOVED_DIFFING_SETTINGS):
        return data
    section = dict(section)
    methods = {name: dict(table) for name, table in section.get("methods", {}).items()}
    for old in set(section) & set(MOVED_DIFFING_SETTINGS):
        value = section.pop(old)
        for method, key in MOVED_DIFFING_SETTINGS[old]:
            methods.setdefault(method, {}).setdefault(key, value)
    return {**data, "model_diffing": {**section, "methods": methods}}


def load_config(path: Path | str, overrides: dict[str, Any] | None = None) -> StudyConfig:
    """Read a study config (TOML, or a run directory's config.json); ``overrides`` (e.g. ``{"runs_dir": "/tmp/x"}``) win over the file."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file {path} does not exist (see configs/ for examples)")
    try:  # TOML, or the JSON a run directory keeps (runs/<study>/config.json) to repeat that study
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as err:
        raise UserError(f"{path} is not valid {'JSON' if path.suffix == '.json' else 'TOML'}: {err}") from err
    data.update(overrides or {})
    try:
        return config_from_dict(_moved(data))
    except UserError as err:
        raise UserError(f"{path}: {err}") from err
