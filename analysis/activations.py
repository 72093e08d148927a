"""Reading activations at TransformerLens hook points.

Every read goes through ``run_with_cache`` with a names filter, so only the requested
hooks are stored and no hook outlives the call.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal

import torch
from einops import einsum
from jaxtyping import Float, Int
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor
from tqdm.auto import tqdm

from analysis.config import ActivationCacheConfig  # noqa: F401  (re-exported: callers import it from here)
from analysis.results import ActivationIndex, CachedHook, DivergenceResult
from rlhf.errors import UserError
from rlhf.hooked import HookedModel, module_of_hook, plain_view, probe_tokens, to_hooked
from rlhf.rundir import RunDir, atomic_write
from rlhf.training import process_state

INPUT = "blocks.{layer}.ln2.hook_normalized"  # an MLP's input, what a transcoder reads


def input_hook(output: str) -> str:
    """The MLP input hook of a ``blocks.{l}.hook_mlp_out`` hook."""
    return INPUT.format(layer=output.split(".")[1])


def check_hook_names(model: HookedModel, names: Sequence[str]) -> None:
    """Raise naming the valid hooks when any requested name is not a hook of the model."""
    bad = [n for n in names if n not in model.hook_dict]
    if bad:
        valid = sorted(model.hook_dict)
        shown = ", ".join(valid[:40]) + (" ..." if len(valid) > 40 else "")
        raise UserError(f"unknown hook name(s) {', '.join(bad)}; valid hooks: {shown}")
    # The bridge also lists hooks that never fire in some architectures (a rotary model's
    # hook_pos_embed), which HookedTransformer did not have: one forward pass on one token finds them.
    bos = torch.tensor([[model.tokenizer.bos_token_id or 0]], device=model.cfg.device)
    with torch.no_grad():
        _, cache = model.run_with_cache(bos, names_filter=list(names))
    silent = [n for n in names if n not in cache]
    if silent:
        raise UserError(f"hook(s) {', '.join(silent)} never fire in {model.cfg.architecture}")


class _AllFired(Exception):
    """Raised by the last requested hook to fire: nothing after it is needed."""


class _Collector:
    """The activations at ``hooks`` of one forward pass, which is stopped once every one has been kept."""

    def __init__(self, hooks: Sequence[str]) -> None:
        self.hooks, self.cache = list(hooks), {}

    def keep(self, name: str, x: Tensor) -> None:
        self.cache[name] = x.detach()
        if len(self.cache) == len(self.hooks):
            raise _AllFired

    def run(self, forward: Callable[[], object]) -> dict[str, Tensor]:
        self.cache.clear()
        try:
            with torch.no_grad():
                forward()
        except _AllFired:
            pass
        return dict(self.cache)


@contextlib.contextmanager
def hook_cache(model: HookedModel, hooks: Sequence[str]) -> Iterator[Callable[[Int[Tensor, "batch pos"]], dict[str, Tensor]]]:
    """A function from tokens to the activations at ``hooks``, each forward pass stopped as soon as every one
    has fired, the hooks added once for all its calls.

    Written here because the bridge's ``stop_at_layer`` stops only before a block (with hooks in the last block
    it runs the final norm and the unembedding too: stopping here took the demo's caching from 0.77 to 0.87 of
    a plain HF forward), and its ``run_with_hooks`` resolves the hook names again on every call (7 ms of each
    128-text batch's 109 ms on the demo, by cProfile)."""
    collector = _Collector(hooks)

    def run(tokens: Int[Tensor, "batch pos"]) -> dict[str, Tensor]:
        cache = collector.run(lambda: model(tokens))
        missing = [h for h in hooks if h not in cache]
        if missing:
            raise UserError(f"hook(s) {', '.join(missing)} never fired in {model.cfg.architecture}")
        return cache

    with model.hooks(fwd_hooks=[(h, lambda x, hook, name=h: collector.keep(name, x)) for h in hooks]):
        yield run


@contextlib.contextmanager
def module_cache(model: HookedModel, hooks: Sequence[str]) -> Iterator[Callable[[Int[Tensor, "batch pos"]], dict[str, Tensor]]]:
    """``hook_cache``, read instead by PyTorch hooks on the HF modules whose outputs the hooks see, run as a
    plain HF model (``rlhf.hooked.plain_view``: the same weights), where every hook is such an output, no
    hook is attached to the bridge, and the two agree on a probe batch; ``hook_cache`` otherwise.

    Written because the bridge's own attention and norm code costs caching about a tenth of a plain HF
    forward: on the demo, caching ran at 0.94 (0.90-0.94) of a plain HF forward through the bridge's hooks and
    0.97 (0.94-0.98) this way (bench/results/activations.md). The activations stage reads clean activations only."""
    modules = {h: module_of_hook(model, h) for h in hooks}
    attached = any(point.fwd_hooks or point.bwd_hooks for point in model.hook_dict.values())
    plain = None if attached or None in modules.values() else plain_view(model)
    agree = False
    if plain is not None:
        collector = _Collector(hooks)

        def run(tokens: Int[Tensor, "batch pos"]) -> dict[str, Tensor]:
            return collector.run(lambda: plain(input_ids=tokens))

        def keep(module: torch.nn.Module, args: object, output: Tensor | tuple[Tensor, ...], name: str) -> None:
            collector.keep(name, output[0] if isinstance(output, tuple) else output)

        handles = [plain.get_submodule(m).register_forward_hook(functools.partial(keep, name=h)) for h, m in modules.items()]
        try:
            probe = probe_tokens(model.cfg.d_vocab, 0).to(model.cfg.device)
            expected, got = cache_hooks(model, probe, hooks), run(probe)
            tol = 1e-4 if next(plain.parameters()).dtype == torch.float32 else 1e-2
            agree = all(h in got and got[h].shape == expected[h].shape
                        and float((got[h].float() - expected[h].float()).abs().max())
                        <= tol * max(1.0, float(expected[h].float().abs().max()))
                        for h in hooks)
            if agree:
                yield run
        finally:
            for handle in handles:
                handle.remove()
    if not agree:
        with hook_cache(model, hooks) as bridge_run:
            yield bridge_run


def cache_hooks(model: HookedModel, tokens: Int[Tensor, "batch pos"], hooks: Sequence[str]) -> dict[str, Tensor]:
    """The activations at ``hooks`` on ``tokens``, the forward pass stopped once every one has fired (``hook_cache``)."""
    with hook_cache(model, hooks) as run:
        return run(tokens)


@torch.no_grad()
def activations_at(
    model: HookedModel,
    texts: Sequence[str],
    positions: Sequence[int],
    hook_names: Sequence[str],
    batch_size: int = 256,
) -> dict[str, Float[Tensor, "n d"]]:
    """Activation of each text at one token position (0 = BOS) for every hook."""
    ids = [model.tokenizer(t)["input_ids"] for t in texts]
    return activations_at_ids(model, ids, positions, hook_names, batch_size)


@torch.no_grad()
def activations_at_ids(
    model: HookedModel,
    sequences: Sequence[Sequence[int]],
    positions: Sequence[int],
    hook_names: Sequence[str],
    batch_size: int = 256,
    reduce: Literal["position", "mean"] = "position",
) -> dict[str, Float[Tensor, "n d"]]:
    """Activations of token sequences at one position each, or (``reduce="mean"``) averaged over
    each sequence's tokens up to and including that position.

    Sequences are right-padded; a causal model's activation at a real position does not
    depend on the padding after it, and each position is checked to be a real token.
    """
    if len(sequences) != len(positions):
        raise ValueError(f"{len(sequences)} sequences but {len(positions)} positions")
    if reduce not in ("position", "mean"):
        raise ValueError(f"reduce must be 'position' or 'mean', got {reduce!r}")
    check_hook_names(model, hook_names)
    pad = model.tokenizer.pad_token_id if model.tokenizer is not None and model.tokenizer.pad_token_id is not None else 0
    out: dict[str, list[Tensor]] = {h: [] for h in hook_names}
    with hook_cache(model, hook_names) as run:
        for start in tqdm(range(0, len(sequences), batch_size), desc="activations", unit="batch", leave=False,
                          disable=len(sequences) <= batch_size):
            rows = [list(s) for s in sequences[start : start + batch_size]]
            width = max(len(r) for r in rows)
            tokens = torch.tensor([r + [pad] * (width - len(r)) for r in rows], device=model.cfg.device)
            lengths = torch.tensor([len(r) for r in rows], device=tokens.device)
            pos = torch.tensor(positions[start : start + batch_size], device=tokens.device)
            if bool((pos >= lengths).any()) or bool((pos < 0).any()):
                raise ValueError("a position lies outside its sequence's tokens")
            cache = run(tokens)
            index = torch.arange(len(pos), device=tokens.device)
            upto = (torch.arange(width, device=tokens.device)[None, :] <= pos[:, None]).float()  # (batch, seq)
            for h in hook_names:
                if reduce == "position":
                    act = cache[h][index, pos].float().cpu()
                else:
                    act = (einsum(cache[h].float(), upto, "b s d, b s -> b d") / upto.sum(1, keepdim=True)).cpu()
                if not torch.isfinite(act).all():
                    bad = (~torch.isfinite(act)).nonzero()[0].tolist()
                    raise FloatingPointError(f"non-finite activation at hook {h}, sequence {start + bad[0]}")
                out[h].append(act)
    return {h: torch.cat(v) for h, v in out.items()}


# -- caches on disk ------------------------------------------------------------------------


# The conversion check compares HF and TransformerLens logits; in half precision it can only
# catch a wrong conversion, not rounding.
CONVERSION_ATOL = {"float32": 1e-4, "bfloat16": 0.5, "float16": 0.1}


def hook_names(template: str, layers: Sequence[int]) -> list[str]:
    return [template.format(layer=layer) for layer in layers]


def _shard_path(directory: Path, index: int) -> Path:
    return directory / f"shard_{index:05d}.safetensors"


def _write_shard(path: Path, tensors: dict[str, Tensor]) -> None:
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp)))


def _computed_shards(model: HookedModel, texts: Sequence[str], hooks: Sequence[str], out: Callable[[str], Path],
                     cfg: ActivationCacheConfig, where: str, shards: range,
                     show: bool) -> Iterator[tuple[Path, dict[str, Tensor]]]:
    """Each of ``shards`` not already on disk: per hook, its file and its activations, tokens and positions."""
    dtype = getattr(torch, cfg.dtype)
    with module_cache(model, hooks) as run:
        for shard in tqdm(shards, desc=f"caching {where}", unit="shard", disable=not show):
            if all(_shard_path(out(h), shard).exists() for h in hooks):
                continue
            rows = texts[shard * cfg.shard_texts : (shard + 1) * cfg.shard_texts]
            parts: dict[str, list[Tensor]] = {h: [] for h in hooks}
            tokens, positions = [], []
            for start in range(0, len(rows), cfg.batch_size):
                enc = model.tokenizer(list(rows[start : start + cfg.batch_size]), padding=True, return_tensors="pt")
                ids, mask = enc["input_ids"].to(model.cfg.device), enc["attention_mask"].bool().to(model.cfg.device)
                # BOS is an attention sink with outsized activations: not text, so not cached.
                if model.tokenizer.bos_token_id is not None:
                    mask &= ids != model.tokenizer.bos_token_id
                cache = run(ids)
                for h in hooks:
                    act = cache[h][mask]  # (real tokens, d): padding positions never leave the batch
                    # A NaN or inf anywhere makes the sum one: a reduction, cheaper than a mask of every value.
                    bad = [] if torch.isfinite(act.sum()) else (~torch.isfinite(cache[h]).all(-1) & mask).nonzero().tolist()
                    if bad:
                        seq, pos = bad[0]
                        raise FloatingPointError(
                            f"non-finite activation at {h}, {where}, text {shard * cfg.shard_texts + start + seq}, token {pos}")
                    parts[h].append(act.to(dtype).cpu())
                tokens.append(ids[mask].cpu())
                positions.append(mask.nonzero()[:, 1].cpu())
            token_ids, token_pos = torch.cat(tokens), torch.cat(positions)
            for h in hooks:
                yield _shard_path(out(h), shard), {"activations": torch.cat(parts[h]).contiguous(), "tokens": token_ids,
                                                   "positions": token_pos}


@torch.no_grad()
def cache_split(
    model: HookedModel, texts: Sequence[str], hooks: Sequence[str], out: Callable[[str], Path],
    cfg: ActivationCacheConfig, where: str,
) -> dict[str, CachedHook]:
    """Cache every hook for ``texts`` in one forward pass per batch, padding excluded.

    Shard i holds texts [i * shard_texts, (i + 1) * shard_texts); a shard already on disk
    for every hook is skipped, so a killed run resumes shard by shard. Under ``accelerate
    launch`` process r of N caches shards r, r + N, ...; the main process writes the index
    once all have finished, so the cache is the single-process one, shard for shard."""
    state = process_state()
    check_hook_names(model, hooks)
    n_shards = (len(texts) + cfg.shard_texts - 1) // cfg.shard_texts
    mine = range(state.process_index, n_shards, state.num_processes)
    # A shard is written to disk while the next one is computed (the writes were an eighth of the caching
    # time on the demo); the with-block waits for every write, and a failed one raises below.
    with ThreadPoolExecutor(max_workers=1) as writer:
        writes = [writer.submit(_write_shard, path, tensors) for path, tensors in
                  _computed_shards(model, texts, hooks, out, cfg, where, mine, show=state.is_local_main_process)]
    for write in writes:
        write.result()
    state.wait_for_everyone()
    index = {}
    for h in hooks:
        shards = tuple(_shard_path(out(h), i).name for i in range(n_shards))
        n_tokens = sum(safe_open(str(out(h) / s), "pt").get_slice("activations").get_shape()[0] for s in shards)
        index[h] = CachedHook(hook=h, shards=shards, n_tokens=n_tokens, n_texts=len(texts), d=model.cfg.d_model,
                              dtype=cfg.dtype)
        if state.is_main_process:
            index[h].write(out(h))
    state.wait_for_everyone()
    return index


def load_shards(directory: Path) -> Iterator[Float[Tensor, "tokens d"]]:
    """The activations of a cached hook, shard by shard (one shard in memory at a time)."""
    for name in CachedHook.read(directory).shards:
        yield load_file(str(directory / name))["activations"].float()  # stored maybe in half precision


def cache_stage(cfg: ActivationCacheConfig, run_dir: RunDir) -> ActivationIndex:
    """Stage: cache the chosen layers' hook activations for every model, on the same token
    stream (train and held-out splits)."""
    layers = DivergenceResult.load(run_dir).chosen_layers
    main = hook_names(cfg.hook, layers)
    extra = [h for layer in layers for kind in cfg.extra_hooks for h in hook_names(kind, [layer])]
    if duplicated := sorted({h for h in main + extra if (main + extra).count(h) > 1}):
        raise UserError(f"activations.extra_hooks repeats a cached hook ({', '.join(duplicated)}): "
                        "list each kind once, and not activations.hook again")
    inputs = [input_hook(h) for h in main + extra if h.endswith(".hook_mlp_out")] if cfg.transcoder_inputs else []
    if cfg.transcoder_inputs and not inputs:
        raise UserError("activations.transcoder_inputs caches the MLPs' inputs beside their outputs, and no "
                        "hook_mlp_out is cached: add 'blocks.{layer}.hook_mlp_out' to activations.hook or extra_hooks")
    hooks = main + extra + inputs
    splits = {"train": cfg.train_texts, "val": cfg.held_out_texts}
    models: dict[str, dict[str, dict[str, int]]] = {}
    texts_cached: dict[str, int] = {}
    d_model = 0
    for name in cfg.models:
        # Each process of an accelerate launch on its own device (its GPU, or the CPU).
        model = to_hooked(run_dir.model(name), device=str(process_state().device),
                          dtype=getattr(torch, cfg.model_dtype), atol=CONVERSION_ATOL[cfg.model_dtype])
        d_model = model.cfg.d_model
        models[name] = {}
        for split, n in splits.items():
            texts = run_dir.texts(split)[:n]
            texts_cached[split] = len(texts)
            index = cache_split(model, texts, hooks, lambda h, s=split, m=name: run_dir.activations(m, h, s), cfg,
                                where=f"{name}/{split}")
            models[name][split] = {h: v.n_tokens for h, v in index.items()}
    result = ActivationIndex(hooks=tuple(main), extra_hooks=tuple(extra), transcoder_inputs=tuple(inputs), layers=tuple(layers), models=models, dtype=cfg.dtype, d_model=d_model,
                             texts=texts_cached)
    if process_state().is_main_process:
        result.save(run_dir)
    return result
