"""The reward-attribution stage: ``analysis.reward_attribution`` on the run's policy, with the
probes' rankings spliced beside each dictionary's own: the implicit-reward probe's features (as the
implicit_reward stage or ``python -m probes.fit_linear_reward`` saved them) and, per sampling seed,
the writer probe's, fitted on that seed's completions. It lives here, above ``probes`` and
``analysis``, because it joins the two."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace

from analysis.config import RewardAttributionConfig
from analysis.results import RewardAttributionResult, WriterProbeSummary
from analysis.reward_attribution import Rankings, reward_attribution
from analysis.reward_gain import Completions
from probes.config import WriterProbeConfig
from probes.results import LinearRewardResult, TopFeature
from probes.writer import fit_writer_probe
from rlhf.hooked import HookedModel
from rlhf.rundir import RunDir


def _by_hook(features: tuple[TopFeature, ...]) -> dict[str, list[int]]:
    ranked: dict[str, list[int]] = defaultdict(list)
    for f in features:
        ranked[f.hook].append(f.feature)
    return dict(ranked)


def probe_rankings(run_dir: RunDir, size: str) -> Rankings:
    """The implicit-reward probe's positive features of the policy's SAEs, best first, if it read
    SAEs of this width."""
    if not LinearRewardResult.exists(run_dir, model="policy", features="sae"):
        return {}
    found = LinearRewardResult.load(run_dir, model="policy", features="sae")
    if found.size != size:
        return {}
    return {"implicit_reward_probe": _by_hook(tuple(f for f in found.top_features if f.coefficient > 0))}


def reward_attribution_stage(cfg: RewardAttributionConfig, run_dir: RunDir) -> RewardAttributionResult | None:
    """Stage: ``analysis/reward_attribution.json`` with heat maps and splicing curves, and the writer
    probe's scores per sampling seed."""
    if not cfg.enabled:
        return None
    writers: list[WriterProbeSummary] = []

    def writer_rankings(seed: int, policy: HookedModel, batch: Completions) -> Rankings:
        if "sae_policy" not in cfg.dictionaries or batch.target != "utility":
            return {}  # the writer probe regresses the next token's expected utility
        writer = fit_writer_probe(run_dir, WriterProbeConfig(
            features=cfg.writer_features, layers=cfg.layers or None, size=cfg.size, seed=seed, scale=cfg.scale),
            policy, batch)
        writers.append(WriterProbeSummary(seed, writer.kendall_tau, writer.r2, writer.untrained_tau, writer.untrained_tau_std))
        return {"writer_probe": _by_hook(writer.top_features)} if cfg.writer_features == "sae" else {}

    result = reward_attribution(cfg, run_dir, probe_rankings(run_dir, cfg.size), writer_rankings)
    result = replace(result, writer=tuple(writers))
    result.save(run_dir)
    return result
