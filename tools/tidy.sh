#!/usr/bin/env bash
# Advisory static analysis (STYLE.md rule 29): clang-tidy with clang-analyzer-* and bugprone-*
# over our sources, using the build's compile_commands.json. Prints findings; the Makefile
# target never fails on them.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
build=${1:-build}
if [ ! -f "$build/compile_commands.json" ]; then
    echo "tidy: $build/compile_commands.json missing; run make build first" >&2
    exit 1
fi
mapfile -t files < <(git ls-files -co --exclude-standard -- 'api/*.c' 'relay/*.c' 'common/*.c' 'tools/*.c')
clang-tidy -p "$build" --quiet \
    --checks='-*,clang-analyzer-*,bugprone-*,-bugprone-easily-swappable-parameters,-bugprone-reserved-identifier' \
    "${files[@]}" 2>/dev/null | grep -E 'warning:|error:' | sort | uniq -c | sort -rn | head -100
echo "tidy: ${#files[@]} files checked (advisory)"
