#!/usr/bin/env bash
# Create .venv at the repository root and install the project, once. A second call
# reuses .venv unless pyproject.toml changed since the last install.
set -euo pipefail
cd "$(dirname "$0")/.."
stamp=.venv/.installed-from
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ -x .venv/bin/python ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  exit 0
fi
echo "setting up .venv (first run: a few minutes)..."
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
# torch first: the CPU build. Asked for later, as a dependency, pip would pull a CUDA build of several GB.
.venv/bin/python -m pip install --quiet torch==2.13.0
.venv/bin/python -m pip install --quiet -e ".[dev]"
echo "$want" > "$stamp"
