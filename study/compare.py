"""``python -m study compare``: analyse a base model and a fine-tune of it that were trained
elsewhere. It builds an analysis-only study config (the base adopted as the pretrained model,
the fine-tune as the policy), which ``run_study`` then runs like any other; the config is kept
in the run directory (``config.json``), so ``python -m study run --config runs/<name>/config.json``
repeats or resumes it. Light: imports nothing heavy, so that a mistake is reported at once.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from rlhf.configtypes import is_lexicon
from rlhf.errors import UserError
from study.config import StudyConfig, config_from_dict

# What a comparison runs: the pair's divergence, caches, dictionaries and their diffs, and conversion.
ANALYSIS = ("corpus", "tokenizer", "pretrain", "policy", "divergence", "activations", "dictionaries", "sae_quality",
            "mmcs", "feature_diff", "model_diffing", "conversion", "reward_attribution", "circuits")
# Stages that score against the VADER lexicon: they run only when the pair's reward is that utility. Reward
# attribution and circuits run for every pair: on the log-ratio target where the reward has no token-level
# utility (circuits where the residual stream is cached at every layer, skipped with a message otherwise).
LEXICON = ("valence_probe", "implicit_reward")


def _set(data: dict[str, Any], assignment: str) -> None:
    """Apply one ``--set section.key=value`` (the value in TOML syntax: 3, 1e-3, "text", [0, 1], true)."""
    key, sep, value = assignment.partition("=")
    if not sep or not key.strip():
        raise UserError(f"--set {assignment!r}: expected KEY=VALUE, e.g. dictionaries.training_tokens=200000")
    try:
        parsed = tomllib.loads(f"v = {value.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value.strip()  # a bare word reads as a string: --set policy.reward=vader
    *sections, last = key.strip().split(".")
    table = data
    for name in sections:
        table = table.setdefault(name, {})
        if not isinstance(table, dict):
            raise UserError(f"--set {assignment!r}: {name} is not a table")
    table[last] = parsed


def compare_config(base: str, policy: str, *, corpus: str = "", text_column: str = "text", layers: tuple[int, ...] = (),
                   name: str = "", runs_dir: str = "runs", reward: str = "vader",
                   settings: tuple[str, ...] = ()) -> tuple[StudyConfig, tuple[str, ...]]:
    """The study config that compares ``policy`` with ``base``, and the stages it leaves out
    because they need the lexicon reward (empty when the reward is ``vader``)."""
    for flag, source in (("--base", base), ("--policy", policy)):
        looks_local = source.startswith((".", "/", "~")) or Path(source).exists()
        if looks_local and not Path(source).expanduser().is_dir():
            raise UserError(f"{flag} {source}: no such model directory")
    lexicon = is_lexicon(reward)
    data: dict[str, Any] = {
        "name": name or f"compare-{Path(policy.rstrip('/')).name}",
        "runs_dir": runs_dir,
        "stages": [*ANALYSIS, *(LEXICON if lexicon else ())],
        "tokenizer": {"source": base},
        "pretrain": {"from_model": base},
        "policy": {"from_model": policy, "reward": reward},
        "divergence": {"layers": list(layers)},
        # The pair is given: nothing else is trained (no beta = 0 rerun, no DPO or SFT baseline).
        "policy_beta0": {"enabled": False}, "dpo": {"enabled": False}, "sft": {"enabled": False},
        "digits": {"enabled": False},
    }
    if corpus:
        data["corpus"] = {"source": "dataset", "dataset": {"path": corpus, "text_column": text_column}}
    for assignment in settings:
        _set(data, assignment)
    return config_from_dict(data), () if lexicon else LEXICON
