"""Command line of the study pipeline.

    python -m study run --config configs/sentiment.toml     # run (or resume) a whole study
    python -m study report --run-dir runs/sentiment          # rebuild the report from artifacts
    python -m study status --run-dir runs/sentiment          # which stages are finished
    python -m study convert --model runs/sentiment/models/base  # check a model converts to TransformerLens
    python -m study compare --base EleutherAI/pythia-70m --policy ./my-rlhf-run  # analyse a pair trained elsewhere
    python -m study zoo --organisms topic edit               # organisms with planted objectives on one base

Installed, the same commands are ``rlhf-interp run|compare|report|status|convert|zoo``, and
``rlhf-interp probe`` is ``python -m probes.fit_linear_reward``.
"""

from __future__ import annotations

import argparse
import sys

from rlhf.errors import ArgumentParser, UserError


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog=prog,
        description="Run an RLHF interpretability study: build the model organism, train the models, "
        "analyse them, and write runs/<study>/report/index.html. Finished stages are skipped; an "
        "interrupted study resumes where it stopped.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run every stage that is not finished, then build the report")
    run.add_argument("--config", required=True, help="study config (TOML), e.g. configs/sentiment.toml")
    run.add_argument("--runs-dir", help="parent of the run directory (overrides the config's runs_dir)")
    run.add_argument("--force", action="append", default=[], metavar="STAGE",
                     help="re-run this stage (and so everything after it) even if finished; repeatable")
    run.add_argument("--until", metavar="STAGE", help="stop after this stage")
    run.add_argument("--verbose", action="store_true",
                     help="print the libraries' warnings, logging and every progress bar as they come (by default "
                          "they go to runs/<study>/logs/<stage>.log and the console shows one line per stage)")
    for name, text in (("report", "rebuild report/index.html and summary.json from the artifacts"),
                       ("status", "list each stage: finished (when, in how many seconds), not finished, or stale (finished, but "
                                  "its config or an input changed since; says which)")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--run-dir", required=True, help="a study's run directory, e.g. runs/sentiment")
    cmp = sub.add_parser(
        "compare", help="analyse a base model and a fine-tune of it trained elsewhere (no training)",
        description="Analyse a base model and a fine-tune of it that were trained elsewhere: parameter divergence, "
        "activation caches, SAEs, MMCS, feature diffs, model diffing and conversion, ending in "
        "runs/<name>/report/index.html. The fine-tune must have the base's architecture and vocabulary. The stages "
        "that score against the VADER lexicon (valence probe, implicit-reward probe, reward attribution) run when "
        "--reward is vader. The config is kept as runs/<name>/config.json; `python -m study run --config` on it "
        "resumes or repeats the comparison.")
    cmp.add_argument("--base", required=True, help="the base model: a local directory or a hub id")
    cmp.add_argument("--policy", required=True, help="the fine-tune of the base: a local directory or a hub id")
    cmp.add_argument("--corpus", default="", help="texts to cache activations on: a .csv/.json/.jsonl/.parquet/.txt "
                     "file or a hub dataset id (default: the embedded sentiment organism's generated reviews)")
    cmp.add_argument("--text-column", default="text", help="the corpus column holding the text (default: text)")
    cmp.add_argument("--layers", type=int, nargs="+", default=[], metavar="N",
                     help="layers to analyse (default: the most diverged, up to divergence.top_n = 5)")
    cmp.add_argument("--reward", default="vader",
                     help="the reward the fine-tune was trained for, as in [policy] reward: vader (default), "
                          "model:<dir or id>, python:package.module:function, study:<reward model>")
    cmp.add_argument("--name", default="", help="the run directory's name (default: compare-<policy's last path part>)")
    cmp.add_argument("--runs-dir", default="runs", help="parent of the run directory (default: runs)")
    cmp.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="settings",
                     help="any other config value, in TOML syntax, e.g. --set dictionaries.training_tokens=200000 "
                          "--set activations.hook='blocks.{layer}.hook_resid_post'; repeatable")
    cmp.add_argument("--until", metavar="STAGE", help="stop after this stage")
    cmp.add_argument("--verbose", action="store_true", help="print the libraries' warnings and progress bars as they come")
    zoo = sub.add_parser(
        "zoo", help="train every organism's policy on one base and write runs/<zoo>/report/index.html",
        description="The zoo of planted objectives (rlhf/zoo.py): the base is trained once in runs/<zoo>/base; each "
        "organism is a run directory of its own, runs/<zoo>/<organism>, whose policy is trained on the organism's "
        "reward (the edit organism is planted, not trained) and analysed by the study's stages. Resumes like a run.")
    zoo.add_argument("--config", default="configs/zoo.toml", help="the zoo's study config (default configs/zoo.toml)")
    zoo.add_argument("--organisms", nargs="+", default=[], metavar="NAME",
                     help="organisms to run (default: every registered one: sentiment, topic, trigger, length, edit)")
    zoo.add_argument("--runs-dir", help="parent of the zoo's directory (overrides the config's runs_dir)")
    zoo.add_argument("--verbose", action="store_true", help="print the libraries' warnings and progress bars as they come")
    conv = sub.add_parser("convert", help="convert an HF causal LM to a TransformerLens TransformerBridge and check its logits")
    conv.add_argument("--model", required=True, help="local model directory or hub id")
    conv.add_argument("--tokenizer", help="tokenizer directory (default: the model's own directory)")
    conv.add_argument("--atol", type=_positive_float, default=1e-4,
                      help="largest allowed |logit difference|, a positive number (default 1e-4; float32 "
                           "conversions agree to about 1e-6)")
    if prog == CONSOLE:
        # Listed here for --help; console() hands its arguments to the probe's own parser.
        sub.add_parser("probe", help="fit the implicit-reward probe on a finished study "
                                     "(python -m probes.fit_linear_reward; `rlhf-interp probe --help` lists its options)")
    return parser


CONSOLE = "rlhf-interp"


def console(argv: list[str] | None = None) -> int:
    """The ``rlhf-interp`` console script: the study's commands, and ``probe``."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["probe"]:
        from probes.fit_linear_reward import main as probe_main

        return probe_main(argv[1:], prog=f"{CONSOLE} probe")
    return main(argv, prog=CONSOLE)


def main(argv: list[str] | None = None, prog: str = "python -m study") -> int:
    args = _parser(prog).parse_args(argv)
    # Light imports only until the config is read and checked, so that a mistake is reported
    # at once; the pipeline (torch, transformers, ...) is imported after that.
    from rlhf.rundir import RunDir
    from study.config import load_config
    from study.stages import stage_names

    try:
        if args.command == "run":
            overrides = {"runs_dir": args.runs_dir} if args.runs_dir else {}
            cfg = load_config(args.config, overrides)
            for name in (*args.force, *([args.until] if args.until else [])):
                if name not in stage_names():
                    raise UserError(f"unknown stage {name!r}; stages: {', '.join(stage_names())}")
            from study.pipeline import run_study

            run_study(cfg, force=tuple(args.force), until=args.until, verbose=args.verbose)
        elif args.command == "zoo":
            from study.zoo import organism_config

            cfg = load_config(args.config, {"runs_dir": args.runs_dir} if args.runs_dir else {})
            for name in args.organisms:
                organism_config(cfg, name)  # an unknown organism, named before anything runs
            from study.zoo import run_zoo

            run_zoo(cfg, tuple(args.organisms), verbose=args.verbose)
        elif args.command == "compare":
            from study.compare import compare_config

            cfg, left_out = compare_config(args.base, args.policy, corpus=args.corpus, text_column=args.text_column,
                                           layers=tuple(args.layers), name=args.name, runs_dir=args.runs_dir,
                                           reward=args.reward, settings=tuple(args.settings))
            if args.until and args.until not in cfg.stages:
                raise UserError(f"--until {args.until}: a comparison runs {', '.join(cfg.stages)}")
            if left_out:
                print(f"[compare] skipping {', '.join(left_out)}: they score against the VADER lexicon and the reward "
                      f"is {args.reward}")
            from study.pipeline import run_study

            run_study(cfg, until=args.until, verbose=args.verbose)
        elif args.command == "report":
            from study.pipeline import report

            run_dir = RunDir(args.run_dir)
            if not run_dir.root.is_dir():
                raise UserError(f"run directory {run_dir.root} does not exist")
            print(report(run_dir))
        elif args.command == "convert":
            from rlhf.hooked import to_hooked

            hooked = to_hooked(args.model, tokenizer=args.tokenizer, atol=args.atol)
            c = hooked.cfg
            print(f"{c.architecture}: {c.n_layers} layers, d_model {c.d_model}, vocab {c.d_vocab}; "
                  f"logits match within {args.atol:.0e}")
            print("hooks of block 0: " + ", ".join(h for h in hooked.hook_dict if h.startswith("blocks.0.")))
        else:
            from study.pipeline import status

            for name, manifest, stale in status(RunDir(args.run_dir)):
                done = f"finished {manifest.finished} in {manifest.seconds:.1f} s" if manifest else "not finished"
                if stale:
                    done = f"STALE: {stale} (finished {manifest.finished}; a `run` re-runs it)"
                print(f"{name:<18} {done}")
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
