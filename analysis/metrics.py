"""Reconstruction quality shared by every dictionary (SAEs, crosscoders, difference dictionaries)."""

from __future__ import annotations

from jaxtyping import Float
from torch import Tensor


class ExplainedVariance:
    """Streaming fraction of variance explained: 1 - SSE / (summed squared deviation from the mean),
    accumulated batch by batch over any number of streams (``streams`` = 1 for a plain SAE)."""

    def __init__(self) -> None:
        self.n = 0
        self.sse: Tensor | None = None
        self.sums: Tensor | None = None
        self.sq_sums: Tensor | None = None

    def update(self, target: Float[Tensor, "batch *streams d"], reconstruction: Float[Tensor, "batch *streams d"]) -> None:
        if target.shape != reconstruction.shape:
            raise ValueError(f"target {tuple(target.shape)} and reconstruction {tuple(reconstruction.shape)} differ")
        target, reconstruction = target.double(), reconstruction.double()
        sse = ((target - reconstruction) ** 2).sum(-1).sum(0)
        sums, sq_sums = target.sum(0), (target**2).sum(-1).sum(0)
        if self.sse is None:
            self.sse, self.sums, self.sq_sums = sse, sums, sq_sums
        else:
            self.sse, self.sums, self.sq_sums = self.sse + sse, self.sums + sums, self.sq_sums + sq_sums
        self.n += len(target)

    def sum_squared_error(self) -> Float[Tensor, "*streams"]:
        return self.sse

    def compute(self) -> Float[Tensor, "*streams"]:
        """Explained variance per stream (a 0-d tensor for one stream)."""
        if self.n == 0:
            raise ValueError("no tokens were given to the explained-variance accumulator")
        total = self.sq_sums - (self.sums**2).sum(-1) / self.n
        return 1 - self.sse / total.clamp(min=1e-12)


def explained_variance(target: Float[Tensor, "batch *streams d"], reconstruction: Float[Tensor, "batch *streams d"]
                       ) -> Float[Tensor, "*streams"]:
    """Explained variance of one batch (see ``ExplainedVariance`` for many)."""
    acc = ExplainedVariance()
    acc.update(target, reconstruction)
    return acc.compute()

