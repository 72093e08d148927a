"""The dictionaries stage's index (``saes/index.json``) and the SAEs' quality (``analysis/sae_metrics.json``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rlhf.artifact import Artifact
from rlhf.rundir import RunDir


def size_name(width: float) -> str:
    """A dictionary's size as it names its directory: width 2.0 -> "2x"."""
    return f"{width:g}x"


@dataclass(frozen=True)
class SAETraining:
    """The dictionaries stage's training settings, recorded so that a later stage (MMCS's
    other-seed SAE) trains one more dictionary exactly like these. Same fields as
    ``analysis.dictionaries.DictionaryConfig``."""

    architecture: str
    widths: tuple[float, ...]
    l1_coefficient: float
    k: int
    training_tokens: int
    batch_size: int
    learning_rate: float
    seed: int
    transcoders: bool = False
    extra_widths: tuple[float, ...] = ()


@dataclass(frozen=True)
class SAEEntry:
    model: str
    hook: str
    size: str  # size_name(width): the directory name under run.sae(...)
    path: str  # the SAE's directory, relative to the run directory (use run.sae(model, hook, size))
    width: float = 0.0  # multiple of d_model
    d_in: int = 0
    d_sae: int = 0


@dataclass(frozen=True)
class SAEIndex(Artifact):
    """``saes/index.json``: every trained dictionary and the settings they were trained with."""

    architecture: str
    config: SAETraining
    saes: tuple[SAEEntry, ...]
    transcoders: tuple[SAEEntry, ...] = ()  # MLP transcoders, by the hook_mlp_out they write (dictionaries.transcoders)

    @classmethod
    def path(cls, run: RunDir) -> Path:
        return run.saes_index

    @property
    def models(self) -> tuple[str, ...]:
        return tuple(sorted({e.model for e in self.saes}))

    @property
    def hooks(self) -> tuple[str, ...]:
        return tuple(sorted({e.hook for e in self.saes}))

    @property
    def sizes(self) -> tuple[str, ...]:
        return tuple(size_name(w) for w in sorted(self.config.widths))

    @property
    def small(self) -> str:
        return size_name(min(self.config.widths))

    @property
    def big(self) -> str:
        return size_name(max(self.config.widths))

    def entries(self, model: str | None = None, hook: str | None = None, size: str | None = None) -> tuple[SAEEntry, ...]:
        """The entries matching every given field."""
        return tuple(e for e in self.saes if (model is None or e.model == model) and (hook is None or e.hook == hook)
                     and (size is None or e.size == size))

    def find(self, model: str, hook: str, size: str) -> SAEEntry:
        """The one entry of (model, hook, size); a UserError naming what exists when there is none."""
        found = self.entries(model, hook, size)
        if not found:
            from rlhf.errors import UserError

            raise UserError(f"no {size} SAE for model {model!r} at {hook}; trained: models {', '.join(self.models)}, "
                            f"hooks {', '.join(self.hooks)}, sizes {', '.join(self.sizes)}")
        return found[0]




@dataclass(frozen=True)
class SAEMetrics:
    """One dictionary's held-out metrics."""

    model: str
    hook: str
    size: str
    path: str
    d_sae: int
    explained_variance: float
    mse: float
    l0: float
    dead_fraction: float
    tokens: int
    clean_loss: float
    spliced_loss: float
    zero_ablated_loss: float
    lm_loss_recovered: float
    passes: bool
    kind: str = "sae"  # "transcoder": reads the MLP's input, writes ``hook`` (its output)

    @property
    def splice_cost(self) -> float:
        """What splicing the reconstruction in costs, in nats/token of held-out LM loss."""
        return self.spliced_loss - self.clean_loss


@dataclass(frozen=True)
class QualityBars:
    explained_variance: float  # at least
    lm_loss_recovered: float  # at least
    dead_fraction: float  # at most
    splice_cost: float = 0.0  # nats/token: a splice costing no more passes the LM-loss bar whatever its ratio


@dataclass(frozen=True)
class SAEQualityResult(Artifact):
    """``analysis/sae_metrics.json``: every SAE's reconstruction and LM-loss metrics against the bars."""

    saes: tuple[SAEMetrics, ...]
    bars: QualityBars
    all_pass: bool
    seconds: float

    DIR, FILE, FIGURES = "analysis", "sae_metrics.json", {"metrics": "sae_metrics.png"}

    def find(self, model: str, hook: str, size: str) -> SAEMetrics:
        for row in self.saes:
            if (row.model, row.hook, row.size) == (model, hook, size):
                return row
        raise KeyError((model, hook, size))
