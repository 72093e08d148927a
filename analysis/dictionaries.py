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
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from jaxtyping import Float
from sae_lens import SAE, LoggingConfig
from sae_lens.config import SAETrainerConfig
from sae_lens.saes.batchtopk_sae import BatchTopKTrainingSAE, BatchTopKTrainingSAEConfig
from sae_lens.saes.standard_sae import StandardTrainingSAE, StandardTrainingSAEConfig
from sae_lens.saes.topk_sae import TopKTrainingSAE, TopKTrainingSAEConfig
from sae_lens.training.sae_trainer import SAETrainer
from safetensors.torch import load_file
from torch import Tensor
from tqdm.auto import tqdm

from analysis.activations import INDEX, hook_dir
from rlhf.errors import UserError
from rlhf.rundir import RunDir, atomic_dir, atomic_write_json, read_json

ARCHITECTURES = {
    "standard": (StandardTrainingSAE, StandardTrainingSAEConfig),
    "topk": (TopKTrainingSAE, TopKTrainingSAEConfig),
    "batchtopk": (BatchTopKTrainingSAE, BatchTopKTrainingSAEConfig),
}


@dataclass(frozen=True)
class DictionaryConfig:
    architecture: str = "standard"  # "standard" (L1, the paper's), "topk" or "batchtopk"
    widths: tuple[float, ...] = (1.0, 2.0)  # multiples of d_model
    l1_coefficient: float = 5.0  # standard only
    k: int = 16  # topk / batchtopk only
    training_tokens: int = 1_000_000
    batch_size: int = 4096
    learning_rate: float = 1e-3
    seed: int = 0


def size_name(width: float) -> str:
    return f"{width:g}x"


def sae_dir(run_dir: RunDir, model: str, hook: str, width: float) -> Path:
    return run_dir.root / "saes" / model / hook / size_name(width)


def stream(directory: Path, batch_size: int, seed: int) -> Iterator[Float[Tensor, "batch d"]]:
    """Endless shuffled batches from a cached hook: shards in random order each epoch, tokens
    shuffled within a shard. Only one shard is in memory."""
    shards = read_json(directory / INDEX)["shards"]
    rng = random.Random(seed)
    gen = torch.Generator().manual_seed(seed)
    while True:
        for name in rng.sample(shards, len(shards)):
            acts = load_file(str(directory / name))["activations"].float()
            acts = acts[torch.randperm(len(acts), generator=gen)]
            for start in range(0, len(acts) - batch_size + 1, batch_size):
                yield acts[start : start + batch_size]


def make_sae(cfg: DictionaryConfig, d_in: int, width: float) -> torch.nn.Module:
    if cfg.architecture not in ARCHITECTURES:
        raise UserError(f"dictionaries.architecture must be one of {', '.join(ARCHITECTURES)}, got {cfg.architecture!r}")
    sae_cls, config_cls = ARCHITECTURES[cfg.architecture]
    extra = {"l1_coefficient": cfg.l1_coefficient} if cfg.architecture == "standard" else {"k": cfg.k}
    torch.manual_seed(cfg.seed)
    return sae_cls(config_cls(d_in=d_in, d_sae=int(round(width * d_in)), normalize_activations="expected_average_only_in",
                              **extra))


def trainer_config(cfg: DictionaryConfig) -> SAETrainerConfig:
    """SAE-Lens's trainer settings for one dictionary: LR decays over the last fifth, no wandb."""
    return SAETrainerConfig(
        total_training_samples=cfg.training_tokens, train_batch_size_samples=cfg.batch_size, lr=cfg.learning_rate,
        lr_end=cfg.learning_rate / 10, lr_warm_up_steps=0, lr_decay_steps=cfg.training_tokens // cfg.batch_size // 5, device="cpu",
        dead_feature_window=200, feature_sampling_window=500, n_batches_for_norm_estimate=20,
        logger=LoggingConfig(log_to_wandb=False),
    )


def train_sae(cfg: DictionaryConfig, activations: Path, width: float, out: Path) -> Path:
    """Train one SAE on a cached hook and save it in SAE-Lens format to ``out``."""
    cache = read_json(activations / INDEX)
    d_in = cache["d"]
    sae = make_sae(cfg, d_in, width)
    trainer = SAETrainer(trainer_config(cfg), sae, stream(activations, cfg.batch_size, cfg.seed))
    trained = trainer.fit()  # folds the input-norm scaling into the weights
    trained.cfg.metadata.hook_name = cache["hook"]  # so the SAE says where it reads, as pretrained SAE-Lens SAEs do
    with atomic_dir(out) as work:
        trained.save_inference_model(work)
    return out


def dictionaries_stage(cfg: DictionaryConfig, run_dir: RunDir) -> Path:
    """Stage: every (model, hook, width) SAE; one finished SAE directory is never retrained,
    so a killed stage resumes with the next one."""
    index = read_json(run_dir.root / "activations" / INDEX)
    jobs = [(m, h, w) for m in index["models"] for h in index["hooks"] for w in cfg.widths]
    trained = []
    for model, hook, width in tqdm(jobs, desc="dictionaries", unit="sae"):
        out = sae_dir(run_dir, model, hook, width)
        if not (out / "cfg.json").exists():
            started = time.time()
            train_sae(cfg, hook_dir(run_dir, model, hook, "train"), width, out)
            atomic_write_json(out / "training.json", {"seconds": time.time() - started, "tokens": cfg.training_tokens,
                                                      "tokens_per_second": cfg.training_tokens / (time.time() - started)})
        trained.append({"model": model, "hook": hook, "size": size_name(width), "path": str(out.relative_to(run_dir.root))})
    path = run_dir.root / "saes" / INDEX
    atomic_write_json(path, {"architecture": cfg.architecture, "config": asdict(cfg), "saes": trained})
    return path


def load_sae(path: Path) -> SAE:
    return SAE.load_from_disk(str(path), device="cpu")
