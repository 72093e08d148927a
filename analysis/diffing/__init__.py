"""Model diffing scored against the reward the organism knows exactly: one module per method, one
interface, one registry.

Each method names what it calls policy-specific at a hook: latents with their held-out activations
and policy-space directions, or tokens (``method.Found``):
- ``mmcs_diff``: policy SAE features without a close base match, then those whose firing frequency
  changed most (the feature-diff stage's ranking);
- ``crosscoder_scaling`` / ``crosscoder_norm``: BatchTopK crosscoder latents leaning to the policy
  by relative decoder norm, ranked by latent scaling / by relative norm alone;
- ``difference_dictionary``: latents of a dictionary reading the base and writing the policy, ranked
  by how much they write along (policy - base);
- ``difference_sae``: an SAE-Lens BatchTopK SAE on (policy - base), ranked by the mass it reconstructs;
- ``activation_difference_lens``: the mean policy-minus-base activation on the first tokens of
  unrelated text, per position (Minder et al. 2025); its record is the logit lens and the base steered with it;
- ``stagewise_sae``: latents of the base's SAE that moved most when fine-tuned on the policy's
  activations (Bricken et al. 2024); its record is the movement table;
- ``kl``: the tokens the policy up-weights where its next-token distribution moved most;
- ``logit_amplification``: the tokens that become more frequent than in the policy's samples when
  sampling from base + a (policy - base), a > 1.
Every ranking counts only latents that fire on held-out text (``method.pick``); each finding records
how many it set aside. ``scoring`` scores every finding the same way; ``stage`` only orchestrates.

Adding a method is one module and one line: write ``find(ctx, at, seed) -> Found`` (``method.Find``;
``ctx`` is the stage's ``Context``, ``at`` one hook's ``HookData``; rank with ``method.pick`` so dead
latents are set aside, keep anything shared between registry entries in ``at.memo`` or ``ctx.memo``
via ``method.memo``, put the method's own numbers in ``Found.record``), and register it in
``registry.METHODS`` as ``"name": MethodSpec("module:find", "its label")`` (``names="tokens"`` when it
names tokens, ``per_seed=False`` when it has no dictionary seed of its own, ``dictionary=`` when
reward attribution should read its dictionary). The stage then runs, scores and ablates it at every
hook, and the report lists it under its label.
"""

from __future__ import annotations

from analysis.diffing.registry import METHODS, MethodSpec

__all__ = ["METHODS", "MethodSpec"]
