"""An SAE-Lens BatchTopK SAE trained on (policy - base) activations of the same tokens, its latents
ranked by the mass they reconstruct on held-out differences."""

from __future__ import annotations

import itertools
from pathlib import Path

import torch
from sae_lens import SAE, SAETrainer

from analysis.crosscoder import paired_stream
from analysis.dictionaries import DictionaryConfig, load_sae, make_sae, trainer_config
from analysis.diffing.method import Context, Found, HookData, chunks, pick, saved, work_dir
from analysis.feature_attribution import Dictionary, difference_sae_dictionary
from rlhf.rundir import RunDir, atomic_dir
from rlhf.seeding import seeded


def path(run_dir: RunDir, hook: str, seed: int) -> Path:
    """Where the SAE on differences of ``seed`` at ``hook`` is saved (an SAE-Lens directory)."""
    return work_dir(run_dir, hook) / f"difference_sae_seed{seed}"


def dictionary(name: str, run_dir: RunDir, hook: str, seed: int) -> Dictionary:
    """The SAE on differences of ``seed`` as reward attribution reads it: codes of policy - base."""
    return difference_sae_dictionary(name, hook, load_sae(saved(path(run_dir, hook, seed), name, hook)))


def _trained(ctx: Context, hook: str, seed: int, out: Path) -> SAE:
    """Trained on the crosscoder's schedule and its own number of tokens; one saved by an earlier run is reused."""
    if (out / "cfg.json").exists():
        return load_sae(out)
    cc = ctx.cfg.crosscoder
    dcfg = DictionaryConfig(architecture="batchtopk", k=cc.k, training_tokens=ctx.cfg.method("difference_sae").tokens,
                            batch_size=cc.batch_size, learning_rate=cc.learning_rate, seed=seed)
    pairs = paired_stream([ctx.run_dir.activations(m, hook, "train") for m in ("base", "policy")], cc.batch_size, seed)
    first = next(pairs)
    diffs = (b[:, 1] - b[:, 0] for b in itertools.chain([first], pairs))
    with seeded(seed):  # SAE-Lens takes no generator: its initialisation and training draw from the global one
        sae = make_sae(dcfg, first.shape[-1], cc.expansion)
        trained = SAETrainer(trainer_config(dcfg), sae, diffs).fit()
    trained.cfg.metadata.hook_name = hook
    with atomic_dir(out) as work:
        trained.save_inference_model(work)
    return load_sae(out)


def find(ctx: Context, at: HookData, seed: int) -> Found:
    sae = _trained(ctx, at.hook, seed, path(ctx.run_dir, at.hook, seed))
    codes = torch.cat([sae.encode(c).detach() for c in chunks(at.policy - at.base)])
    mass = codes.mean(0) * sae.W_dec.detach().norm(dim=-1)
    return pick(mass.argsort(descending=True).tolist(), codes, sae.W_dec.detach(), ctx.depth)
