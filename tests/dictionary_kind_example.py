"""A dictionary kind that exists only for the tests: SAE-Lens's JumpReLU SAE, whose L0 penalty is weighted by
the dictionaries stage's ``l1_coefficient``. Registering it (one entry in analysis.dictionary_kinds.DICTIONARY_KINDS)
is all a new kind takes: configs accept its name, the dictionaries stage trains it, its index and the report name it."""

from __future__ import annotations

from sae_lens import JumpReLUTrainingSAEConfig


def jumprelu(*, d_in: int, d_sae: int, normalize_activations: str, l1_coefficient: float) -> JumpReLUTrainingSAEConfig:
    return JumpReLUTrainingSAEConfig(d_in=d_in, d_sae=d_sae, normalize_activations=normalize_activations,
                                     l0_coefficient=l1_coefficient)
