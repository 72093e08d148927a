#!/usr/bin/env bash
# Debian's chromium for the tests that open the rendered pages headless; installed once.
set -euo pipefail
command -v chromium >/dev/null && exit 0
echo "installing Debian's chromium for the browser tests..."
sudo=""
[ "$(id -u)" = 0 ] || sudo=sudo
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends chromium >/dev/null
