"""Max cosine similarity between dictionaries (MCS) and its mean (MMCS).

Dictionaries are (n_features, d) matrices of decoder rows. MMCS(D, D') = mean over the
rows of D of the largest cosine with any row of D'. The paper's one-to-one variant
pairs features with the Hungarian algorithm (scipy) so each feature of D' is used once.
The max variant is computed in chunks of D, so memory stays bounded by
chunk x n_features(D') however wide the dictionaries are.
"""

from __future__ import annotations

from typing import Literal

import torch
from einops import einsum
from jaxtyping import Float, Int
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from rlhf.errors import UserError


def _unit_rows(d: Float[Tensor, "n d"], name: str) -> Float[Tensor, "n d"]:
    if d.ndim != 2 or len(d) == 0:
        raise UserError(f"dictionary {name} must be a non-empty (n_features, d) matrix, got shape {tuple(d.shape)}")
    norms = torch.linalg.norm(d.float(), dim=1)
    zero = (norms == 0).nonzero()
    if len(zero):
        raise UserError(f"dictionary {name} has {len(zero)} zero-norm rows (first: row {int(zero[0])}); "
                        "a zero direction has no cosine")
    return d.float() / norms[:, None]


def _check(d1: Tensor, d2: Tensor) -> tuple[Tensor, Tensor]:
    a, b = _unit_rows(d1, "D"), _unit_rows(d2, "D2")
    if a.shape[1] != b.shape[1]:
        raise UserError(f"dictionaries live in different spaces: d = {a.shape[1]} vs {b.shape[1]}")
    return a, b


@torch.no_grad()
def max_cosine(
    d1: Float[Tensor, "n1 d"], d2: Float[Tensor, "n2 d"], chunk: int = 4096
) -> tuple[Float[Tensor, " n1"], Int[Tensor, " n1"]]:
    """For each row of ``d1``: its largest cosine with a row of ``d2``, and that row's index."""
    a, b = _check(d1, d2)
    best, index = [], []
    for start in range(0, len(a), chunk):
        cos = einsum(a[start : start + chunk], b, "i d, j d -> i j")
        value, arg = cos.max(dim=1)
        best.append(value)
        index.append(arg)
    return torch.cat(best), torch.cat(index)


@torch.no_grad()
def hungarian_cosine(d1: Float[Tensor, "n1 d"], d2: Float[Tensor, "n2 d"]) -> tuple[Float[Tensor, " k"], Int[Tensor, "k 2"]]:
    """One-to-one matching maximising the summed cosine: min(n1, n2) pairs and their cosines."""
    a, b = _check(d1, d2)
    cos = einsum(a, b, "i d, j d -> i j")
    rows, cols = linear_sum_assignment(cos.numpy(), maximize=True)
    pairs = torch.stack([torch.as_tensor(rows), torch.as_tensor(cols)], dim=1)
    return cos[rows, cols], pairs


def mmcs(d1: Float[Tensor, "n1 d"], d2: Float[Tensor, "n2 d"], matching: Literal["max", "hungarian"] = "max") -> float:
    """Mean max cosine similarity of ``d1`` into ``d2`` ("max"), or the mean cosine of the
    one-to-one Hungarian matching ("hungarian")."""
    if matching == "max":
        return float(max_cosine(d1, d2)[0].mean())
    if matching == "hungarian":
        return float(hungarian_cosine(d1, d2)[0].mean())
    raise UserError(f"matching must be 'max' or 'hungarian', got {matching!r}")


def random_directions(n: int, d: int, seed: int = 0) -> Float[Tensor, "n d"]:
    """Unit vectors drawn uniformly on the sphere: the null for MMCS."""
    x = torch.randn(n, d, generator=torch.Generator().manual_seed(seed))
    return x / torch.linalg.norm(x, dim=1, keepdim=True)
