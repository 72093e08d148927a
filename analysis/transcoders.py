"""MLP transcoders: sparse dictionaries that read an MLP's input (``blocks.{l}.ln2.hook_normalized``) and
write its output (``blocks.{l}.hook_mlp_out``), so that a latent is a unit of the MLP's computation rather
than of what it wrote.

Saved as SAE-Lens ``Transcoder``s (``SAE.load_from_disk`` reads them back). Trained here because SAE-Lens
6.54 has the transcoder's inference class but no trainer for it (its ``SAETrainer`` reconstructs its own
input): a ReLU encoder, an L1 penalty weighted by the decoder norms and Adam with the learning rate decayed
over the last fifth, as its standard SAE is trained, with both sides scaled to unit mean square norm while
training and the scales folded into the weights after.
"""

from __future__ import annotations

from pathlib import Path

import torch
from sae_lens.saes.transcoder import Transcoder, TranscoderConfig
from tqdm.auto import tqdm

from analysis.activations import input_hook
from analysis.config import DictionaryConfig
from analysis.crosscoder import paired_stream
from analysis.results import CachedHook, SAETraining
from rlhf.rundir import atomic_dir
from rlhf.seeding import seeded


def train_transcoder(cfg: DictionaryConfig | SAETraining, inputs: Path, outputs: Path, m: int, out: Path,
                     hook: str) -> Path:
    """Train one transcoder of ``m`` latents from the cached MLP inputs to outputs (same tokens) and save it
    to ``out``."""
    d_in, d_out = CachedHook.read(inputs).d, CachedHook.read(outputs).d
    # An MLP's input and output are both d_model wide: the crosscoder's paired stream serves them (x[:, 0], x[:, 1]).
    stream = ((x[:, 0], x[:, 1]) for x in paired_stream([inputs, outputs], cfg.batch_size, cfg.seed))
    first = [next(stream) for _ in range(20)]
    scale_in = d_in ** 0.5 / float(torch.cat([x for x, _ in first]).norm(dim=-1).mean())
    scale_out = d_out ** 0.5 / float(torch.cat([y for _, y in first]).norm(dim=-1).mean())
    with seeded(cfg.seed):
        w_dec = torch.randn(m, d_out)
        w_dec = 0.1 * w_dec / w_dec.norm(dim=-1, keepdim=True)
        w_enc = torch.randn(d_in, m) * (0.1 / d_in ** 0.5)
    params = {"W_enc": w_enc.requires_grad_(), "b_enc": torch.zeros(m, requires_grad=True),
              "W_dec": w_dec.requires_grad_(), "b_dec": torch.cat([y for _, y in first]).mul(scale_out).mean(0).requires_grad_()}
    optimizer = torch.optim.Adam(params.values(), lr=cfg.learning_rate)
    steps = max(1, cfg.training_tokens // cfg.batch_size)
    decay = max(1, steps // 5)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: 1.0 if s < steps - decay else 1.0 - 0.9 * (s - (steps - decay)) / decay)
    for _ in tqdm(range(steps), desc=f"transcoder {hook}", unit="step", leave=False):
        x, y = next(stream)
        x, y = x * scale_in, y * scale_out
        f = torch.relu(x @ params["W_enc"] + params["b_enc"])
        reconstruction = f @ params["W_dec"] + params["b_dec"]
        mse = (reconstruction - y).pow(2).sum(-1).mean()
        sparsity = (f * params["W_dec"].norm(dim=-1)).sum(-1).mean()
        loss = mse + cfg.l1_coefficient * sparsity
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    transcoder = Transcoder(TranscoderConfig(d_in=d_in, d_sae=m, d_out=d_out, apply_b_dec_to_input=False))
    with torch.no_grad():  # fold the scales in: relu(s_in x W + b) and (f W_dec + b_dec) / s_out
        transcoder.W_enc.copy_(params["W_enc"] * scale_in)
        transcoder.b_enc.copy_(params["b_enc"])
        transcoder.W_dec.copy_(params["W_dec"] / scale_out)
        transcoder.b_dec.copy_(params["b_dec"] / scale_out)
    transcoder.cfg.metadata.hook_name = input_hook(hook)
    with atomic_dir(out) as work:
        transcoder.save_model(work)
    return out
