"""The implicit-reward probe: can a linear map read the reward a model learned?

    python -m probes.fit_linear_reward --run-dir runs/sentiment [--model policy] [--features sae]

Contrastive triples (one sentence in a positive, a negative and a neutral variant) are
read at the swapped word by the *same* model whose SAEs encode them. A ridge regression
(scikit-learn, alpha by cross-validation) maps the concatenated SAE codes of the chosen
layers (or the raw activations) to a target: the paper's (the signed distance of a
variant's feature vector from its neutral variant's) or the true utility (the word's
VADER valence). Its per-word predictions are then ranked against VADER under two
protocols: the paper's (80/20 split of triples, so test words may have been seen) and
held-out words (the probe never saw the test words). An untrained probe (random weights),
the raw-activation probe and an embedding-only probe are scored beside it.

With ``--target next_utility`` it fits the writer probe instead (``probes/writer.py``): from the
model's features at every position of its own completions to the expected utility of the next
token, on held-out prompts.
"""


from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from probes.config import MIN_TRIPLES, LinearRewardConfig, WriterProbeConfig
from probes.features import layer_hooks
from rlhf.errors import ArgumentParser, UserError
from rlhf.rundir import RunDir

if TYPE_CHECKING:
    from probes.results import LinearRewardResult
    from rlhf.hooked import HookedModel


def fit_linear_reward(run_dir: RunDir | str | Path, cfg: LinearRewardConfig | None = None,
                      model: HookedModel | None = None) -> LinearRewardResult:
    """Fit and score the probe under both protocols (``cfg``: the defaults when None); see the module
    docstring. Returns the result without saving it (the command line and the implicit_reward stage save it)."""
    # torch, transformer-lens and scikit-learn load here, not with this module: the command line
    # checks its arguments and the run directory first and answers a mistake within a second.
    from probes.linear_probe import fit

    return fit(run_dir, cfg, model)


# -- command line -------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None, prog: str = "python -m probes.fit_linear_reward") -> argparse.Namespace:
    defaults = LinearRewardConfig()
    p = ArgumentParser(
        prog=prog, description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run-dir", required=True, help="a study run directory with SAEs (runs/<study>)")
    p.add_argument("--model", default=defaults.model, help="whose activations and SAEs to read: policy (default) or base")
    p.add_argument("--features", choices=("sae", "activations"), default=defaults.features,
                   help="SAE codes of the chosen layers, concatenated (default), or the raw activations at the same hooks")
    p.add_argument("--layers", type=int, nargs="+", help="layers to read (default: the study's chosen layers)")
    p.add_argument("--target", choices=("paper", "utility", "next_utility"), default=defaults.target,
                   help="utility: the swapped word's VADER valence (default); paper: signed distance of the variant's "
                        "feature vector from its neutral variant's; next_utility: the writer probe (probes/writer.py), "
                        "at every position of the model's own completions of held-out prompts, the expected utility "
                        "of the next token")
    p.add_argument("--alpha", type=float, help="ridge penalty, > 0 (default: chosen by cross-validation)")
    p.add_argument("--size", default=defaults.size, help="SAE width to use, as the dictionaries stage names it (default 1x)")
    p.add_argument("--triples", type=int, default=defaults.n_triples,
                   help=f"contrastive triples per protocol, at least {MIN_TRIPLES} (default {defaults.n_triples})")
    p.add_argument("--prompts", type=int, default=WriterProbeConfig().n_prompts,
                   help=f"next_utility only: held-out prompts completed and read (default {WriterProbeConfig().n_prompts})")
    p.add_argument("--seed", type=int, default=defaults.seed,
                   help="seed of the triples and the splits (next_utility: of the prompts, sampling and split) (default 0)")
    p.add_argument("--out", type=Path, help="JSON file to write (default: <run-dir>/probes/linear_reward_<model>_<features>.json; "
                                            "next_utility: <run-dir>/probes/writer_probe_<model>_<features>.json)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None, prog: str = "python -m probes.fit_linear_reward") -> int:
    args = parse_args(argv, prog)
    try:
        run_dir = _checked(args)
        if args.target == "next_utility":
            return _writer_main(args, run_dir)
        cfg = LinearRewardConfig(model=args.model, features=args.features, layers=tuple(args.layers) if args.layers else None,
                                 target=args.target, alpha=args.alpha, size=args.size, n_triples=args.triples, seed=args.seed)
        result = fit_linear_reward(run_dir, cfg)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = result.save(run_dir, args.out)
    print(f"implicit-reward probe: model {args.model}, {args.features} at {', '.join(result.hooks)} "
          f"({result.n_features} features), target {args.target}")
    print(result.notes[0])
    print(result.table())
    print("top features: " + ", ".join(f"{f.hook.split('.')[1]}:{f.feature} ({f.coefficient:+.3f})"
                                      for f in result.top_features[:8]))
    print(f"written: {out}")
    return 0


def _checked(args: argparse.Namespace) -> RunDir:
    """The run directory, once the arguments and what they name in it are checked (before any model loads)."""
    if args.alpha is not None and not args.alpha > 0:
        raise UserError(f"--alpha must be > 0, got {args.alpha}")
    if args.seed < 0:
        raise UserError(f"--seed must be >= 0, got {args.seed}")
    if args.target == "next_utility" and args.prompts < 4:
        raise UserError(f"--prompts must be at least 4, got {args.prompts}")
    if args.target != "next_utility" and args.triples < MIN_TRIPLES:
        raise UserError(f"--triples must be at least {MIN_TRIPLES}, got {args.triples}")
    run_dir = RunDir(args.run_dir)
    if not run_dir.root.is_dir():
        raise UserError(f"run directory {run_dir.root} does not exist")
    layer_hooks(run_dir, args.model, tuple(args.layers) if args.layers else None, args.size)
    return run_dir


def _writer_main(args: argparse.Namespace, run_dir: RunDir) -> int:
    from probes.writer import fit_writer_probe  # torch and the models: see fit_linear_reward

    cfg = WriterProbeConfig(model=args.model, features=args.features, layers=tuple(args.layers) if args.layers else None,
                            size=args.size, n_prompts=args.prompts, alpha=args.alpha, seed=args.seed)
    result = fit_writer_probe(run_dir, cfg)
    out = result.save(run_dir, args.out)
    print(f"writer probe: model {args.model}, {args.features} at {', '.join(result.hooks)} ({result.n_features} features), "
          f"target: expected utility of the next token")
    print(f"{result.n_prompts} prompts: {result.train_positions} training positions, {result.test_positions} held out")
    print(f"held-out Kendall tau {result.kendall_tau:.3f}, R^2 {result.r2:.3f}; untrained tau "
          f"{result.untrained_tau:.3f} ± {result.untrained_tau_std:.3f}, R^2 {result.untrained_r2:.3f}")
    print("top features: " + ", ".join(f"{f.hook.split('.')[1]}:{f.feature} ({f.coefficient:+.3f})"
                                      for f in result.top_features[:8]))
    print(f"written: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
