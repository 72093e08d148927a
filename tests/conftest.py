"""One tiny study shared by every test that needs trained models (session-scoped)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "tiny.toml"


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """The tiny config run once end to end; returns (config, run_dir, log lines)."""
    from study.config import load_config
    from study.pipeline import run_study

    cfg = load_config(TINY, {"runs_dir": str(tmp_path_factory.mktemp("runs"))})
    lines: list[str] = []
    run_dir = run_study(cfg, log=lines.append)
    return cfg, run_dir, lines
