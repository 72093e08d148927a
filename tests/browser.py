"""Open a local page in headless Chromium (Debian's package) with no network.

Returns the DOM after the page's scripts ran and every console message the page
produced. Chromium's own GPU-driver notices (``[.WebGL-...]``) come through the same
log and are not the page's: they are dropped.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--enable-unsafe-swiftshader", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync")
CONSOLE = re.compile(r':CONSOLE[^\]]*\] "(.*)", source: ')


def chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        raise RuntimeError("chromium is not installed: run `bash scripts/setup.sh` (it installs Debian's chromium package)")
    return path


def open_page(page: Path, screenshot: Path | None = None, width: int = 1280, height: int = 4000) -> tuple[str, list[str]]:
    """(DOM after scripts ran, console messages of the page)."""
    with tempfile.TemporaryDirectory() as profile:
        common = [chromium(), *FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=15000", f"--window-size={width},{height}"]
        run = subprocess.run([*common, "--enable-logging=stderr", "--v=0", "--dump-dom", page.resolve().as_uri()],
                             capture_output=True, text=True, timeout=120, check=True)
        if screenshot is not None:
            subprocess.run([*common, f"--screenshot={screenshot}", page.resolve().as_uri()], capture_output=True,
                           timeout=120, check=True)
    messages = [m.group(1) for m in CONSOLE.finditer(run.stderr) if not m.group(1).startswith("[.WebGL-")]
    return run.stdout, messages
