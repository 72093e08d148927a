"""Sparse feature circuits: which dictionary latents, at every layer at once, carry the policy's reward gain.

Nodes are the latents of one dictionary at every layer's residual stream (``blocks.{l}.hook_resid_post``),
one error node per site (what the dictionary misses there, x - decode(encode(x))), and the readout: the
final norm and unembedding, whose weights the fine-tune changed too and which no activation carries.

A circuit C is scored by running the policy with every site rewritten as decode(f') + e': a node in C keeps
the value this run computes, every other node is frozen at its value on the base's own run (Marks et al.
2024, *Sparse feature circuits*, with the base as the counterfactual); the readout is the policy's if it is
in C, the base's otherwise. With every node in, that is the policy; with none, the base (its last residual
stream and readout are the base's). With m the exact target (``analysis.reward_gain``) and G = m(all) - m(none):
- faithfulness(C) = (m(C) - m(none)) / G: the circuit alone, everything else at the base's values;
- completeness(C) = (m(all) - m(all minus C)) / G: what taking the circuit out of the policy removes.

Node effects are estimated on the policy's run two ways: attribution patching (the node's change from the
base's value times the gradient of m there) and integrated gradients (each site interpolated from the base's
activation to the policy's, Marks et al.'s IG). The top nodes' estimates are checked against real
single-node patching, and the nodes are ranked by whichever estimate matched better. Edges join nodes of
adjacent layers (the residual stream at layer l + 1 carries everything from layer l onward):
dm/df_down . df_down/dx_up . (change of the upstream node).

Written here because no maintained library computes feature circuits on a custom metric for a
TransformerBridge with SAE-Lens dictionaries (the public implementations wrap their own models).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from einops import einsum
from jaxtyping import Bool, Float
from torch import Tensor
from transformer_lens.hook_points import HookPoint

from analysis.feature_attribution import site_gradients
from analysis.patching import UNEMBED, cache_sites, swapped
from analysis.reward_gain import Completions, expected_reward
from rlhf.errors import UserError
from rlhf.hooked import HookedModel

READOUT = "readout"


@dataclass
class Site:
    """One residual-stream site and the dictionary whose latents are its nodes (anything with SAE-Lens's
    ``encode`` and ``decode``)."""

    hook: str
    layer: int
    sae: torch.nn.Module

    @property
    def n_latents(self) -> int:
        return int(self.sae.W_dec.shape[0])


@dataclass(frozen=True)
class Node:
    """A latent (``latent`` set), a site's error node (``latent`` None), or the readout (``hook`` None)."""

    hook: str | None
    layer: int | None
    latent: int | None

    @property
    def kind(self) -> Literal["latent", "error", "readout"]:
        return "readout" if self.hook is None else "error" if self.latent is None else "latent"

    @property
    def name(self) -> str:
        if self.hook is None:
            return READOUT
        return f"L{self.layer}/{'error' if self.latent is None else self.latent}"


def nodes_of(sites: list[Site]) -> list[Node]:
    """Every node, in a fixed order: each site's latents then its error node, layer by layer, then the readout."""
    out = []
    for s in sites:
        out += [Node(s.hook, s.layer, i) for i in range(s.n_latents)] + [Node(s.hook, s.layer, None)]
    return [*out, Node(None, None, None)]


@dataclass
class Values:
    """Every node's value on one model's run, per site and group: the codes and the error term."""

    codes: dict[str, list[Float[Tensor, "_batch _pos latents"]]]
    errors: dict[str, list[Float[Tensor, "_batch _pos d"]]]
    activations: dict[str, list[Float[Tensor, "_batch _pos d"]]]


@torch.no_grad()
def node_values(model: HookedModel, batch: Completions, sites: list[Site]) -> Values:
    acts = cache_sites(model, batch, [s.hook for s in sites])
    codes, errors = {}, {}
    for s in sites:
        codes[s.hook] = [s.sae.encode(x.float()) for x in acts[s.hook]]
        errors[s.hook] = [x.float() - s.sae.decode(f) for x, f in zip(acts[s.hook], codes[s.hook])]
    return Values(codes, errors, {h: [x.float() for x in xs] for h, xs in acts.items()})


@dataclass
class Circuit:
    """Which nodes are in: per site a mask of its latents and whether its error node is, and the readout."""

    latents: dict[str, Bool[Tensor, " latents"]]
    errors: dict[str, bool]
    readout: bool

    @classmethod
    def of(cls, sites: list[Site], chosen: list[Node]) -> Circuit:
        latents = {s.hook: torch.zeros(s.n_latents, dtype=torch.bool) for s in sites}
        errors = {s.hook: False for s in sites}
        for n in chosen:
            if n.kind == "latent":
                latents[n.hook][n.latent] = True
            elif n.kind == "error":
                errors[n.hook] = True
        return cls(latents, errors, any(n.kind == "readout" for n in chosen))

    def complement(self) -> Circuit:
        return Circuit({h: ~m for h, m in self.latents.items()}, {h: not e for h, e in self.errors.items()},
                       not self.readout)


def circuit_value(policy: HookedModel, base: HookedModel, batch: Completions, sites: list[Site], frozen: Values,
                  circuit: Circuit) -> float:
    """Mean target of the policy run with the circuit's nodes computed and every other node at the base's value."""
    rows = []
    readout = contextlib.nullcontext() if circuit.readout else swapped(policy, base, UNEMBED)
    with readout:
        for g in range(len(batch.groups)):
            hooks = [(s.hook, _rewrite(s, circuit, frozen, g)) for s in sites]
            rows.append(expected_reward(policy, batch.group(g), hooks))
    return float(torch.cat(rows).mean())


def _rewrite(site: Site, circuit: Circuit, frozen: Values, g: int) -> Callable[[Tensor, HookPoint], Tensor]:
    """The forward hook that rewrites one site of group ``g`` as decode(f') + e' (see the module docstring)."""
    keep = circuit.latents[site.hook]
    base_codes, base_error = frozen.codes[site.hook][g], frozen.errors[site.hook][g]

    def rewrite(x: Float[Tensor, "batch pos d"], hook: HookPoint) -> Float[Tensor, "batch pos d"]:
        # No shortcut where every node is computed: the circuit of every node must give the policy back
        # through the decomposition itself, decode(f) + (x - decode(f)).
        f = site.sae.encode(x.float())
        error = x.float() - site.sae.decode(f) if circuit.errors[site.hook] else base_error
        f = torch.where(keep.to(f.device), f, base_codes.to(f.device))
        return (site.sae.decode(f) + error).to(x.dtype)

    return rewrite


# -- node effects ------------------------------------------------------------------------------------------


def node_scores(sites: list[Site], policy_values: Values, base_values: Values,
                grads: dict[str, list[Tensor]], n_rows: int) -> dict[str, tuple[Tensor, float]]:
    """Per site: each latent's sum over tokens of (f_policy - f_base) * (d_i . grad), and the error node's
    sum of (e_policy - e_base) . grad, over the rows: in the units of the mean target."""
    out = {}
    for s in sites:
        latent = torch.zeros(s.n_latents)
        error = 0.0
        for g, grad in enumerate(grads[s.hook]):
            delta_f = policy_values.codes[s.hook][g] - base_values.codes[s.hook][g]
            latent += einsum(delta_f, grad.float() @ s.sae.W_dec.detach().float().T, "b p m, b p m -> m").cpu()
            delta_e = policy_values.errors[s.hook][g] - base_values.errors[s.hook][g]
            error += float((delta_e * grad.float()).sum())
        out[s.hook] = (latent / n_rows, error / n_rows)
    return out


def integrated_gradient_scores(policy: HookedModel, batch: Completions, sites: list[Site], policy_values: Values,
                               base_values: Values, steps: int) -> dict[str, tuple[Tensor, float]]:
    """Integrated gradients: per site, the gradient averaged over the site's activation interpolated from the
    base's to the policy's (midpoints of ``steps`` intervals), the policy computing everything after it."""
    grads: dict[str, list[Tensor]] = {}
    for s in sites:
        total: list[Tensor] | None = None
        for step in range(steps):
            alpha = (step + 0.5) / steps
            values = [b + alpha * (p - b) for b, p in zip(base_values.activations[s.hook], policy_values.activations[s.hook])]
            g = site_gradients(policy, batch, [s.hook], {s.hook: values})[s.hook]
            total = g if total is None else [t + x for t, x in zip(total, g)]
        grads[s.hook] = [t / steps for t in total]
    return node_scores(sites, policy_values, base_values, grads, batch.n_rows)


def flat(sites: list[Site], scores: dict[str, tuple[Tensor, float]], readout: float) -> Float[Tensor, " nodes"]:
    """Scores in ``nodes_of``'s order."""
    parts = []
    for s in sites:
        latent, error = scores[s.hook]
        parts += [latent, torch.tensor([error])]
    return torch.cat([*parts, torch.tensor([readout])])


def budget_check(sites: list[Site], budgets: tuple[int, ...]) -> None:
    n = sum(s.n_latents + 1 for s in sites) + 1
    if max(budgets) > n:
        raise UserError(f"circuits.budgets goes up to {max(budgets)}, but the dictionaries have {n} nodes in all "
                        f"(latents, one error node per site, the readout); lower the largest budget")


# -- edges -------------------------------------------------------------------------------------------------


def edges(policy: HookedModel, batch: Completions, sites: list[Site], chosen: list[Node], policy_values: Values,
          base_values: Values, grads: dict[str, list[Tensor]]) -> list[tuple[Node, Node, float]]:
    """Edges between chosen nodes of adjacent layers: sum over tokens of dm/dv_down (the downstream node's
    gradient on the policy's run, held fixed) times dv_down/dx_up applied to the upstream node's change."""
    by_layer = {s.layer: s for s in sites}
    out = []
    for down_site in sites:
        up_site = by_layer.get(down_site.layer - 1)
        if up_site is None:
            continue
        ups = [n for n in chosen if n.hook == up_site.hook]
        downs = [n for n in chosen if n.hook == down_site.hook]
        if not ups or not downs:
            continue
        weights = torch.zeros(len(ups), len(downs))
        for g, (tokens, _) in enumerate(batch.groups):
            kept: dict[str, Tensor] = {}

            def leaf(x: Tensor, hook: HookPoint, kept: dict = kept) -> Tensor:
                kept["up"] = x.detach().float().requires_grad_(True)
                return kept["up"].to(x.dtype)

            def keep(x: Tensor, hook: HookPoint, kept: dict = kept) -> Tensor:
                kept["down"] = x
                return x

            with torch.enable_grad():
                policy.run_with_hooks(tokens, fwd_hooks=[(up_site.hook, leaf), (down_site.hook, keep)])
                x_down = kept["down"].float()
                f_down = down_site.sae.encode(x_down)
                grad_down = grads[down_site.hook][g].float()
                deltas = torch.stack([_delta(up_site, n, policy_values, base_values, g) for n in ups])  # (ups, b, p, d)
                for j, n in enumerate(downs):
                    if n.latent is None:  # the error node: dm/de = the site's gradient
                        value = ((x_down - down_site.sae.decode(f_down)) * grad_down).sum()
                    else:
                        value = (f_down[..., n.latent] * (grad_down @ down_site.sae.W_dec[n.latent].float())).sum()
                    (d_up,) = torch.autograd.grad(value, kept["up"], retain_graph=j < len(downs) - 1)
                    weights[:, j] += einsum(deltas, d_up.detach(), "u b p d, b p d -> u").cpu()
        out += [(u, d, float(weights[i, j]) / batch.n_rows) for i, u in enumerate(ups) for j, d in enumerate(downs)]
    return out


def _delta(site: Site, node: Node, policy_values: Values, base_values: Values, g: int) -> Tensor:
    """The node's change at its site, policy minus base, as a vector per token."""
    if node.latent is None:
        return policy_values.errors[site.hook][g] - base_values.errors[site.hook][g]
    c = policy_values.codes[site.hook][g][..., node.latent] - base_values.codes[site.hook][g][..., node.latent]
    return c[..., None] * site.sae.W_dec[node.latent].detach().float()


def node_token_contributions(sites: list[Site], node: Node, policy_values: Values, base_values: Values,
                             grads: dict[str, list[Tensor]], batch: Completions) -> list[tuple[int, float]]:
    """(token id, contribution) of every token position: the node's change times the gradient there; the
    token is the one at that position (the one the node's value is computed on)."""
    site = next(s for s in sites if s.hook == node.hook)
    out = []
    for g, (tokens, _) in enumerate(batch.groups):
        per_token = (_delta(site, node, policy_values, base_values, g) * grads[site.hook][g].float()).sum(-1)
        out += list(zip(tokens.flatten().tolist(), per_token.flatten().tolist()))
    return out
