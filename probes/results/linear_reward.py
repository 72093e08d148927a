"""The implicit-reward probe (``probes/linear_reward_<model>_<features>.json``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from probes.results.rankings import RankMetrics
from rlhf.artifact import Artifact

ProbeKind = Literal["probe", "untrained", "raw_activations", "embedding_only"]


FeatureKind = Literal["sae", "activations", "embedding"]


@dataclass(frozen=True)
class PerWord:
    """A probe's mean prediction per test word beside the word's VADER valence."""

    words: tuple[str, ...]
    valence: tuple[float, ...]
    prediction: tuple[float, ...]


@dataclass(frozen=True)
class ProbeMetrics:
    """One probe of one protocol, scored per word against VADER."""

    kind: ProbeKind
    features: FeatureKind  # what the probe reads
    all: RankMetrics
    positive: RankMetrics  # the positive words only
    negative: RankMetrics
    r2: float  # on the test variants' targets
    alpha: float | None = None  # the ridge penalty used (fitted probes)
    per_word: PerWord | None = None  # fitted probes
    draws: int | None = None  # untrained: random weight vectors averaged over
    kendall_tau_std: float | None = None  # untrained: spread of tau over the draws

    @property
    def label(self) -> str:
        """What a reader sees: "probe (sae)", "untrained (null)", "raw activations", "embedding only"."""
        return {"probe": f"probe ({self.features})", "untrained": "untrained (null)",
                "raw_activations": "raw activations", "embedding_only": "embedding only"}[self.kind]


@dataclass(frozen=True)
class ProtocolResult:
    """Every probe scored under one protocol: the fitted probe on the chosen features, the
    untrained null, the raw-activation probe (when the probe reads SAE codes) and the embedding."""

    probe: ProbeMetrics
    untrained: ProbeMetrics
    embedding_only: ProbeMetrics
    raw_activations: ProbeMetrics | None = None

    def rows(self) -> tuple[ProbeMetrics, ...]:
        """The probes in reading order."""
        extra = (self.raw_activations,) if self.raw_activations is not None else ()
        return (self.probe, self.untrained, *extra, self.embedding_only)


@dataclass(frozen=True)
class Protocols:
    paper: ProtocolResult  # the paper's 80/20 split of triples (test words may have been seen)
    held_out_words: ProtocolResult  # the probe never saw the test words

    def items(self) -> tuple[tuple[str, ProtocolResult], ...]:
        return (("paper", self.paper), ("held_out_words", self.held_out_words))


@dataclass(frozen=True)
class TopFeature:
    hook: str
    feature: int  # index in the hook's dictionary (or activation dimension)
    coefficient: float  # standardised units
    index: int  # index in the concatenated features


@dataclass(frozen=True)
class LinearRewardResult(Artifact):
    """``probes/linear_reward_<model>_<features>.json``: what ``fit_linear_reward`` returns."""

    model: str  # whose activations and SAEs
    features: Literal["sae", "activations"]
    target: Literal["paper", "utility"]
    size: str  # the SAE width
    alpha: float | None  # the configured ridge penalty (None: cross-validated)
    n_triples: int
    seed: int
    run_dir: str
    hooks: tuple[str, ...]
    n_features: int
    protocols: Protocols
    top_features: tuple[TopFeature, ...]  # the largest coefficients, best first (standardised units)
    scatter: PerWord  # held-out words: the fitted probe's predictions
    seconds: float = 0.0
    notes: tuple[str, ...] = ()

    DIR, FILE, KEY = "probes", "linear_reward_{model}_{features}.json", {"model": "policy", "features": "sae"}

    def table(self) -> str:
        """A plain-text table of the headline numbers, one row per protocol and probe."""
        lines = [f"{'protocol':<15} {'probe':<22} {'tau':>7} {'tau+':>7} {'tau-':>7} {'rho':>7} {'sign':>6} {'pair':>6} {'R2':>7}"]
        for protocol, probes in self.protocols.items():
            for m in probes.rows():
                a, p, n = m.all, m.positive, m.negative
                lines.append(f"{protocol:<15} {m.label:<22} {a.kendall_tau:7.3f} {p.kendall_tau:7.3f} {n.kendall_tau:7.3f} "
                             f"{a.spearman:7.3f} {a.sign_accuracy:6.3f} {a.pairwise_accuracy:6.3f} {m.r2:7.3f}")
        return "\n".join(lines)
