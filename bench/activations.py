"""Cached-activation throughput against a plain Hugging Face forward pass, and SAE
training throughput, measured side by side in one run.

    .venv/bin/python bench/activations.py --run-dir runs/sentiment

(a) caching: the activations stage's ``cache_split`` over all chosen hooks (padding dropped, shards written
    to disk; deleting them afterwards is not timed), versus the HF model's forward on the same batches; and
    the same caching read through the bridge's own hooks (``hook_cache``) instead of the plain HF view of its
    weights that ``module_cache`` uses. They alternate, repeated, and the median of each is compared
    (target: caching >= 0.95 of the plain forward).
(b) SAE training: tokens per second of one SAE-Lens dictionary on the cache.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from torch import Tensor

import analysis.activations
from analysis.activations import ActivationCacheConfig, cache_split, hook_cache, hook_names
from analysis.dictionaries import DictionaryConfig, train_sae
from analysis.results import DivergenceResult
from rlhf.hooked import HookedModel, load_hf, to_hooked
from rlhf.rundir import RunDir


@contextlib.contextmanager
def bridge_hooks(model: HookedModel, hooks: list[str]) -> Iterator[Callable[[Tensor], dict[str, Tensor]]]:
    """``module_cache`` as it was before the plain view: the bridge's own hooks."""
    with hook_cache(model, hooks) as run:
        yield run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", default="runs/sentiment", help="a finished study (default runs/sentiment)")
    parser.add_argument("--texts", type=int, default=2048, help="corpus texts per measurement (default 2048)")
    parser.add_argument("--repeats", type=int, default=3, help="alternating repetitions (default 3)")
    parser.add_argument("--sae-tokens", type=int, default=500_000, help="tokens for the SAE measurement")
    args = parser.parse_args()
    run_dir = RunDir(args.run_dir)
    if not DivergenceResult.exists(run_dir):
        sys.exit(f"error: {run_dir.root} has no finished study (run bash scripts/study.sh first)")
    torch.set_grad_enabled(False)
    texts = (run_dir.corpus / "train.txt").read_text().splitlines()[: args.texts]
    hooks = hook_names("blocks.{layer}.hook_mlp_out", DivergenceResult.load(run_dir).chosen_layers)
    hooked, hf = to_hooked(run_dir.policy), load_hf(run_dir.policy).eval()
    cfg = ActivationCacheConfig()  # the stage's own batches and shards
    tok = hooked.tokenizer
    n_tokens = sum(len(tok(t)["input_ids"]) - 1 for t in texts)

    def plain() -> None:
        for start in range(0, len(texts), cfg.batch_size):
            enc = tok(texts[start : start + cfg.batch_size], padding=True, return_tensors="pt")
            hf(**enc)

    def cached(through_bridge: bool = False) -> float:
        """Seconds to cache, the directory made before and deleted after the clock."""
        tmp = Path(tempfile.mkdtemp())
        module_cache = analysis.activations.module_cache
        if through_bridge:
            analysis.activations.module_cache = bridge_hooks
        try:
            started = time.perf_counter()
            cache_split(hooked, texts, hooks, lambda h: tmp / h, cfg, where="bench")
            return time.perf_counter() - started
        finally:
            analysis.activations.module_cache = module_cache
            shutil.rmtree(tmp)

    def timed(fn: Callable[[], None]) -> float:
        started = time.perf_counter()
        fn()
        return time.perf_counter() - started

    runs: dict[str, Callable[[], float]] = {"plain HF forward": lambda: timed(plain), "cache (all hooks, to disk)": cached,
                                            "cache through the bridge's hooks": lambda: cached(through_bridge=True)}
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, fn in runs.items():
            times[name].append(fn())
    print(f"{len(texts)} texts, {n_tokens} tokens, hooks: {', '.join(hooks)}; torch threads {torch.get_num_threads()}")
    rates = {}
    for name, ts in times.items():
        rates[name] = n_tokens / statistics.median(ts)
        print(f"  {name:<34} {rates[name]:>10.0f} tokens/s  (median of {len(ts)}: {', '.join(f'{t:.2f}s' for t in ts)})")
    for name in list(runs)[1:]:
        print(f"{name} / plain forward = {rates[name] / rates['plain HF forward']:.2f} (target >= 0.95)")

    torch.set_grad_enabled(True)
    source = run_dir.activations("policy", hooks[-1], "train")
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        train_sae(DictionaryConfig(training_tokens=args.sae_tokens), source, 2.0, Path(tmp) / "sae")
        seconds = time.perf_counter() - started
    print(f"SAE training (2x width, {hooks[-1]}): {args.sae_tokens / seconds:.0f} tokens/s ({seconds:.1f} s for {args.sae_tokens} tokens)")


if __name__ == "__main__":
    main()
