"""The typed results of the analysis stages, one light module per stage (no torch import: the report
and the command lines load these), re-exported here."""

from __future__ import annotations

from analysis.results.activations import ActivationIndex, CachedHook
from analysis.results.autointerp import AutointerpResult, FeatureInterpretation, ObjectiveComparison, StepFailure, Usage
from analysis.results.circuits import CheckedNode, CircuitSeed, CircuitsResult, GraphEdge, GraphNode
from analysis.results.dictionaries import (
    QualityBars,
    SAEEntry,
    SAEIndex,
    SAEMetrics,
    SAEQualityResult,
    SAETraining,
    size_name,
)
from analysis.results.divergence import DivergenceResult, DivergenceRow
from analysis.results.feature_diff import (
    CardExample,
    FeatureCard,
    FeatureDiffResult,
    FeatureHistogram,
    FeatureRow,
    HookFeatureDiff,
    RewardTracking,
)
from analysis.results.mmcs import Interval, MMCSAcross, MMCSResult, MMCSWithin, SharedFeature
from analysis.results.model_diffing import (
    AblationEffect,
    ActivationDifferenceLens,
    AmplificationRuns,
    AmplifiedSamples,
    CrosscoderMetrics,
    KLTokens,
    LatentCard,
    LatentHistogram,
    LatentStats,
    LayerDiffing,
    LensPosition,
    LogitAmplification,
    MethodScore,
    ModelDiffingResult,
    MovedLatent,
    SeedStat,
    SpliceEffect,
    StagewiseSAE,
    SteeringPoint,
    splice_score,
)
from analysis.results.reward_attribution import (
    Curve,
    DictionaryInfo,
    GainEstimate,
    LatentShare,
    RewardAttributionResult,
    SampledIntervention,
    SiteFractions,
    WriterProbeSummary,
)

__all__ = ['AblationEffect', 'CheckedNode', 'CircuitSeed', 'CircuitsResult', 'GraphEdge', 'GraphNode', 'ActivationDifferenceLens', 'ActivationIndex', 'AmplificationRuns', 'AmplifiedSamples', 'AutointerpResult', 'CachedHook', 'CardExample', 'CrosscoderMetrics', 'Curve', 'DictionaryInfo', 'DivergenceResult', 'DivergenceRow', 'FeatureCard', 'FeatureDiffResult', 'FeatureHistogram', 'FeatureInterpretation', 'FeatureRow', 'GainEstimate', 'HookFeatureDiff', 'Interval', 'KLTokens', 'LatentCard', 'LatentHistogram', 'LatentShare', 'LatentStats', 'LayerDiffing', 'LensPosition', 'LogitAmplification', 'MMCSAcross', 'MMCSResult', 'MMCSWithin', 'MethodScore', 'ModelDiffingResult', 'MovedLatent', 'ObjectiveComparison', 'QualityBars', 'RewardAttributionResult', 'RewardTracking', 'SampledIntervention', 'SAEEntry', 'SAEIndex', 'SAEMetrics', 'SAEQualityResult', 'SAETraining', 'SeedStat', 'SharedFeature', 'SiteFractions', 'SpliceEffect', 'StagewiseSAE', 'SteeringPoint', 'StepFailure', 'Usage', 'WriterProbeSummary', 'size_name', 'splice_score']
