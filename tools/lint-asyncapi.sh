#!/usr/bin/env bash
# Validates docs/asyncapi.yaml (and the schemas/events/*.json files it references) with the
# official AsyncAPI parser, pinned in tools/asyncapi/package-lock.json.
set -euo pipefail
cd "$(dirname "$0")/asyncapi"
if [ ! -d node_modules/@asyncapi/parser ]; then
    npm ci --no-audit --no-fund --ignore-scripts --loglevel=error >/dev/null
fi
out=$(node validate.mjs ../../docs/asyncapi.yaml 2>&1) || {
    echo "$out" >&2
    exit 1
}
echo "$out" | grep -v '^info ' || true
