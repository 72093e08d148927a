"""The TransformerBridge the suite converts to, against the HookedTransformer it replaced, side by side.

    .venv/bin/python bench/bridge.py --run-dir runs/sentiment --out bench/results/bridge.json

On a finished study's base and policy (GPT-NeoX), each model converted both ways: the suite's
``rlhf.hooked.to_hooked`` (TransformerBridge, compatibility mode, unprocessed weights) and
TransformerLens's own GPT-NeoX conversion into a ``HookedTransformer`` (``convert_hf_model_config`` on the
model's directory, ``convert_neox_weights``): the class the suite used before, kept here only as the
baseline. It times, alternating, the median of the repeats:

- forward: logits of a batch of held-out texts;
- caching the analysis hooks (the chosen layers' ``hook_mlp_out``): the HookedTransformer's
  ``run_with_cache(stop_at_layer=)`` as the suite called it, against the suite's ``cache_hooks`` on the bridge
  (which stops once the last hook has fired; the bridge's own ``stop_at_layer`` would run the unembedding);
- batched sampling: the suite's ``sample_tokens`` (one left-padded batch, HF's key-value cache through
  the bridge) against the same loop on the HookedTransformer with TransformerLens's key-value cache,
  which is how the suite sampled before.

and prints throughput(bridge) / throughput(HookedTransformer) for each (target >= 0.9), with the max
|logit difference| of each conversion to the HF model. Caching against a plain HF forward is
``bench/activations.py``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from datetime import date
from pathlib import Path

import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig
from transformer_lens.cache.key_value_cache import TransformerLensKeyValueCache
from transformer_lens.loading_from_pretrained import convert_hf_model_config
from transformer_lens.pretrained.weight_conversions import convert_neox_weights

from analysis.activations import cache_hooks, hook_names
from analysis.interventions import sample_tokens
from analysis.results import DivergenceResult
from rlhf.hooked import load_hf, to_hooked
from rlhf.policy.sampling import prompts_from_texts
from rlhf.rundir import RunDir
from rlhf.tokenizer import load_tokenizer


def hooked_transformer(model_dir: Path, tokenizer_dir: Path) -> HookedTransformer:
    """The baseline: TransformerLens's GPT-NeoX conversion into the deprecated class."""
    hf = load_hf(model_dir).eval()
    if type(hf).__name__ != "GPTNeoXForCausalLM":
        sys.exit(f"error: the baseline converts GPT-NeoX only; {model_dir} is {type(hf).__name__}")
    cfg = HookedTransformerConfig(**convert_hf_model_config(str(model_dir)), device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the deprecation is why the suite moved
        model = HookedTransformer(cfg, tokenizer=load_tokenizer(tokenizer_dir))
    model.load_state_dict(convert_neox_weights(hf, cfg), strict=False)  # masks and rotary tables are buffers
    model.cfg.default_prepend_bos = True  # as the suite's tokenizer (BOS first)
    return model.eval()


@torch.no_grad()
def sample_tl_cache(model: HookedTransformer, prompts: list[str], max_new_tokens: int, seed: int) -> int:
    """``sample_tokens``'s loop as it ran on the HookedTransformer: TransformerLens's key-value cache,
    the padded prompt's mask on the first step. Returns the number of tokens sampled."""
    tok, eos = model.tokenizer, model.tokenizer.eos_token_id
    ids = [tok(p)["input_ids"] for p in prompts]
    width = max(map(len, ids))
    tokens = torch.tensor([[eos] * (width - len(r)) + r for r in ids])
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in ids])
    cache = TransformerLensKeyValueCache.init_cache(model.cfg, "cpu", len(ids))
    generator = torch.Generator().manual_seed(seed)
    finished = torch.zeros(len(ids), dtype=torch.bool)
    step, step_mask, n = tokens, mask, 0
    while n < max_new_tokens and not bool(finished.all()):
        logits = model(step, attention_mask=step_mask, past_kv_cache=cache)[:, -1].float()
        token = torch.multinomial(torch.softmax(logits, -1), 1, generator=generator)[:, 0]
        token = torch.where(finished, torch.full_like(token, eos), token)
        finished |= token == eos
        step, step_mask, n = token[:, None], torch.ones_like(token[:, None]), n + 1
    return n * len(ids)


def timed(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds of each function, the functions alternating within each repeat."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            started = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - started)
    return {name: statistics.median(ts) for name, ts in times.items()}


def measure(model_dir: Path, tokenizer_dir: Path, texts: list[str], prompts: list[str], hooks: list[str],
            args: argparse.Namespace) -> dict:
    """One model converted both ways: logit differences to HF and the three timings; printed and returned."""
    bridge, old = to_hooked(model_dir), hooked_transformer(model_dir, tokenizer_dir)
    tokens = bridge.tokenizer(texts, padding=True, return_tensors="pt")["input_ids"][:, : bridge.cfg.n_ctx]
    stop_at = max(int(h.split(".")[1]) for h in hooks) + 1
    hf = load_hf(model_dir).eval()
    hf.set_attn_implementation("eager")  # as both conversions run it
    reference = hf(tokens).logits
    diff = {k: float((m(tokens) - reference).abs().max()) for k, m in (("bridge", bridge), ("hooked", old))}
    timings = {
        "forward": timed({"hooked": lambda: old(tokens), "bridge": lambda: bridge(tokens)}, args.repeats),
        "run_with_cache": timed({"hooked": lambda: old.run_with_cache(tokens, names_filter=hooks, stop_at_layer=stop_at),
                                 "bridge": lambda: cache_hooks(bridge, tokens, hooks)},
                                args.repeats),
        "sampling": timed({"hooked": lambda: sample_tl_cache(old, prompts, args.max_new_tokens, seed=0),
                           "bridge": lambda: sample_tokens([bridge], prompts, max_new_tokens=args.max_new_tokens, seed=0)},
                          args.repeats),
    }
    print(f"{model_dir.name}: {tokens.numel()} tokens, hooks {', '.join(hooks)}; max |logit - HF|: bridge "
          f"{diff['bridge']:.1e}, HookedTransformer {diff['hooked']:.1e}")
    for what, t in timings.items():
        print(f"  {what:<15} HookedTransformer {t['hooked']:.3f} s, bridge {t['bridge']:.3f} s: "
              f"bridge throughput / HookedTransformer = {t['hooked'] / t['bridge']:.2f} (target >= 0.9)")
    return {"max_abs_logit_diff_to_hf": diff, "tokens": int(tokens.numel()),
            **{what: {"seconds": t, "bridge_over_hooked_throughput": t["hooked"] / t["bridge"]} for what, t in timings.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", default="runs/sentiment", help="a finished study (default runs/sentiment)")
    parser.add_argument("--texts", type=int, default=256, help="held-out texts per forward measurement (default 256)")
    parser.add_argument("--prompts", type=int, default=128, help="held-out prompts sampled per call (default 128)")
    parser.add_argument("--max-new-tokens", type=int, default=19, help="tokens sampled per prompt, at most (default 19)")
    parser.add_argument("--repeats", type=int, default=5, help="alternating repetitions (default 5)")
    parser.add_argument("--out", type=Path, help="JSON file for the figures (e.g. bench/results/bridge.json)")
    args = parser.parse_args()
    run_dir = RunDir(args.run_dir)
    if not DivergenceResult.exists(run_dir):
        sys.exit(f"error: {run_dir.root} has no finished study (run bash scripts/study.sh first)")
    torch.set_grad_enabled(False)
    hooks = hook_names("blocks.{layer}.hook_mlp_out", DivergenceResult.load(run_dir).chosen_layers)
    texts = run_dir.texts("test")[: args.texts]
    prompts = prompts_from_texts(run_dir.texts("test"), args.prompts, 1)
    results = {name: measure(model_dir, run_dir.tokenizer, texts, prompts, hooks, args)
               for name, model_dir in (("base", run_dir.base), ("policy", run_dir.policy))}
    if args.out:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
        rows = [{"model": name, "measurement": what, "hooked_transformer_s": r[what]["seconds"]["hooked"],
                 "bridge_s": r[what]["seconds"]["bridge"], "bridge_over_hooked": r[what]["bridge_over_hooked_throughput"],
                 "bridge_max_logit_diff": r["max_abs_logit_diff_to_hf"]["bridge"],
                 "hooked_max_logit_diff": r["max_abs_logit_diff_to_hf"]["hooked"]}
                for name, r in results.items() for what in ("forward", "run_with_cache", "sampling")]
        note = (f"{date.today().isoformat()}, commit {commit}, {run_dir.root}, torch threads {torch.get_num_threads()}, "
                f"median of {args.repeats}; target bridge / HookedTransformer >= 0.9.")
        args.out.write_text(json.dumps({"note": note, "runs": rows}, indent=2) + "\n")
        print(f"written: {args.out}")

if __name__ == "__main__":
    main()
