"""SAE dictionaries for a whole study: cache once vs re-run the LM for every SAE batch.

    .venv/bin/python bench/sae_training.py --run-dir runs/sentiment [--sae-tokens 1000000] [--widths 1,2]

Both arms train the same SAE-Lens SAEs (same trainer, sizes, sparsity and token budget
per SAE, from the study's config) for every (model, chosen layer, width):
(a) this suite: one forward pass per model over the study's training texts caches all
    chosen hooks to disk, then every SAE streams its tokens from the cache (epochs
    re-read the disk, not the LM);
(b) the paper's code: every SAE batch comes from a fresh LM forward pass on the next
    corpus texts, for that SAE alone, through every epoch.
The wall-time ratio (b) / (a) is printed; the target is at least 5x on the demo config.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import torch
from sae_lens.training.sae_trainer import SAETrainer

from analysis.activations import cache_hooks, cache_split, hook_names
from analysis.dictionaries import DictionaryConfig, make_sae, train_sae, trainer_config
from analysis.results import DivergenceResult
from rlhf.hooked import to_hooked
from rlhf.rundir import RunDir, read_json
from study.config import config_from_dict


def lm_stream(model, texts: list[str], hook: str, batch_size: int, text_batch: int) -> Iterator[torch.Tensor]:  # noqa: ANN001
    """The paper's data path: endless batches of activations, each from a fresh LM pass."""
    buffer = torch.empty(0, model.cfg.d_model)
    for start in itertools.cycle(range(0, len(texts), text_batch)):
        enc = model.tokenizer(texts[start : start + text_batch], padding=True, return_tensors="pt")
        mask = enc["attention_mask"].bool() & (enc["input_ids"] != model.tokenizer.bos_token_id)
        with torch.no_grad():
            cache = cache_hooks(model, enc["input_ids"], [hook])
        buffer = torch.cat([buffer, cache[hook][mask].float()])
        while len(buffer) >= batch_size:
            yield buffer[:batch_size]
            buffer = buffer[batch_size:]


def train_from_lm(cfg: DictionaryConfig, model, texts: list[str], hook: str, width: float) -> None:  # noqa: ANN001
    sae = make_sae(cfg, model.cfg.d_model, width)
    SAETrainer(trainer_config(cfg), sae, lm_stream(model, texts, hook, cfg.batch_size, 128)).fit()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", default="runs/sentiment", help="a finished study (default runs/sentiment)")
    parser.add_argument("--sae-tokens", type=int, help="tokens per SAE (default: the study's dictionaries config)")
    parser.add_argument("--widths", help="comma-separated widths (default: the study's)")
    args = parser.parse_args()
    run_dir = RunDir(args.run_dir)
    if not run_dir.saes_index.exists():
        sys.exit(f"error: {run_dir.root} has no dictionaries yet (run bash scripts/study.sh first)")
    study = config_from_dict(read_json(run_dir.config_file))
    dcfg = study.dictionaries
    if args.sae_tokens:
        dcfg = replace(dcfg, training_tokens=args.sae_tokens)
    if args.widths:
        dcfg = replace(dcfg, widths=tuple(float(w) for w in args.widths.split(",")))
    acfg = study.activations
    hooks = hook_names(acfg.hook, DivergenceResult.load(run_dir).chosen_layers)
    texts = run_dir.texts("train")[: acfg.train_texts]
    models = {m: to_hooked(run_dir.model(m)) for m in acfg.models}
    n_saes = len(models) * len(hooks) * len(dcfg.widths)
    print(f"{n_saes} SAEs ({len(models)} models x {len(hooks)} hooks x widths {dcfg.widths}), "
          f"{dcfg.training_tokens:,} tokens each, {len(texts):,} cached texts", flush=True)

    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for name, model in models.items():
            cache_split(model, texts, hooks, lambda h, n=name: Path(tmp) / n / h, acfg, where=name)
        cached_at = time.perf_counter()
        for name, h, w in itertools.product(models, hooks, dcfg.widths):
            train_sae(dcfg, Path(tmp) / name / h, w, RunDir(tmp).sae(name, h, str(w)))
    cache_once = time.perf_counter() - started
    print(f"(a) cache once: {cache_once:.1f} s (caching {cached_at - started:.1f} s)", flush=True)

    started = time.perf_counter()
    for name, h, w in itertools.product(models, hooks, dcfg.widths):
        train_from_lm(dcfg, models[name], texts, h, w)
    rerun = time.perf_counter() - started
    print(f"(b) LM pass per SAE batch: {rerun:.1f} s")
    print(f"ratio (b) / (a): {rerun / cache_once:.1f}x  (target >= 5x)")


if __name__ == "__main__":
    main()
