#!/usr/bin/env bash
# `make bench`: service benchmarks into docs/performance.md (see bench/run.py).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
export PROFILE_BIN_DIR="$PWD/$build/bin"
exec /usr/bin/python3 bench/run.py "${@:2}"
