"""The zoo: every organism's policy on one corpus and one base model, each analysed by the study's own stages.

    python -m study zoo [--config configs/zoo.toml] [--organisms topic edit ...]

The base is trained once, in ``runs/<zoo>/base`` (corpus, tokenizer, pretraining); each organism is a run
directory of its own, ``runs/<zoo>/<organism>``, whose pretraining stage adopts that base
(``pretrain.from_model``) and whose policy is trained on ``organism:<name>`` (or, for an organism that is not
trained, planted) before the analysis stages run on it; an organism whose policy did not raise its reward is
not analysed (there is no gain to locate) and is flagged on the page. Each run resumes like any study. The zoo's page,
``runs/<zoo>/report/index.html``, shows each organism's answer, gain, policy checks and where the gain lives.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from rlhf.errors import UserError
from rlhf.rundir import RunDir
from rlhf.zoo import ORGANISMS
from study.config import StudyConfig

# What each organism's run does after the shared base: its policy, and the analyses whose answers the zoo scores.
ORGANISM_STAGES = ("corpus", "tokenizer", "pretrain", "conversion", "policy", "divergence", "activations",
                   "dictionaries", "model_diffing", "reward_attribution")
BASE_STAGES = ("corpus", "tokenizer", "pretrain")


def zoo_root(cfg: StudyConfig) -> Path:
    return Path(cfg.runs_dir) / cfg.name


def base_config(cfg: StudyConfig) -> StudyConfig:
    """The shared base's run: the zoo config's corpus, tokenizer and pretraining, in ``runs/<zoo>/base``."""
    return replace(cfg, name="base", runs_dir=str(zoo_root(cfg)), stages=BASE_STAGES)


def organism_config(cfg: StudyConfig, organism: str) -> StudyConfig:
    """One organism's run: the shared base adopted, the policy trained on (or planted by) the organism."""
    if organism not in ORGANISMS:
        raise UserError(f"unknown organism {organism!r}; registered: {', '.join(ORGANISMS)}")
    base = str(RunDir(zoo_root(cfg) / "base").base)
    return replace(cfg, name=organism, runs_dir=str(zoo_root(cfg)), stages=ORGANISM_STAGES,
                   pretrain=replace(cfg.pretrain, from_model=base), tokenizer=replace(cfg.tokenizer, source=base),
                   policy=replace(cfg.policy, reward=f"organism:{organism}"))


def run_zoo(cfg: StudyConfig, organisms: Sequence[str] = (), *, log: Callable[[str], None] = print,
            verbose: bool = False) -> Path:
    """Train the base once, run every organism (default: all registered), then write the zoo's page."""
    from rlhf.results import PolicyResult
    from study.pipeline import run_study
    from study.zoo_report import build_zoo_report

    chosen = tuple(organisms) or tuple(ORGANISMS)
    configs = [organism_config(cfg, name) for name in chosen]  # every name checked before anything runs
    log(f"[zoo] the base, in {zoo_root(cfg) / 'base'}")
    run_study(base_config(cfg), log=log, verbose=verbose)
    for organism_cfg in configs:
        log(f"[zoo] organism {organism_cfg.name}")
        trained = ORGANISM_STAGES[: ORGANISM_STAGES.index("policy") + 1]
        run_study(replace(organism_cfg, stages=trained), log=log, verbose=verbose)
        policy = PolicyResult.load(RunDir(zoo_root(cfg) / organism_cfg.name))
        if policy.reward_gain <= 0:
            # Nothing was learned, so there is no gain to locate: its analyses would divide by a G of zero.
            log(f"[zoo] organism {organism_cfg.name}: its policy did not raise its reward (held-out gain "
                f"{policy.reward_gain:+.3f}); not analysed, flagged on the zoo's page")
            continue
        run_study(organism_cfg, log=log, verbose=verbose)
    page = build_zoo_report(zoo_root(cfg), chosen)
    log(f"[zoo] report: {page}")
    return page
