#!/usr/bin/env bash
# Kafka away for a long time (`make soak`, docs/faults.md, Kafka away): its own local stack under
# .local/soak-<pid>, migrated; one profile-api and two profile-relay processes; history writes at
# SOAK_RATE per second; every kafka-mock broker down for SOAK_OUTAGE seconds while writes go on;
# then the drain and the outbox sizes before and after. Not part of CI.
#
#   tools/soak.sh [BUILD_DIR]
#
# Environment: SOAK_OUTAGE (seconds, default 3600), SOAK_RATE (writes/s, default 200),
# SOAK_RETENTION (the relays' OUTBOX_RETENTION_SECONDS, default 30), SOAK_KEEP=1.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_DIR=${1:-build}
case $BUILD_DIR in /*) ;; *) BUILD_DIR=$REPO/$BUILD_DIR ;; esac
BIN_DIR=$BUILD_DIR/bin
PY=/usr/bin/python3
RUN_DIR=$REPO/.local/soak-$$
STACK_DIR=$RUN_DIR/stack
OUTAGE=${SOAK_OUTAGE:-3600}

for b in profile-api profile-relay profile-migrate kafka-mock; do
    if [ ! -x "$BIN_DIR/$b" ]; then
        echo "soak: $BIN_DIR/$b not found: build first (make build)" >&2
        exit 2
    fi
done

RUNNER=""
cleanup() {
    local rc=$? i
    trap - EXIT INT TERM
    if [ -n "$RUNNER" ] && kill -0 "$RUNNER" 2>/dev/null; then
        kill -TERM "$RUNNER" 2>/dev/null || true
        for ((i = 0; i < 300; i++)); do kill -0 "$RUNNER" 2>/dev/null || break; sleep 0.1; done
    fi
    if [ -d "$STACK_DIR" ]; then
        PROFILE_BIN_DIR=$BIN_DIR "$REPO/tools/stack.sh" stop "$STACK_DIR" >/dev/null 2>&1 ||
            echo "soak: stack stop failed (see $STACK_DIR)" >&2
    fi
    if [ "$rc" -eq 0 ] && [ "${SOAK_KEEP:-0}" != 1 ]; then
        rm -rf "$RUN_DIR"
    else
        echo "soak: logs kept in $RUN_DIR" >&2
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$RUN_DIR"
PROFILE_BIN_DIR=$BIN_DIR "$REPO/tools/stack.sh" start "$STACK_DIR" >"$RUN_DIR/stack-start.log" 2>&1 ||
    { cat "$RUN_DIR/stack-start.log" >&2; exit 1; }
DATABASE_URL=$(sed -n 's/^DATABASE_URL=//p' "$STACK_DIR/stack.env")
DATABASE_URL=$DATABASE_URL MIGRATIONS_DIR=$REPO/migrations "$BIN_DIR/profile-migrate" \
    >"$RUN_DIR/migrate.log" 2>&1 || { cat "$RUN_DIR/migrate.log" >&2; exit 1; }

echo "soak: Kafka away for ${OUTAGE}s (run dir $RUN_DIR)"
set +e
PROFILE_BIN_DIR=$BIN_DIR "$PY" "$REPO/tests/faults/soak.py" --stack-env "$STACK_DIR/stack.env" \
    --stack-sh "$REPO/tools/stack.sh" --bin-dir "$BIN_DIR" --run-dir "$RUN_DIR" \
    --outage "$OUTAGE" --rate "${SOAK_RATE:-200}" --retention "${SOAK_RETENTION:-30}" &
RUNNER=$!
wait "$RUNNER"
rc=$?
RUNNER=""
set -e
exit "$rc"
