"""The typed results of the probes stages, one light module per stage (no torch import: the report
and the command lines load these), re-exported here."""

from __future__ import annotations

from probes.results.ablation import AblationComparison, AblationResult, ConditionStats, RewardRun
from probes.results.implicit_reward import ImplicitRewardResult, LinearProbeSet
from probes.results.linear_reward import (
    FeatureKind,
    LinearRewardResult,
    PerWord,
    ProbeKind,
    ProbeMetrics,
    ProtocolResult,
    Protocols,
    TopFeature,
)
from probes.results.rankings import NAN, FittedRankMetrics, RankMetrics
from probes.results.sequence import DPOComparison, LogisticResult, RidgeByHook, SequenceModelProbes, SequenceProbeResult
from probes.results.valence import ValenceBars, ValenceProbeResult, ValenceProbes, ValenceSummary
from probes.results.writer import WriterProbeResult

__all__ = ['AblationComparison', 'AblationResult', 'ConditionStats', 'DPOComparison', 'FeatureKind', 'FittedRankMetrics', 'ImplicitRewardResult', 'LinearProbeSet', 'LinearRewardResult', 'LogisticResult', 'NAN', 'PerWord', 'ProbeKind', 'ProbeMetrics', 'ProtocolResult', 'Protocols', 'RankMetrics', 'RewardRun', 'RidgeByHook', 'SequenceModelProbes', 'SequenceProbeResult', 'TopFeature', 'ValenceBars', 'ValenceProbeResult', 'ValenceProbes', 'ValenceSummary', 'WriterProbeResult']
