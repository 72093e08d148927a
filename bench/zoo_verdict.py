"""The zoo's verdict over several zoo runs (each another policy training seed): per organism, each diffing
method at its best hook in each run, its scores pooled over runs and dictionary seeds (mean ± spread), and
whether the best method reaches the issue's scientific goal: its top 10 directions carry >= 50% of G both ways
and the tokens it names hit the answer with precision >= 0.8.

    .venv/bin/python bench/zoo_verdict.py --zoo runs/zoo --zoo runs/zoo_seed1 [--out bench/results/zoo_verdict.md]

A best method's lead holds only where its interval (mean ± spread) lies wholly above the runner-up's.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from analysis.diffing.scoring import at_best_hook, values
from analysis.results import ModelDiffingResult, RewardAttributionResult, splice_score
from rlhf.results import PolicyResult
from rlhf.rundir import RunDir
from rlhf.zoo import ORGANISMS
from study.report.sections.model_diffing import label
from study.zoo_report import GOAL_PRECISION, GOAL_SHARE

BOTH_WAYS, PRECISION = "both ways (top 10)", "precision"


def pooled(zoos: list[Path], organism: str) -> dict[str, dict[str, list[float]]]:
    """Method -> score -> every value at the method's best hook, over the zoos' runs and the dictionary seeds.
    "both ways (top 10)" is, per seed, the smaller of the shares of G its top 10 directions recover and remove."""
    out: dict[str, dict[str, list[float]]] = {}
    for zoo in zoos:
        run = RunDir(zoo / organism)
        if not ModelDiffingResult.exists(run):
            continue
        diffing = ModelDiffingResult.load(run)
        layers = {layer.hook: layer for layer in diffing.layers}
        for method, (hook, _) in at_best_hook(list(diffing.layers), list(diffing.summary)).items():
            for row in layers[hook].methods[method]:
                scores = values(row)
                ways = [scores.get(splice_score(10, w)) for w in ("recovered", "removed")]
                if None not in ways:
                    scores[BOTH_WAYS] = min(ways)
                for key, value in scores.items():
                    out.setdefault(method, {}).setdefault(key, []).append(value)
    return out


def pm(xs: list[float]) -> str:
    return f"{np.mean(xs):.2f} ± {np.std(xs):.2f} (n={len(xs)})"


def ranked(scores: dict[str, dict[str, list[float]]], key: str) -> list[tuple[str, list[float]]]:
    return sorted(((m, s[key]) for m, s in scores.items() if key in s), key=lambda item: -np.mean(item[1]))


def lead(board: list[tuple[str, list[float]]]) -> str:
    """Whether the best method's interval lies wholly above the runner-up's (a spread needs two values)."""
    if len(board) < 2:
        return "alone"
    (_, a), (_, b) = board[:2]
    if min(len(a), len(b)) < 2:
        return "one value: no spread to rank by"
    return "separates" if np.mean(a) - np.std(a) > np.mean(b) + np.std(b) else "does not separate from the runner-up"


def planted_precision(run: RunDir, logit_tokens: int) -> float | None:
    """The precision a perfect method would reach on a planted edit: the share of the answer among the top
    ``logit_tokens`` tokens of the planted direction itself, read through the unembedding as every method is."""
    from analysis.feature_diff import policy_vocabulary
    from rlhf.organisms.edit import PLANTED_FILE, PlantedEdit
    from rlhf.organisms.objective import organism

    if not (run.policy / PLANTED_FILE).exists():
        return None
    tokenizer, vocab, _, unembed = policy_vocabulary(run)
    wanted = {t.lstrip("Ġ▁") for t in organism(run.root.name).answer(tokenizer).tokens}
    top = (PlantedEdit.load(run.policy).direction.float() @ unembed).topk(logit_tokens).indices.tolist()
    return sum(vocab[t].lstrip("Ġ▁") in wanted for t in top) / logit_tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--zoo", type=Path, action="append", required=True, help="a finished zoo's directory (repeat)")
    parser.add_argument("--out", type=Path, help="also write the tables here (markdown)")
    args = parser.parse_args()
    organisms = [o for o in ORGANISMS if any(ModelDiffingResult.exists(RunDir(z / o)) for z in args.zoo)]
    if not organisms:
        sys.exit(f"error: no organism of {', '.join(map(str, args.zoo))} has model diffing results (run python -m study zoo)")
    lines = [f"zoos: {', '.join(map(str, args.zoo))}; scores pooled over zoo runs x dictionary seeds, each method at its "
             f"best hook in each run; goal: both ways >= {GOAL_SHARE} and precision >= {GOAL_PRECISION}", ""]
    for organism in organisms:
        runs = [RunDir(z / organism) for z in args.zoo]
        gains = [g.gain for r in runs if RewardAttributionResult.exists(r) for g in RewardAttributionResult.load(r).gain]
        policy = [PolicyResult.load(r).reward_gain for r in runs if PolicyResult.exists(r)]
        lines += [f"## {organism}", "", f"policy reward gain per run: {', '.join(f'{g:.3f}' for g in policy)}; "
                  f"G over runs x sampling seeds: {pm(gains) if gains else '-'}", ""]
        scores = pooled(args.zoo, organism)
        lines += ["| score | best method | runner-up | lead |", "|---|---|---|---|"]
        goal = {}
        for key in (BOTH_WAYS, splice_score(10, "recovered"), splice_score(10, "removed"), splice_score(30, "recovered"),
                    splice_score(30, "removed"), PRECISION, "planted_cosine", "key_hit"):
            board = ranked(scores, key)
            if not board:
                continue
            second = f"{label(board[1][0])} {pm(board[1][1])}" if len(board) > 1 else "-"
            lines.append(f"| {key} | {label(board[0][0])} {pm(board[0][1])} | {second} | {lead(board)} |")
            goal[key] = float(np.mean(board[0][1]))
        met = goal.get(BOTH_WAYS, 0) >= GOAL_SHARE and goal.get(PRECISION, 0) >= GOAL_PRECISION
        lines += ["", f"scientific goal: {'met' if met else 'not met'} (best both ways {goal.get(BOTH_WAYS, 0):.2f}, "
                  f"best precision {goal.get(PRECISION, 0):.2f})"]
        diffed = next(r for r in runs if ModelDiffingResult.exists(r))
        ceiling = planted_precision(diffed, ModelDiffingResult.load(diffed).logit_tokens)
        if ceiling is not None:
            lines.append(f"the planted direction itself names the answer with precision {ceiling:.2f} (a perfect "
                         "method's ceiling)")
        lines.append("")
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
