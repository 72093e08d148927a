"""Sequence-level and logistic reward probes, and DPO's implicit reward beside them."""

from __future__ import annotations

from dataclasses import dataclass

from probes.results.rankings import RankMetrics


@dataclass(frozen=True)
class RidgeByHook:
    """A ridge probe per hook from the completion's last token to its reward; the hook chosen
    on the training split. ``best`` and ``prediction`` are the chosen hook's."""

    best_hook: str
    best: RankMetrics
    per_hook: dict[str, RankMetrics]
    prediction: tuple[float, ...]  # on the test completions

    @property
    def kendall_tau(self) -> float:
        return self.best.kendall_tau

    @property
    def spearman(self) -> float:
        return self.best.spearman


@dataclass(frozen=True)
class LogisticResult:
    """Chosen vs rejected completion of each held-out pair, from activations averaged over the text."""

    accuracy: float
    auroc: float
    pairwise_accuracy: float
    n_train_pairs: int
    n_test_pairs: int


@dataclass(frozen=True)
class SequenceModelProbes:
    last_token: RidgeByHook
    logistic: LogisticResult | None = None  # None: too few pairs


@dataclass(frozen=True)
class DPOComparison:
    """DPO's implicit reward beta * log(pi / pi_ref) against the truth and the probe, on the test completions."""

    beta: float
    implicit_vs_true: RankMetrics
    probe_vs_true: RankMetrics
    probe_vs_implicit: RankMetrics


@dataclass(frozen=True)
class SequenceProbeResult:
    n_completions: int
    n_test: int
    reward_mean: float
    reward_std: float
    models: dict[str, SequenceModelProbes]  # model name -> its probes
    true_reward_test: tuple[float, ...]
    dpo: DPOComparison | None = None  # where the study trained a DPO policy
    seconds: float = 0.0
