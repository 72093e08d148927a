"""Automated interpretability (``autointerp/results.json``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlhf.artifact import Artifact
from rlhf.rundir import RunDir


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    requests: int = 0
    cached: int = 0  # requests answered from the on-disk cache

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.prompt_tokens + other.prompt_tokens, self.completion_tokens + other.completion_tokens,
                     self.requests + other.requests, self.cached + other.cached)


@dataclass(frozen=True)
class StepFailure:
    step: str
    error: str


@dataclass(frozen=True)
class FeatureInterpretation:
    """One feature's explanation and scores; a step that failed is in ``failures`` and its score is None."""

    model: str
    hook: str
    feature: int
    reason: str  # "shared top-k" or "diff"
    failures: tuple[StepFailure, ...] = ()
    usage: Usage = Usage()
    explanation: str | None = None
    explanation_utility: float | None = None
    simulation_score: float | None = None
    detection_score: float | None = None
    related_to_objective: bool | None = None
    cost_usd: float | None = None


@dataclass(frozen=True)
class ObjectiveComparison:
    features: int
    mean_explanation_utility: float
    share_related_to_objective: float


@dataclass(frozen=True)
class AutointerpResult(Artifact):
    """``autointerp/results.json``: explanations and scores of the chosen features, tokens and cost."""

    model: str
    base_url: str
    prompt_version: str
    features: tuple[FeatureInterpretation, ...]
    usage: Usage
    cost_usd: float | None
    requests_sent_this_run: int
    failed_features: int
    comparison: dict[str, ObjectiveComparison]
    mean_simulation_score: float
    mean_detection_score: float
    seconds: float
    config: dict[str, Any] = field(default_factory=dict)

    FILE = "results.json"

    @classmethod
    def directory(cls, run: RunDir) -> Path:
        return run.stage_dir("autointerp")

    @classmethod
    def feature_path(cls, run: RunDir, model: str, hook: str, feature: int) -> Path:
        """One finished feature's result, kept so that a killed run does not redo it."""
        return cls.directory(run) / "features" / model / hook / f"{feature}.json"

    @classmethod
    def cache_dir(cls, run: RunDir) -> Path:
        """The request cache: one file per answered prompt."""
        return cls.directory(run) / "cache"

    def explained(self) -> dict[tuple[str, int], FeatureInterpretation]:
        """The policy features with an explanation, by (hook, feature)."""
        return {(f.hook, f.feature): f for f in self.features if f.model == "policy" and f.explanation}
