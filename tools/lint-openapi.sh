#!/usr/bin/env bash
# Lints docs/openapi.yaml with a pinned Redocly CLI (tools/openapi/package-lock.json).
set -euo pipefail
cd "$(dirname "$0")/openapi"
if [ ! -x node_modules/.bin/redocly ]; then
    npm ci --no-audit --no-fund --ignore-scripts --loglevel=error >/dev/null
fi
export REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true NO_UPDATE_NOTIFIER=1
out=$(node_modules/.bin/redocly lint --format=stylish --config redocly.yaml ../../docs/openapi.yaml 2>&1) || {
    echo "$out" | grep -v '^\s*║\|╔\|╚' >&2
    exit 1
}
echo "$out" | grep -E 'valid|warning' | grep -v '║' || true
