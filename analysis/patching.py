"""Which layers and components carry the reward gain: activation patching and weight swaps.

Both directions, scored by the exact expected reward (``analysis.reward_gain``) on the same
teacher-forced completions:
- sufficiency: the policy's activation (or parameters) put into the base; the fraction of G
  recovered = (E_patched base - E_base) / G;
- necessity: the base's put into the policy; the fraction of G removed = (E_policy - E_patched policy) / G.

Sites: the embedding (``hook_embed``), each layer's ``hook_attn_out``, ``hook_mlp_out`` and
``hook_resid_post``, the unembedding (its weights with the final layer norm's, swapped: it
has no activation of its own), and "all": the final residual stream with the final layer norm
and unembedding, which turns one model into the other exactly.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor

from analysis.reward_gain import Completions, expected_reward
from rlhf.errors import UserError
from rlhf.hooked import HookedModel

UNEMBED = ("unembed.", "ln_final.")  # parameter prefixes of the unembedding "component"
ACTIVATION_COMPONENTS = ("attn_out", "mlp_out", "resid_post")
WEIGHT_COMPONENTS = {"attn": ("attn.", "ln1."), "mlp": ("mlp.", "ln2."), "block": ("",)}


@dataclass(frozen=True)
class Site:
    """One place to patch: a hook, parameter prefixes to swap, or both (the "all" site)."""

    name: str
    layer: int | None  # None: outside the layers (embedding, unembedding, all)
    component: str
    hook: str | None = None
    params: tuple[str, ...] = ()


def activation_sites(n_layers: int) -> list[Site]:
    sites = [Site("embed", None, "embed", hook="hook_embed")]
    sites += [Site(f"blocks.{layer}.hook_{c}", layer, c, hook=f"blocks.{layer}.hook_{c}")
              for layer in range(n_layers) for c in ACTIVATION_COMPONENTS]
    sites.append(Site("unembed", None, "unembed", params=UNEMBED))
    sites.append(Site("all", None, "all", hook=f"blocks.{n_layers - 1}.hook_resid_post", params=UNEMBED))
    return sites


def weight_sites(n_layers: int) -> list[Site]:
    sites = [Site("embed", None, "embed", params=("embed.",))]
    sites += [Site(f"blocks.{layer}.{c}", layer, c, params=tuple(f"blocks.{layer}.{p}" for p in prefixes))
              for layer in range(n_layers) for c, prefixes in WEIGHT_COMPONENTS.items()]
    sites.append(Site("unembed", None, "unembed", params=UNEMBED))
    sites.append(Site("all", None, "all", params=("",)))
    return sites


def check_pair(base: HookedModel, policy: HookedModel) -> None:
    """Patching needs the same architecture: the same parameter names and shapes."""
    a, b = base.state_dict(), policy.state_dict()
    differ = sorted(set(a) ^ set(b)) or [k for k in a if a[k].shape != b[k].shape]
    if differ:
        raise UserError(f"base and policy differ in architecture (first difference: {differ[0]}); "
                        "patching needs a fine-tune of the base")


@contextmanager
def swapped(target: HookedModel, source: HookedModel, prefixes: tuple[str, ...]) -> Iterator[None]:
    """``target`` with ``source``'s parameters (and buffers) under ``prefixes``, restored on exit."""
    # The bridge's state_dict names the live HF tensors (blocks.{l}.attn.q.weight, mlp.out.bias, ...),
    # so copying into them edits the forward pass; tied embeddings were untied at conversion.
    own = target.state_dict()
    theirs = source.state_dict()
    names = [k for k in own if any(k.startswith(p) for p in prefixes)]
    saved = {k: own[k].clone() for k in names}
    with torch.no_grad():
        for k in names:
            own[k].copy_(theirs[k])
    try:
        yield
    finally:
        with torch.no_grad():
            for k in names:
                own[k].copy_(saved[k])


def _patched(model: HookedModel, batch: Completions, site: Site,
             donor_acts: dict[str, list[Tensor]] | None, donor: HookedModel) -> float:
    """Mean expected reward of ``model`` with the donor's activation at the site's hook and the
    donor's parameters under its prefixes."""
    rows = []
    with swapped(model, donor, site.params):
        for g in range(len(batch.groups)):
            hooks = None
            if site.hook is not None:
                value = donor_acts[site.hook][g]
                hooks = [(site.hook, lambda x, hook, v=value: v.to(x.device, x.dtype))]
            rows.append(expected_reward(model, batch.group(g), hooks))
    return float(torch.cat(rows).mean())


@torch.no_grad()
def cache_sites(model: HookedModel, batch: Completions, hooks: list[str]) -> dict[str, list[Tensor]]:
    """Each hook's activation on each group of the batch."""
    out: dict[str, list[Tensor]] = {h: [] for h in hooks}
    for tokens, _ in batch.groups:
        _, cache = model.run_with_cache(tokens, names_filter=lambda name: name in out)
        for h in hooks:
            out[h].append(cache[h])
    return out


@dataclass(frozen=True)
class SiteEffect:
    site: Site
    recovered: float  # fraction of G recovered in the base
    removed: float  # fraction of G removed from the policy


def patch_sites(base: HookedModel, policy: HookedModel, batch: Completions,
                sites: list[Site], e_base: float, e_policy: float) -> list[SiteEffect]:
    """Every site in both directions, as fractions of G = e_policy - e_base."""
    check_pair(base, policy)
    gain = e_policy - e_base
    if abs(gain) < 1e-12:
        raise UserError("the policy's expected reward equals the base's on these completions: there is no gain to attribute")
    hooks = sorted({s.hook for s in sites if s.hook})
    # Weight swaps have no hook: no forward pass to cache anything.
    acts = {"base": cache_sites(base, batch, hooks), "policy": cache_sites(policy, batch, hooks)} if hooks else {"base": {}, "policy": {}}
    out = []
    for site in sites:
        into_base = _patched(base, batch, site, acts["policy"], policy)
        into_policy = _patched(policy, batch, site, acts["base"], base)
        out.append(SiteEffect(site, (into_base - e_base) / gain, (e_policy - into_policy) / gain))
    return out
