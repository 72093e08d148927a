"""Sparse feature circuits (``analysis/circuits.json``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rlhf.artifact import Artifact


@dataclass(frozen=True)
class CheckedNode:
    """A top node's estimated effects beside its real one: what taking it alone out of the policy removes,
    as fractions of G."""

    node: str
    attribution: float
    integrated_gradients: float
    real: float


@dataclass(frozen=True)
class CircuitSeed:
    """One dictionary seed: the circuits of every budget, scored both ways."""

    seed: int
    gain: float  # G = target(policy) - target(base), on the policy's completions
    all_nodes: float  # faithfulness of the circuit of every node: 1 up to rounding
    empty: float  # faithfulness of the empty circuit: 0 up to rounding
    estimator: str  # "attribution" or "integrated_gradients": the estimate that ranked the nodes
    attribution_error: float  # mean |estimate - real| over the checked nodes, fractions of G
    integrated_gradients_error: float
    faithfulness: tuple[float, ...]  # per budget: the circuit alone recovers this share of G
    completeness: tuple[float, ...]  # per budget: the circuit taken out of the policy removes this share
    error_nodes: tuple[int, ...]  # per budget: error nodes in the circuit
    error_share: tuple[float, ...]  # per budget: the error nodes' share of the circuit's estimated effect
    # per budget: the top latents alone (no error node, no readout), as many as the budget
    latents_faithfulness: tuple[float, ...]
    latents_completeness: tuple[float, ...]
    errors_faithfulness: float  # the circuit of every error node alone
    errors_completeness: float
    readout: float  # what swapping the readout (final norm and unembedding) back removes
    checked: tuple[CheckedNode, ...]
    ranking: tuple[str, ...]  # the top nodes, best first (as many as the largest budget)


@dataclass(frozen=True)
class GraphNode:
    name: str  # "L{layer}/{latent}", "L{layer}/error" or "readout"
    layer: int | None
    kind: str  # "latent", "error", "readout"
    score: float  # estimated effect, fraction of G
    tokens: tuple[str, ...]  # the tokens where it carries the most


@dataclass(frozen=True)
class GraphEdge:
    source: str
    target: str
    weight: float  # fraction of G


@dataclass(frozen=True)
class CircuitsResult(Artifact):
    """``analysis/circuits.json``: the feature circuits of the policy's reward gain."""

    target: str  # what G measures: "utility" (the organism's exact expected utility) or "log_ratio"
    dictionary: str
    size: str
    hooks: tuple[str, ...]  # the sites, one per layer
    budgets: tuple[int, ...]
    n_prompts: int
    sampling_seed: int
    seeds: tuple[CircuitSeed, ...]
    graph_nodes: tuple[GraphNode, ...]  # the first seed's circuit at graph_budget
    graph_edges: tuple[GraphEdge, ...]
    graph_budget: int
    n_nodes: int  # every node: latents, error nodes, the readout
    seconds: float
    organism: str = "sentiment"
    config: dict[str, Any] = field(default_factory=dict)

    DIR, FILE = "analysis", "circuits.json"
    FIGURES = {"curves": "circuits_curves.png", "graph": "circuits_graph.png"}
