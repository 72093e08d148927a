"""A reward-model head that exists only for the tests: one output trained with a hinge loss on the
margin, max(0, 1 - (r_chosen - r_rejected)). Registering it (one entry in
rlhf.reward_kinds.REWARD_HEADS) is all a new head takes: configs accept its name, the reward-model
trainer trains it, ``score`` reads it, and ``study:reward_<name>`` names it as a reward."""

from __future__ import annotations

import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from rlhf.reward_models import Head


def hinge(chosen: Float[Tensor, "b 1"], rejected: Float[Tensor, "b 1"]) -> Float[Tensor, " b"]:
    return F.relu(1 - (chosen[:, 0] - rejected[:, 0]))


def point(outputs: Float[Tensor, "b 1"]) -> tuple[Float[Tensor, " b"], Float[Tensor, " b"]]:
    return outputs[:, 0], 0 * outputs[:, 0]


HINGE = Head(1, hinge, point, distributional=False)
