#!/usr/bin/env bash
# The main job: set up if needed, then run the whole study on the embedded default.
# Extra arguments go to `python -m study run` (e.g. --config configs/tiny.toml).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1
if [ $# -eq 0 ]; then set -- --config configs/sentiment.toml; fi
exec .venv/bin/python -m study run "$@"
