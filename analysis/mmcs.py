"""Max cosine similarity between dictionaries (MCS) and its mean (MMCS).

Dictionaries are (n_features, d) matrices of decoder rows. MMCS(D, D') = mean over the
rows of D of the largest cosine with any row of D'. The paper's one-to-one variant
pairs features with the Hungarian algorithm (scipy) so each feature of D' is used once.
The max variant is computed in chunks of D, so memory stays bounded by
chunk x n_features(D') however wide the dictionaries are.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from einops import einsum
from jaxtyping import Float, Int
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from analysis.config import MMCSConfig  # noqa: F401  (re-exported: callers import it from here)
from analysis.dictionaries import load_sae, train_sae
from analysis.results import Interval, MMCSAcross, MMCSResult, MMCSWithin, SAEIndex, SharedFeature
from rlhf.errors import UserError
from rlhf.rundir import RunDir

# The dictionaries' own axis names (d1, d2) are left apart in the annotations: the functions
# check the shapes themselves and name the mismatch in a UserError.


def _unit_rows(d: Float[Tensor, "..."], name: str) -> Float[Tensor, "n d"]:
    if d.ndim != 2 or len(d) == 0:
        raise UserError(f"dictionary {name} must be a non-empty (n_features, d) matrix, got shape {tuple(d.shape)}")
    norms = torch.linalg.norm(d.float(), dim=1)
    zero = (norms == 0).nonzero()
    if len(zero):
        raise UserError(f"dictionary {name} has {len(zero)} zero-norm rows (first: row {int(zero[0])}); "
                        "a zero direction has no cosine")
    return d.float() / norms[:, None]


def _check(d1: Float[Tensor, "..."], d2: Float[Tensor, "..."]) -> tuple[Float[Tensor, "n1 d"], Float[Tensor, "n2 d"]]:
    a, b = _unit_rows(d1, "D"), _unit_rows(d2, "D2")
    if a.shape[1] != b.shape[1]:
        raise UserError(f"dictionaries live in different spaces: d = {a.shape[1]} vs {b.shape[1]}")
    return a, b


@torch.no_grad()
def max_cosine(
    d1: Float[Tensor, "n1 d1"], d2: Float[Tensor, "n2 d2"], chunk: int | None = None
) -> tuple[Float[Tensor, " n1"], Int[Tensor, " n1"]]:
    """For each row of ``d1``: its largest cosine with a row of ``d2``, and that row's index.

    Rows of ``d1`` are taken ``chunk`` at a time; by default as many as keep one block of
    cosines at 2**26 floats (256 MB) whatever the widths."""
    a, b = _check(d1, d2)
    chunk = chunk or max(1, 2**26 // len(b))
    best, index = [], []
    for start in range(0, len(a), chunk):
        cos = einsum(a[start : start + chunk], b, "i d, j d -> i j")
        value, arg = cos.max(dim=1)
        best.append(value)
        index.append(arg)
    return torch.cat(best), torch.cat(index)


@torch.no_grad()
def hungarian_cosine(d1: Float[Tensor, "n1 d1"], d2: Float[Tensor, "n2 d2"]) -> tuple[Float[Tensor, " k"], Int[Tensor, "k 2"]]:
    """One-to-one matching maximising the summed cosine: min(n1, n2) pairs and their cosines."""
    a, b = _check(d1, d2)
    cos = einsum(a, b, "i d, j d -> i j")
    rows, cols = linear_sum_assignment(cos.numpy(), maximize=True)
    pairs = torch.stack([torch.as_tensor(rows), torch.as_tensor(cols)], dim=1)
    return cos[rows, cols], pairs


def mmcs(d1: Float[Tensor, "n1 d1"], d2: Float[Tensor, "n2 d2"], matching: str = "max") -> float:
    """Mean max cosine similarity of ``d1`` into ``d2`` ("max"), or the mean cosine of the
    one-to-one Hungarian matching ("hungarian"). ``matching`` is a plain ``str`` so that a wrong
    one is this function's named error."""
    if matching == "max":
        return float(max_cosine(d1, d2)[0].mean())
    if matching == "hungarian":
        return float(hungarian_cosine(d1, d2)[0].mean())
    raise UserError(f"matching must be 'max' or 'hungarian', got {matching!r}")


def random_directions(n: int, d: int, seed: int = 0) -> Float[Tensor, "n d"]:
    """Unit vectors drawn uniformly on the sphere: the null for MMCS."""
    x = torch.randn(n, d, generator=torch.Generator().manual_seed(seed))
    return x / torch.linalg.norm(x, dim=1, keepdim=True)


# -- the study stage ------------------------------------------------------------------------


def _interval(values: list[float]) -> Interval:
    """Mean and a 95% normal-approximation confidence interval."""
    t = torch.tensor(values, dtype=torch.float64)
    half = 1.96 * float(t.std()) / len(t) ** 0.5 if len(t) > 1 else 0.0
    return Interval(mean=float(t.mean()), low=float(t.mean()) - half, high=float(t.mean()) + half, n=len(t))


def mmcs_stage(cfg: MMCSConfig, run_dir: RunDir) -> MMCSResult:
    """Stage: small-into-big MMCS per model and layer against a random-direction null and an
    other-seed SAE; the top-k shared features; base-vs-policy MMCS per layer and size.

    The other-seed SAE is trained with the settings the dictionaries stage recorded in its index."""
    index = SAEIndex.load(run_dir)
    training = index.config
    small_w = min(training.widths)
    decoders: dict[tuple[str, str, str], Tensor] = {}
    for e in index.saes:
        decoders[(e.model, e.hook, e.size)] = load_sae(run_dir.sae(e.model, e.hook, e.size)).W_dec.detach()
    models = sorted({m for m, _, _ in decoders})
    small, big = index.small, index.big
    # Hooks with both sizes for every model (an extra hook kind may have one width: dictionaries.extra_widths).
    hooks = sorted(h for h in {h for _, h, _ in decoders}
                   if all((m, h, size) in decoders for m in {m for m, _, _ in decoders} for size in (small, big)))
    within = []
    for model in models:
        for hook in hooks:
            d_small, d_big = decoders[(model, hook, small)], decoders[(model, hook, big)]
            mcs, match = max_cosine(d_small, d_big)
            order = torch.argsort(mcs, descending=True)[: cfg.top_k]
            n, d = d_small.shape
            other_seed = None
            if cfg.seed_null:
                out = run_dir.sae(model, hook, small, seed=training.seed + 1)
                if not (out / "cfg.json").exists():
                    train_sae(replace(training, seed=training.seed + 1), run_dir.activations(model, hook, "train"),
                              small_w, out)
                other_seed = mmcs(d_small, load_sae(out).W_dec.detach())
            within.append(MMCSWithin(
                model=model, hook=hook, small=small, big=big,
                mmcs=float(mcs.mean()), mmcs_hungarian=mmcs(d_small, d_big, "hungarian"),
                random_null=_interval([mmcs(random_directions(n, d, 2 * s), random_directions(len(d_big), d, 2 * s + 1))
                                       for s in range(cfg.random_draws)]),
                shared=tuple(SharedFeature(feature=int(i), mcs=float(mcs[i]), big_match=int(match[i])) for i in order),
                other_seed_mmcs=other_seed,
            ))
    across = tuple(MMCSAcross(hook=hook, size=size,
                              policy_into_base=mmcs(decoders[("policy", hook, size)], decoders[("base", hook, size)]),
                              base_into_policy=mmcs(decoders[("base", hook, size)], decoders[("policy", hook, size)]))
                   for hook in hooks for size in (small, big) if {"base", "policy"} <= set(models))
    result = MMCSResult(within=tuple(within), base_vs_policy=across)
    result.save(run_dir)
    return result
