"""Which latents carry the reward gain: attribution patching, direct effects, and real splicing.

Any dictionary at a hook is seen the same way: per token, each latent i contributes a
difference Delta_i = c_i * d_i between the policy's activation and the base's. What c and d
are depends on the dictionary:
- an SAE (the policy's or the base's): c = f(x_policy) - f(x_base), d = its decoder row;
- a crosscoder: c = its shared code of (x_base, x_policy), d = policy decoder - base decoder;
- an SAE on differences: c = f(x_policy - x_base), d = its decoder row;
- directions with no encoder (the difference dictionary's decoder): c = (x_policy - x_base) . d
  for unit d; a set of them is spliced as the projection of the difference onto their span
  (summing non-orthogonal projections would count shared parts twice and overshoot).

Splicing a set S of latents puts sum_{i in S} Delta_i into the base (the base keeps
everything else, its own error term included) or takes it out of the policy. Attribution
patching ranks latents by grad_x E_base . Delta_i summed over tokens (one backward pass);
the direct effect uses only the path through the final layer norm (its scale frozen, as
TransformerLens's ``apply_ln_to_stack``) and the unembedding. Written here because neither
SAE-Lens nor TransformerLens scores dictionary latents against a custom expected-utility metric.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import torch
from einops import einsum
from jaxtyping import Float
from torch import Tensor
from transformer_lens.hook_points import HookPoint

from analysis.reward_gain import Completions, GainSplit, expected_reward, expected_utility, target_rows
from rlhf.hooked import HookedModel, final_norm_gain

Codes = Callable[[Tensor, Tensor], Tensor]  # (x_base, x_policy) of shape (..., d) -> per-latent c of shape (..., m)


@dataclass
class Dictionary:
    """A dictionary at one hook, as per-latent differences Delta_i = c_i * d_i (see the module docstring)."""

    name: str
    hook: str
    codes: Codes
    directions: Float[Tensor, "latents d"]
    span: bool = False  # splice a set as the projection of the difference onto its directions' span
    reads: str | None = None  # the hook its codes read where not ``hook`` (a transcoder: the MLP's input)

    @property
    def n_latents(self) -> int:
        return self.directions.shape[0]


def sae_dictionary(name: str, hook: str, sae: torch.nn.Module) -> Dictionary:
    return Dictionary(name, hook, lambda b, p: sae.encode(p) - sae.encode(b), sae.W_dec.detach())


def transcoder_dictionary(name: str, hook: str, reads: str, transcoder: torch.nn.Module) -> Dictionary:
    """An MLP transcoder: codes of the MLP's inputs (at ``reads``), directions in the MLP's output (``hook``)."""
    return Dictionary(name, hook, lambda b, p: transcoder.encode(p) - transcoder.encode(b), transcoder.W_dec.detach(),
                      reads=reads)


def difference_sae_dictionary(name: str, hook: str, sae: torch.nn.Module) -> Dictionary:
    return Dictionary(name, hook, lambda b, p: sae.encode(p - b), sae.W_dec.detach())


def crosscoder_dictionary(name: str, hook: str, crosscoder: torch.nn.Module) -> Dictionary:
    """A base/policy crosscoder (stream 0 base, 1 policy): its decoders in each model's own units."""
    dec = (crosscoder.W_dec / crosscoder.out_scale[None, :, None]).detach()

    def codes(b: Tensor, p: Tensor) -> Tensor:
        flat = torch.stack([b, p], -2).reshape(-1, 2, b.shape[-1])
        return crosscoder.encode(flat).reshape(*b.shape[:-1], -1)

    return Dictionary(name, hook, codes, dec[:, 1] - dec[:, 0])


def direction_dictionary(name: str, hook: str, directions: Float[Tensor, "latents d"]) -> Dictionary:
    unit = directions.detach() / directions.detach().norm(dim=-1, keepdim=True).clamp(min=1e-12)
    return Dictionary(name, hook, lambda b, p: (p - b) @ unit.T, unit, span=True)


@dataclass
class Encoded:
    """A dictionary's per-group codes on a batch, and which latents are live there."""

    dictionary: Dictionary
    codes: list[Float[Tensor, "_batch _pos latents"]]
    differences: list[Float[Tensor, "_batch _pos d"]]  # x_policy - x_base

    @property
    def live(self) -> list[int]:
        """Latents with a nonzero difference somewhere in the batch (beyond float32 rounding of a
        projection): a latent that never fires is a training artefact, not something the fine-tune added."""
        largest = torch.stack([c.abs().flatten(0, 1).amax(0) for c in self.codes]).amax(0)
        return [int(i) for i in (largest > 1e-5 * largest.max().clamp(min=1e-30)).nonzero()[:, 0]]

    def delta(self, group: int, latents: list[int]) -> Float[Tensor, "batch pos d"]:
        idx = torch.tensor(latents, dtype=torch.long)
        if self.dictionary.span:
            basis, _ = torch.linalg.qr(self.dictionary.directions[idx].T)  # (d, k), orthonormal columns
            return (self.differences[group] @ basis) @ basis.T
        return einsum(self.codes[group][..., idx], self.dictionary.directions[idx], "b p m, m d -> b p d")


@torch.no_grad()
def encode(dictionary: Dictionary, base_acts: list[Tensor], policy_acts: list[Tensor],
           read: tuple[list[Tensor], list[Tensor]] | None = None) -> Encoded:
    """The dictionary's codes on each group, from the activations at its hook (base, policy), or from ``read``:
    the (base, policy) activations at ``dictionary.reads``."""
    pairs = [(b.float(), p.float()) for b, p in zip(base_acts, policy_acts)]
    inputs = [(b.float(), p.float()) for b, p in zip(*read)] if read is not None else pairs
    return Encoded(dictionary, [dictionary.codes(b, p) for b, p in inputs], [p - b for b, p in pairs])


def gradients(model: HookedModel, batch: Completions, hook: str) -> list[Tensor]:
    """d(summed expected utility) / d(activation at ``hook``), per group: one backward pass each."""
    return site_gradients(model, batch, [hook])[hook]


def site_gradients(model: HookedModel, batch: Completions, hooks: list[str],
                   values: dict[str, list[Tensor]] | None = None) -> dict[str, list[Tensor]]:
    """d(summed expected utility) / d(activation at each hook), total (through every later hook), per group,
    all from one backward pass per group; ``hooks`` in the order the forward pass reaches them. ``values``
    replaces a hook's activation (group by group) first: the gradient is then taken at that value, as
    integrated gradients needs."""
    out: dict[str, list[Tensor]] = {h: [] for h in hooks}
    for g, ((tokens, scored), u) in enumerate(zip(batch.groups, batch.utility)):
        # A zero added at each hook is a leaf whose gradient is the activation's total one; the activation
        # itself stays in the graph, so a later hook's gradient flows back through it.
        zeros: dict[str, Tensor] = {}

        def shift(x: Tensor, hook: HookPoint, name: str, g: int = g, zeros: dict = zeros) -> Tensor:
            # ``name`` as asked: the bridge's hook point may carry another name (its own for the alias)
            if values is not None and name in values:
                x = values[name][g].to(x.device, x.dtype)
            elif name == hooks[0]:
                x = x.detach()  # nothing before the first hook needs a graph
            zeros[name] = torch.zeros_like(x, requires_grad=True)
            return x + zeros[name]

        with torch.enable_grad():
            logits = model.run_with_hooks(tokens, fwd_hooks=[(h, functools.partial(shift, name=h)) for h in hooks])
            total = target_rows(logits, tokens, scored, u, batch.target).sum()
            grads = torch.autograd.grad(total, [zeros[h] for h in hooks])
        for h, grad in zip(hooks, grads):
            out[h].append(grad.detach())
    return out


@torch.no_grad()
def direct_gradients(model: HookedModel, batch: Completions) -> list[Tensor]:
    """The same gradient through the direct path only: residual -> final norm (scale frozen) -> unembedding."""
    out = []
    centre = model.cfg.normalization_type in ("LN", "LNPre")
    gain = final_norm_gain(model)
    for (tokens, scored), u in zip(batch.groups, batch.utility):
        logits, cache = model.run_with_cache(tokens, names_filter=lambda n: n == "ln_final.hook_scale")
        probs = torch.softmax(logits.float(), -1)
        u = u.to(probs.device).float()[:, None, :]  # each row's u(t | its prompt), at every position
        if batch.target == "log_ratio":  # d log p(next token) / d logits = onehot(next token) - p
            chosen = torch.zeros_like(probs)
            chosen[:, :-1].scatter_(-1, tokens[:, 1:, None], 1.0)
            d_logits = (chosen - probs) * scored[..., None]
        else:
            d_logits = probs * (u - expected_utility(probs, u[:, 0])[..., None]) * scored[..., None]
        grad = d_logits @ model.W_U.T / cache["ln_final.hook_scale"] * gain
        out.append(grad - grad.mean(-1, keepdim=True) if centre else grad)
    return out


def latent_scores(encoded: Encoded, grads: list[Tensor]) -> Float[Tensor, " latents"]:
    """Sum over tokens of grad . Delta_i, per latent: the linear estimate of each latent's share of E_policy - E_base."""
    dirs = encoded.dictionary.directions
    return sum(einsum(c, g.float() @ dirs.T, "b p m, b p m -> m") for c, g in zip(encoded.codes, grads))


def splice_fractions(base: HookedModel, policy: HookedModel, batch: Completions,
                     encoded: Encoded, latents: list[int], split: GainSplit) -> tuple[float, float]:
    """The fraction of G the latents recover when spliced into the base, and remove when taken out of the policy."""
    into_base, out_of_policy = spliced(base, policy, batch, encoded, latents)
    return (into_base - split.base) / split.gain, (split.policy - out_of_policy) / split.gain


def spliced(base: HookedModel, policy: HookedModel, batch: Completions,
            encoded: Encoded, latents: list[int]) -> tuple[float, float]:
    """Mean expected reward of the base with the latents' differences added at the hook, and of the
    policy with them taken out."""
    hook = encoded.dictionary.hook
    results = []
    for model, sign in ((base, 1.0), (policy, -1.0)):
        rows = []
        for g in range(len(batch.groups)):
            delta = encoded.delta(g, latents)
            hooks = [(hook, lambda x, hook, d=delta, s=sign: x + s * d.to(x.device, x.dtype))]
            rows.append(expected_reward(model, batch.group(g), hooks))
        results.append(float(torch.cat(rows).mean()))
    return results[0], results[1]
