"""The kinds of sparse dictionary (SAE architectures) that ``dictionaries.architecture`` can name:
how each is built and which of the dictionaries stage's settings it reads. Light on purpose (configs
are checked with it before torch loads, the report names a kind by its label); a kind's builder is
imported only when an SAE is made. Adding a kind is one module with its builder and one entry here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from rlhf.configtypes import OneOf
from rlhf.registry import load


@dataclass(frozen=True)
class DictionaryKind:
    """A dictionary kind's contract with the dictionaries stage and the report."""

    # "module:callable", (d_in=, d_sae=, normalize_activations=, **the settings it reads) -> the SAE-Lens
    # TrainingSAEConfig of an untrained SAE; SAE-Lens finds its class by the config's architecture().
    build: str
    label: str  # how the report names it
    # The DictionaryConfig fields handed to ``build`` under their own names (its sparsity settings):
    # the others do not apply to this kind.
    reads: tuple[str, ...] = ()

    def builder(self) -> Callable[..., Any]:
        return load(self.build)


DICTIONARY_KINDS: dict[str, DictionaryKind] = {
    "standard": DictionaryKind("sae_lens:StandardTrainingSAEConfig", "ReLU SAE with an L1 penalty", ("l1_coefficient",)),
    "topk": DictionaryKind("sae_lens:TopKTrainingSAEConfig", "TopK SAE (k latents per token)", ("k",)),
    "batchtopk": DictionaryKind("sae_lens:BatchTopKTrainingSAEConfig", "BatchTopK SAE (k latents per token on average)",
                                ("k",)),
}
DictionaryKindName = Annotated[str, OneOf(lambda: tuple(DICTIONARY_KINDS))]
