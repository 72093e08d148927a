"""A quiet console: one line per stage and our own progress bars; library chatter to a log file.

While a stage runs, Python warnings and the ``logging`` records of every library (transformers,
TRL, SAE-Lens, ...) go to ``runs/<study>/logs/<stage>.log`` instead of the console, Hugging Face's
own progress bars (loading and writing weights) are off, and every progress bar clears itself when
done, so that a finished stage leaves only its "[stage] finished in N s" line. ``--verbose`` keeps
everything on the console as the libraries print it.
"""

from __future__ import annotations

import logging
import sys
import warnings
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, TextIO

# summary.json keys printed when a study finishes, in this order (those the study has)
HEADLINE = ("reward_gain", "policy_kl_per_token", "reward_gain_exact", "saes_pass", "sae_loss_recovered_min",
            "probe_tau_policy_sae", "dpo_implicit_reward_accuracy")


def headline(summary: dict[str, Any]) -> list[str]:
    """The headline figures a reader looks for first."""
    out = []
    for key in HEADLINE:
        if key in summary:
            value = summary[key]
            out.append(f"  {key:<30} {value:.4g}" if isinstance(value, float) else f"  {key:<30} {value}")
    return out


def closing_lines(summary: dict[str, Any]) -> list[str]:
    """The study's last lines: the headline figures, every check (a failed one with its value, its
    bar and by how much it misses), and the stale stages, so a broken model is the last thing read."""
    from study.report.checks import Check

    lines = headline(summary)
    out = ["headline figures (all of them: report/summary.json):", *lines] if lines else []
    checks = [Check(**{k: v for k, v in c.items() if k not in ("passes", "section")}) for c in summary.get("checks", [])]
    failed = [c for c in checks if not c.passes]
    if checks:
        out.append(f"checks: {len(checks) - len(failed)} of {len(checks)} pass" +
                   (f"; {len(failed)} FAIL (the report's first screen lists them)" if failed else ""))
        out += [f"  {c.text()}" for c in checks if c.passes] + [f"  {c.text()}" for c in failed]
    stale = summary.get("stale_stages", {})
    if stale:
        out.append(f"STALE: {', '.join(stale)} were built from artifacts replaced since; `python -m study run` re-runs them")
    return out


@contextmanager
def _warnings_to(stream: TextIO) -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("default")

        def show(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                 file: TextIO | None = None, line: str | None = None) -> None:
            stream.write(warnings.formatwarning(message, category, filename, lineno, line))

        warnings.showwarning = show
        yield


@contextmanager
def _logging_to(stream: TextIO) -> Iterator[None]:
    """Root and library loggers write to the stream; their own console handlers are set aside."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s: %(message)s"))
    loggers = [logging.getLogger()] + [logging.getLogger(n) for n in list(logging.root.manager.loggerDict)
                                        if isinstance(logging.root.manager.loggerDict[n], logging.Logger)]
    saved = {lg: lg.handlers[:] for lg in loggers}
    for lg in loggers:
        lg.handlers = [h for h in lg.handlers if not isinstance(h, logging.StreamHandler) or isinstance(h, logging.FileHandler)]
    logging.getLogger().addHandler(handler)
    try:
        yield
    finally:
        logging.getLogger().removeHandler(handler)
        for lg, handlers in saved.items():
            lg.handlers = handlers


@contextmanager
def _libraries_quiet() -> Iterator[None]:
    """Hugging Face's loading/saving and dataset-mapping bars off; transformers' records handed to the
    root logger (which writes the stage's log) instead of its own stderr handler."""
    from datasets.utils import logging as ds_logging
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars
    from transformers.utils import logging as hf_logging

    hf_bars, ds_bars, hub_off = hf_logging.is_progress_bar_enabled(), ds_logging.is_progress_bar_enabled(), are_progress_bars_disabled()
    hf_logging.disable_progress_bar()
    ds_logging.disable_progress_bar()
    disable_progress_bars()
    hf_logging.disable_default_handler()
    hf_logging.enable_propagation()
    try:
        yield
    finally:
        hf_logging.disable_propagation()
        hf_logging.enable_default_handler()
        if hf_bars:
            hf_logging.enable_progress_bar()
        if ds_bars:
            ds_logging.enable_progress_bar()
        if not hub_off:
            enable_progress_bars()


@contextmanager
def _transient_bars() -> Iterator[None]:
    """Every tqdm bar clears itself when it closes unless its caller asked otherwise. Where the
    console is not a terminal (a log file, CI) only the outermost bar shows: a bar nested under
    another reaches its line with newlines, which a terminal takes back and a file keeps."""
    import tqdm.std

    original = tqdm.std.tqdm.__init__
    terminal = sys.stderr.isatty()

    def init(self: tqdm.std.tqdm, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("leave", False)
        if not terminal and any(bar is not self for bar in tqdm.std.tqdm._instances):  # tqdm registers in __new__
            kwargs["disable"] = True
        original(self, *args, **kwargs)

    tqdm.std.tqdm.__init__ = init
    try:
        yield
    finally:
        tqdm.std.tqdm.__init__ = original


@contextmanager
def stage_output(log_file: Path, verbose: bool) -> Iterator[None]:
    """Around one stage: library chatter to ``log_file`` (appended), unless ``verbose``."""
    if verbose:
        yield
        return
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "a", encoding="utf-8", buffering=1) as stream, ExitStack() as stack:
        for context in (_libraries_quiet(), _warnings_to(stream), _logging_to(stream), _transient_bars()):
            stack.enter_context(context)
        yield
