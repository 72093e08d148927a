"""One tiny study shared by every test that needs trained models (session-scoped)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from jaxtyping import install_import_hook

os.environ.setdefault("HF_HUB_OFFLINE", "1")

# Every annotated function of the suite is checked at run time in the tests: jaxtyping
# shapes and dtypes, and the other annotations through beartype. The hook must be installed
# before the packages are first imported.
import tests.typecheck  # noqa: E402,F401  (imported before the hook names it)

_TYPECHECK = install_import_hook(["rlhf", "analysis", "probes", "study"], "tests.typecheck.typechecker")

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "tiny.toml"


def run_config(config: Path, runs_dir: Path) -> tuple:
    """A study config run end to end under ``runs_dir``; returns (config, run_dir, log lines)."""
    from study.config import load_config
    from study.pipeline import run_study

    cfg = load_config(config, {"runs_dir": str(runs_dir)})
    lines: list[str] = []
    run_dir = run_study(cfg, log=lines.append)
    return cfg, run_dir, lines


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """The tiny config run once end to end; returns (config, run_dir, log lines)."""
    return run_config(TINY, tmp_path_factory.mktemp("runs"))
