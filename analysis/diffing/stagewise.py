"""Stage-wise SAE fine-tuning (Bricken et al. 2024, "Stage-wise model diffing").

The base's SAE-Lens SAE is fine-tuned on the policy's activations with SAE-Lens's own trainer.
Latents whose job the fine-tune left alone keep their encoder and decoder vectors; latents that
moved were recruited for what the policy does differently. Each latent's movement is
1 - min(encoder cosine, decoder cosine) between the fine-tuned and the base SAE: a latent that
turned in either what it reads or what it writes counts as moved. Only latents that fire on the
policy's held-out tokens are ranked; the others are counted and set aside.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Iterator
from pathlib import Path

import torch
from jaxtyping import Float
from sae_lens import SAE, SAETrainer
from sae_lens.saes.sae import TrainingSAE
from torch import Tensor

from analysis.activations import load_shards
from analysis.dictionaries import DictionaryConfig, load_sae, stream, trainer_config
from analysis.diffing.method import Context, Found, HookData, encode, pick
from analysis.results import MovedLatent, StagewiseSAE
from rlhf.rundir import RunDir


def load_for_training(path: Path) -> TrainingSAE:
    """A saved SAE-Lens SAE as its training class, with the training settings (L1 coefficient, k)
    its metadata records: the inference config leaves them out."""
    sae = TrainingSAE.load_from_disk(str(path))
    names = {f.name for f in dataclasses.fields(sae.cfg)}
    recorded = sae.cfg.metadata.training_architecture_details or {}
    sae.cfg = dataclasses.replace(sae.cfg, **{k: v for k, v in recorded.items() if k in names})
    return sae


def finetune_sae(path: Path, batches: Iterator[Float[Tensor, "batch d"]], *, training_tokens: int, batch_size: int,
                 learning_rate: float) -> TrainingSAE:
    """The SAE saved at ``path`` trained further on ``batches`` (the policy's activations) by SAE-Lens's trainer."""
    sae = load_for_training(path)
    first = next(batches)
    # SAE-Lens trained the base SAE on activations scaled to norm sqrt(d) and folded the scale into
    # the weights. Unfolded here and folded back by the trainer, so the L1 term weighs as it did.
    scale = math.sqrt(first.shape[-1]) / float(first.norm(dim=-1).mean())
    sae.fold_activation_norm_scaling_factor(1 / scale)
    settings = DictionaryConfig(training_tokens=training_tokens, batch_size=batch_size, learning_rate=learning_rate)
    trainer = SAETrainer(trainer_config(settings), sae, itertools.chain([first], batches))
    trainer.activation_scaler.scaling_factor = scale
    return trainer.fit()


def _cosine(a: Float[Tensor, "n d"], b: Float[Tensor, "n d"]) -> Float[Tensor, " n"]:
    return torch.nn.functional.cosine_similarity(a, b, dim=-1)


@torch.no_grad()
def _explained_variance(sae: SAE, x: Float[Tensor, "tokens d"]) -> float:
    error = sum(float(((sae.decode(sae.encode(c)) - c) ** 2).sum()) for c in x.split(4096))
    return 1 - error / float(((x - x.mean(0)) ** 2).sum())


@torch.no_grad()
def rank_moved(before: SAE, after: SAE, held_out: Float[Tensor, "tokens d"], top_k: int
               ) -> tuple[list[MovedLatent], int, Found]:
    """The live latents of ``after`` (firing on ``held_out``) ranked by movement from ``before``,
    how many never fire there, and the top ``top_k`` as a diffing method's latents."""
    enc = _cosine(after.W_enc.T.float(), before.W_enc.T.float())
    dec = _cosine(after.W_dec.float(), before.W_dec.float())
    norm_change = after.W_dec.norm(dim=-1) / before.W_dec.norm(dim=-1).clamp(min=1e-12) - 1
    codes = encode(after, held_out)
    frequency = (codes > 0).float().mean(0)
    movement = 1 - torch.minimum(enc, dec)
    ranked = [i for i in torch.argsort(movement, descending=True).tolist() if frequency[i] > 0]
    rows = [MovedLatent(latent=i, movement=float(movement[i]), encoder_cosine=float(enc[i]), decoder_cosine=float(dec[i]),
                        decoder_norm_change=float(norm_change[i]), frequency=float(frequency[i])) for i in ranked]
    found = pick(ranked, codes, after.W_dec.detach().float(), top_k)
    return rows, found.set_aside, found


def stagewise_sae(sae_path: Path, train: Iterator[Float[Tensor, "batch d"]], held_out: Float[Tensor, "tokens d"], *,
                  hook: str, training_tokens: int = 200_000, batch_size: int = 1024, learning_rate: float = 1e-3,
                  seed: int = 0, top_k: int = 10) -> tuple[StagewiseSAE, Found]:
    """Fine-tune the SAE at ``sae_path`` on ``train`` (policy activation batches), rank its latents by
    movement on the policy's ``held_out`` activations, and return the top ``top_k`` as a method's latents
    (fine-tuned codes on ``held_out``, fine-tuned decoder directions). ``seed`` only names the batches' order."""
    before = load_sae(sae_path)
    after = finetune_sae(sae_path, train, training_tokens=training_tokens, batch_size=batch_size,
                         learning_rate=learning_rate)
    rows, dead, found = rank_moved(before, after, held_out, top_k)
    return StagewiseSAE(
        hook=hook, training_tokens=training_tokens, seed=seed, latents=len(rows) + dead, live=len(rows), set_aside=dead,
        explained_variance_before=_explained_variance(before, held_out),
        explained_variance_after=_explained_variance(after, held_out), top=tuple(rows[:top_k])), found


def stagewise_at(run: RunDir, hook: str, size: str = "1x", *, training_tokens: int = 200_000, batch_size: int = 1024,
                 learning_rate: float = 1e-3, seed: int = 0, top_k: int = 10) -> tuple[StagewiseSAE, Found]:
    """``stagewise_sae`` on a run: the base's ``size`` SAE at ``hook``, fine-tuned on the policy's cached
    training activations (shuffled by ``seed``), ranked on its held-out ones."""
    held_out = torch.cat(list(load_shards(run.activations("policy", hook, "val"))))
    return stagewise_sae(run.sae("base", hook, size), stream(run.activations("policy", hook, "train"), batch_size, seed),
                         held_out, hook=hook, training_tokens=training_tokens, batch_size=batch_size,
                         learning_rate=learning_rate, seed=seed, top_k=top_k)


def find(ctx: Context, at: HookData, seed: int) -> Found:
    """The registry's interface: the base's SAE fine-tuned on the policy's training activations in the
    order ``seed`` draws, ranked on the held-out ones; the ``StagewiseSAE`` is the record."""
    cfg = ctx.cfg.method("stagewise_sae")
    train = stream(ctx.run_dir.activations("policy", at.hook, "train"), 1024, seed)
    record, found = stagewise_sae(ctx.run_dir.sae("base", at.hook, cfg.size), train, at.policy, hook=at.hook,
                                  training_tokens=cfg.tokens, learning_rate=cfg.learning_rate,
                                  seed=seed, top_k=ctx.depth)
    return dataclasses.replace(found, record=record)
