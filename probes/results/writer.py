"""The writer probe (``probes/writer_probe_<model>_<features>.json``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from probes.results.linear_reward import TopFeature
from rlhf.artifact import Artifact


@dataclass(frozen=True)
class WriterProbeResult(Artifact):
    """``probes/writer_probe_<model>_<features>.json``: a ridge probe from a model's features at each
    completion position to the expected utility of the next token, scored on held-out prompts."""

    model: str
    features: Literal["sae", "activations"]
    size: str
    hooks: tuple[str, ...]
    n_features: int
    n_prompts: int
    train_positions: int
    test_positions: int
    alpha: float  # the ridge penalty used
    kendall_tau: float  # held-out positions: prediction vs expected next-token utility
    r2: float
    untrained_tau: float  # mean over random-weight probes (no fitting)
    untrained_tau_std: float
    untrained_r2: float
    top_features: tuple[TopFeature, ...]  # largest positive coefficients: features that write utility
    seed: int
    seconds: float = 0.0

    DIR, FILE, KEY = "probes", "writer_probe_{model}_{features}.json", {"model": "policy", "features": "sae"}
