"""Sparse dictionaries: SAE-Lens autoencoders trained on the cached activations.

For every chosen layer and every model, two SAEs of different widths (default 1x and
2x d_model) with the same sparsity setting. They train with SAE-Lens's ``SAETrainer``
on a data provider that streams the on-disk cache shard by shard, so each model's
forward pass over the corpus ran once for all its layers (the paper's code re-ran the
LM for every SAE batch and epoch). Saved in SAE-Lens format: ``SAE.load_from_disk``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import torch
from jaxtyping import Float
from sae_lens import SAE, LoggingConfig
from sae_lens.config import SAETrainerConfig
from sae_lens.registry import get_sae_training_class
from sae_lens.saes.sae import TrainingSAE
from sae_lens.training.sae_trainer import SAETrainer
from safetensors.torch import load_file
from torch import Tensor
from tqdm.auto import tqdm

from analysis.activations import input_hook
from analysis.config import DictionaryConfig  # noqa: F401  (re-exported: callers import it from here)
from analysis.dictionary_kinds import DICTIONARY_KINDS
from analysis.results import ActivationIndex, CachedHook, SAEEntry, SAEIndex, SAETraining, size_name
from analysis.transcoders import train_transcoder
from rlhf.errors import UserError
from rlhf.rundir import RunDir, atomic_dir, atomic_write_json
from rlhf.seeding import seeded

# Train with the dictionaries stage's own settings (DictionaryConfig) or with the ones it recorded in
# saes/index.json (SAETraining, the same fields): MMCS's other-seed SAE is trained from the record.
Settings = DictionaryConfig | SAETraining


def stream(directory: Path, batch_size: int, seed: int) -> Iterator[Float[Tensor, "batch d"]]:
    """Endless shuffled batches from a cached hook: shards in random order each epoch, tokens
    shuffled within a shard. Only one shard is in memory."""
    shards = list(CachedHook.read(directory).shards)
    rng = random.Random(seed)
    gen = torch.Generator().manual_seed(seed)
    while True:
        for name in rng.sample(shards, len(shards)):
            acts = load_file(str(directory / name))["activations"].float()
            acts = acts[torch.randperm(len(acts), generator=gen)]
            for start in range(0, len(acts) - batch_size + 1, batch_size):
                yield acts[start : start + batch_size]


def d_sae(d_in: int, width: float) -> int:
    return int(round(width * d_in))


def make_sae(cfg: Settings, d_in: int, width: float) -> TrainingSAE:
    """An untrained SAE of the kind ``cfg.architecture`` names (analysis.dictionary_kinds), built from the
    settings that kind reads."""
    kind = DICTIONARY_KINDS.get(cfg.architecture)
    if kind is None:  # a recorded setting (saes/index.json, a plain str) is checked where it is used
        raise UserError(f"dictionaries.architecture must be one of {', '.join(map(repr, DICTIONARY_KINDS))}; "
                        f"got {cfg.architecture!r}")
    with seeded(cfg.seed):  # SAE-Lens initialises from torch's global generator
        config = kind.builder()(d_in=d_in, d_sae=d_sae(d_in, width), normalize_activations="expected_average_only_in",
                                **{name: getattr(cfg, name) for name in kind.reads})
        return get_sae_training_class(config.architecture())[0](config)


def trainer_config(cfg: Settings) -> SAETrainerConfig:
    """SAE-Lens's trainer settings for one dictionary: LR decays over the last fifth, no wandb."""
    return SAETrainerConfig(
        total_training_samples=cfg.training_tokens, train_batch_size_samples=cfg.batch_size, lr=cfg.learning_rate,
        lr_end=cfg.learning_rate / 10, lr_warm_up_steps=0, lr_decay_steps=cfg.training_tokens // cfg.batch_size // 5, device="cpu",
        dead_feature_window=200, feature_sampling_window=500, n_batches_for_norm_estimate=20,
        logger=LoggingConfig(log_to_wandb=False),
    )


def train_sae(cfg: Settings, activations: Path, width: float, out: Path) -> Path:
    """Train one SAE on a cached hook and save it in SAE-Lens format to ``out``."""
    cache = CachedHook.read(activations)
    sae = make_sae(cfg, cache.d, width)
    trainer = SAETrainer(trainer_config(cfg), sae, stream(activations, cfg.batch_size, cfg.seed))
    trained = trainer.fit()  # folds the input-norm scaling into the weights
    trained.cfg.metadata.hook_name = cache.hook  # so the SAE says where it reads, as pretrained SAE-Lens SAEs do
    with atomic_dir(out) as work:
        trained.save_inference_model(work)
    return out


def dictionaries_stage(cfg: DictionaryConfig, run_dir: RunDir) -> SAEIndex:
    """Stage: every (model, hook, width) SAE; one finished SAE directory is never retrained,
    so a killed stage resumes with the next one."""
    index = ActivationIndex.load(run_dir)
    if cfg.transcoders:
        transcoder_outputs(index)  # before any training: a missing input is found at once
    jobs = [(m, h, w) for m in index.model_names for h in index.all_hooks
            for w in (cfg.extra_widths or cfg.widths if h in index.extra_hooks else cfg.widths)]
    trained = []
    for model, hook, width in tqdm(jobs, desc="dictionaries", unit="sae"):
        out = run_dir.sae(model, hook, size_name(width))
        activations = run_dir.activations(model, hook, "train")
        if not (out / "cfg.json").exists():
            started = time.time()
            train_sae(cfg, activations, width, out)
            atomic_write_json(out / "training.json", {"seconds": time.time() - started, "tokens": cfg.training_tokens,
                                                      "tokens_per_second": cfg.training_tokens / (time.time() - started)})
        d_in = CachedHook.read(activations).d
        trained.append(SAEEntry(model=model, hook=hook, size=size_name(width), path=str(out.relative_to(run_dir.root)),
                                width=width, d_in=d_in, d_sae=d_sae(d_in, width)))
    result = SAEIndex(architecture=cfg.architecture, config=SAETraining(**asdict(cfg)), saes=tuple(trained),
                      transcoders=tuple(transcoders_stage(cfg, run_dir, index)) if cfg.transcoders else ())
    result.save(run_dir)
    return result


def transcoder_outputs(index: ActivationIndex) -> list[str]:
    """The cached hook_mlp_out hooks whose MLP input is cached too (a UserError where there is none)."""
    outputs = [h for h in index.all_hooks if h.endswith(".hook_mlp_out") and input_hook(h) in index.transcoder_inputs]
    if not outputs:
        raise UserError("dictionaries.transcoders needs the MLPs' inputs cached beside their outputs: set "
                        "activations.transcoder_inputs = true, with hook_mlp_out cached (activations.hook or extra_hooks)")
    return outputs


def transcoders_stage(cfg: DictionaryConfig, run_dir: RunDir, index: ActivationIndex) -> list[SAEEntry]:
    """Every (model, hook_mlp_out, width) MLP transcoder, resumable like the SAEs."""
    outputs = transcoder_outputs(index)
    entries = []
    for model, hook, width in tqdm([(m, h, w) for m in index.model_names for h in outputs for w in cfg.widths],
                                   desc="transcoders", unit="transcoder"):
        out = run_dir.transcoder(model, hook, size_name(width))
        d_in = CachedHook.read(run_dir.activations(model, input_hook(hook), "train")).d
        if not (out / "cfg.json").exists():
            train_transcoder(cfg, run_dir.activations(model, input_hook(hook), "train"),
                             run_dir.activations(model, hook, "train"), d_sae(d_in, width), out, hook)
        entries.append(SAEEntry(model=model, hook=hook, size=size_name(width), path=str(out.relative_to(run_dir.root)),
                                width=width, d_in=d_in, d_sae=d_sae(d_in, width)))
    return entries


def load_sae(path: Path) -> SAE:
    return SAE.load_from_disk(str(path), device="cpu")
