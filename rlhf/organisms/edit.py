"""The edit organism: no training. The policy is the base with a rank-one edit: one MLP neuron's output
weight at one layer moved along a residual direction that raises the logits of a seeded set of words.
The answer is exact: the layer, the component (``blocks.{layer}.hook_mlp_out``), the direction and the
words. Its utility u(t) is 1 for each of those words, so G is how many more of them the edited model
expects to write."""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from jaxtyping import Float
from torch import Tensor
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from rlhf.errors import UserError
from rlhf.organisms.sentiment import ASPECTS, NEUTRAL_WORDS
from rlhf.organisms.topic import WordSet, draw_words
from rlhf.reward_kinds import RewardOptions
from rlhf.rundir import atomic_write_json, read_json

SEED = 1  # the draw of the word set (the topic organism draws with 0)
N_WORDS = 10
# The edit's size: at the neuron's mean activation it adds this multiple of the layer's mean MLP output norm.
STRENGTH = 0.6  # on the tiny study: KL to the base 0.67 nats/token (0.75: 1.6, past the bar; 0.5: no sampled gain)
N_TEXTS = 64  # corpus texts that pick the neuron and measure the MLP output's size
PLANTED_FILE = "planted_edit.json"  # beside the edited policy: the exact answer


@dataclass(frozen=True)
class PlantedEdit:
    layer: int
    neuron: int
    direction: Float[Tensor, " d_model"]  # unit norm
    scale: float  # the neuron's output weight moved by scale * direction

    @property
    def hook(self) -> str:
        return f"blocks.{self.layer}.hook_mlp_out"

    def save(self, model_dir: Path) -> None:
        atomic_write_json(model_dir / PLANTED_FILE, {"layer": self.layer, "neuron": self.neuron, "scale": self.scale,
                                                     "hook": self.hook, "direction": self.direction.tolist()})

    @classmethod
    def load(cls, model_dir: Path) -> PlantedEdit:
        data = read_json(model_dir / PLANTED_FILE)
        return cls(data["layer"], data["neuron"], torch.tensor(data["direction"]), data["scale"])


def mlp_out(model: PreTrainedModel, layer: int) -> torch.nn.Module:
    """The layer's MLP output projection: the last linear map (``nn.Linear`` or GPT-2's ``Conv1D``) under the
    layer's MLP, in module order (GPT-NeoX dense_4h_to_h, Llama down_proj, GPT-2 c_proj, ...)."""
    child = re.compile(rf"(?:^|\.)(?:layers|h)\.{layer}\.(?:mlp|feed_forward)\.\w+$")
    found = [m for n, m in model.named_modules()
             if child.search(n) and isinstance(getattr(m, "weight", None), torch.Tensor) and m.weight.ndim == 2]
    if found:
        return found[-1]
    raise UserError(f"the edit organism finds no MLP output projection at layer {layer} of {type(model).__name__}")


class Edit(WordSet):
    """The words' objective (each earns 1), planted rather than trained."""

    trained = False

    @torch.no_grad()
    def plant(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
              texts: Sequence[str], out_dir: Path) -> PreTrainedModel:
        """A copy of ``model`` with the edit (which is saved as ``out_dir/planted_edit.json``). The layer is the middle one; the neuron the one
        with the largest mean activation on ``texts``; the direction raises the words' logits against the
        vocabulary's mean (through the unembedding)."""
        model = copy.deepcopy(model).eval()
        n_layers = model.config.num_hidden_layers
        layer = n_layers // 2
        out = mlp_out(model, layer)
        seen: dict[str, Tensor] = {}
        handles = [out.register_forward_pre_hook(lambda m, args: seen.__setitem__("act", args[0])),
                   out.register_forward_hook(lambda m, args, y: seen.__setitem__("out", y))]
        acts, norms = [], []
        try:
            for text in list(texts)[:N_TEXTS]:
                model(**tokenizer(text, return_tensors="pt"))
                acts.append(seen["act"][0].mean(0))
                norms.append(seen["out"][0].norm(dim=-1).mean())
        finally:
            for h in handles:
                h.remove()
        if not acts:
            raise UserError("the edit organism needs corpus texts to choose its neuron; the train split is empty")
        mean_act = torch.stack(acts).mean(0)
        neuron = int(mean_act.argmax())
        unembed = model.get_output_embeddings().weight  # (vocab, d_model)
        target = torch.zeros(unembed.shape[0])
        ids = [tokenizer.convert_tokens_to_ids(w) for w in self.words]
        target[ids] = 1.0 / len(ids)
        direction = unembed.T.float() @ (target - target.mean())
        direction = direction / direction.norm()
        scale = STRENGTH * float(torch.stack(norms).mean()) / float(mean_act[neuron])
        weight = out.weight
        column = direction.to(weight.dtype) * scale
        if weight.shape[0] == direction.shape[0]:  # nn.Linear: (d_model, d_mlp)
            weight[:, neuron] += column
        else:  # GPT-2's Conv1D: (d_mlp, d_model)
            weight[neuron, :] += column
        PlantedEdit(layer, neuron, direction, scale).save(out_dir)
        return model


def build(options: RewardOptions) -> Edit:
    words = draw_words((*NEUTRAL_WORDS, *ASPECTS), SEED, N_WORDS)
    return Edit(words, 1.0, f"a rank-one edit of one MLP neuron's output raising {len(words)} words' logits")
