"""Sampling under hooks: one left-padded batch against a batch per prompt length.

    .venv/bin/python bench/sampling.py --run-dir runs/sentiment

Every analysis that samples (the implicit-reward ablation, model diffing's ablations, steering
and amplification, reward attribution's completions) goes through
``analysis.interventions.sample_tokens``: all prompts in one batch, padded on the left and
masked, one forward pass per new token with a key-value cache. Before it, prompts were
sampled with the converted model's ``generate`` in one batch per prompt length (no
padding), which costs a forward pass per new token *and* per length. This times both on the
same held-out prompts of a finished study's policy, alternating, and prints the median of the
repeats and their ratio.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from analysis.interventions import sample_with_hooks
from rlhf.errors import UserError
from rlhf.hooked import to_hooked
from rlhf.policy.sampling import prompts_from_texts
from rlhf.rundir import RunDir


@torch.no_grad()
def per_length(model, prompts: list[str], max_new_tokens: int, seed: int) -> None:  # noqa: ANN001
    """The previous sampler: ``generate`` once per group of prompts of equal token length."""
    groups: dict[int, list[list[int]]] = {}
    for p in prompts:
        ids = model.tokenizer(p)["input_ids"]
        groups.setdefault(len(ids), []).append(ids)
    torch.manual_seed(seed)
    for rows in groups.values():
        model.generate(torch.tensor(rows), max_new_tokens=max_new_tokens, stop_at_eos=True,
                       eos_token_id=model.tokenizer.eos_token_id, do_sample=True, temperature=1.0, verbose=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", default="runs/sentiment", help="a finished study (default runs/sentiment)")
    parser.add_argument("--prompts", type=int, default=128, help="held-out prompts per call (default 128)")
    parser.add_argument("--max-new-tokens", type=int, default=19)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    try:
        run_dir = RunDir(args.run_dir)
        model = to_hooked(run_dir.policy)
        prompts = prompts_from_texts(run_dir.texts("test"), args.prompts, 1)
    except UserError as err:
        sys.exit(f"error: {err}")
    lengths = {len(model.tokenizer(p)["input_ids"]) for p in prompts}
    samplers = {
        "one padded batch": lambda seed: sample_with_hooks(model, prompts, [], max_new_tokens=args.max_new_tokens, seed=seed),
        "a batch per prompt length": lambda seed: per_length(model, prompts, args.max_new_tokens, seed),
    }
    times: dict[str, list[float]] = {name: [] for name in samplers}
    for seed in range(args.repeats + 1):  # the first round warms up and is not counted
        for name, sample in samplers.items():
            started = time.perf_counter()
            sample(seed)
            if seed:
                times[name].append(time.perf_counter() - started)
    median = {name: statistics.median(t) for name, t in times.items()}
    print(f"{args.prompts} prompts of {len(lengths)} token lengths, up to {args.max_new_tokens} new tokens, "
          f"median of {args.repeats}, torch threads {torch.get_num_threads()}")
    for name, t in median.items():
        print(f"  {name:<26} {t:6.3f} s")
    print(f"  ratio (per length / padded batch): {median['a batch per prompt length'] / median['one padded batch']:.2f}x")


if __name__ == "__main__":
    main()
