#!/usr/bin/env bash
# Fault-injection suite (`make test-faults`, docs/faults.md): its own local stack under
# .local/faults-<pid>, migrated; two profile-api and two profile-relay processes; a workload with
# faults for FAULTS_DURATION seconds (default 120; the relay liveness faults need >= 90); a
# final drain; the checker and its one-line summary; then a planted fault (an outbox row deleted
# behind the relays' back) that the checker must catch. Then the pg-failover kind on a second
# stack with a synchronous standby: the primary killed with kill -9 under load and the standby
# promoted, the services on the multi-host URL.
# Exits non-zero on any violation. Everything it started is stopped on exit.
#
#   tools/test-faults.sh [BUILD_DIR]
#
# Environment: FAULTS_DURATION (seconds, default 120), FAULTS_SEED (reproduce a schedule),
# FAULTS_ONLY=relay_freeze,relay_netcut (only these faults of the schedule),
# FAULTS_FREEZE_SECONDS (30), FAULTS_NETCUT_SECONDS (20), FAULTS_TAKEOVER_SECONDS (10),
# FAULTS_USERS (300), FAULTS_THREADS (16), FAULTS_KEEP=1 (keep the run directory on success),
# FAULTS_PRODUCE_ERRORS=0 (no injected Produce errors: see docs/faults.md, Findings),
# FAULTS_KINDS (comma-separated among mixed, pg-failover; default both),
# FAULTS_FAILOVER_DURATION (seconds of the pg-failover run, default 30).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_DIR=${1:-build}
case $BUILD_DIR in /*) ;; *) BUILD_DIR=$REPO/$BUILD_DIR ;; esac
BIN_DIR=$BUILD_DIR/bin
PY=/usr/bin/python3
DURATION=${FAULTS_DURATION:-120}
RUN_DIR=$REPO/.local/faults-$$
STACK_DIR=$RUN_DIR/stack
FAILOVER_DURATION=${FAULTS_FAILOVER_DURATION:-30}
KINDS=${FAULTS_KINDS:-mixed,pg-failover}

for b in profile-api profile-relay profile-migrate kafka-mock; do
    if [ ! -x "$BIN_DIR/$b" ]; then
        echo "test-faults: $BIN_DIR/$b not found: build first (make build)" >&2
        exit 2
    fi
done
if ! [[ $DURATION =~ ^[0-9]+$ ]] || [ "$DURATION" -lt 10 ] ||
    ! [[ $FAILOVER_DURATION =~ ^[0-9]+$ ]] || [ "$FAILOVER_DURATION" -lt 20 ]; then
    echo "test-faults: FAULTS_DURATION must be a whole number of seconds >= 10," \
        "FAULTS_FAILOVER_DURATION >= 20" >&2
    exit 2
fi
case ",$KINDS," in ,mixed, | ,pg-failover, | ,mixed,pg-failover, | ,pg-failover,mixed,) ;;
*)
    echo "test-faults: FAULTS_KINDS must name mixed and/or pg-failover, got '$KINDS'" >&2
    exit 2
    ;;
esac

echo "test-faults: checker unit tests"
(cd "$REPO" && "$PY" -m pytest -q -p no:cacheprovider tests/faults/test_checker.py)

# True when pid is alive and its command name is $2 (a recycled pid is left alone).
pid_is() {
    local comm
    [ -n "$1" ] && [ -r "/proc/$1/comm" ] || return 1
    comm=$(cat "/proc/$1/comm" 2>/dev/null) || return 1
    [ "$comm" = "$2" ]
}

RUNNER=""

cleanup() {
    local rc=$? f pid name i
    trap - EXIT INT TERM
    # The Python runner first (timeout passes SIGTERM on), so it restarts nothing afterwards.
    if [ -n "$RUNNER" ] && kill -0 "$RUNNER" 2>/dev/null; then
        kill -TERM "$RUNNER" 2>/dev/null || true
        for ((i = 0; i < 100; i++)); do kill -0 "$RUNNER" 2>/dev/null || break; sleep 0.1; done
    fi
    # Services started by run.py (normally already stopped by it).
    for f in "$RUN_DIR"/pids/*.pid "$RUN_DIR"/failover/pids/*.pid; do
        [ -f "$f" ] || continue
        pid=$(cat "$f")
        case $(basename "$f") in api-*) name=profile-api ;; relay-*) name=profile-relay ;; *) continue ;; esac
        if pid_is "$pid" "$name"; then
            kill -TERM "$pid" 2>/dev/null || true
            for ((i = 0; i < 50; i++)); do pid_is "$pid" "$name" || break; sleep 0.1; done
            if pid_is "$pid" "$name"; then kill -KILL "$pid" 2>/dev/null || true; fi
        fi
    done
    for f in "$STACK_DIR" "$RUN_DIR/failover/stack"; do
        [ -d "$f" ] || continue
        PROFILE_BIN_DIR=$BIN_DIR "$REPO/tools/stack.sh" stop "$f" >/dev/null 2>&1 ||
            echo "test-faults: stack stop failed (see $f)" >&2
    done
    if [ "$rc" -eq 0 ] && [ "${FAULTS_KEEP:-0}" != 1 ]; then
        rm -rf "$RUN_DIR"
    else
        echo "test-faults: logs and records kept in $RUN_DIR" >&2
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$RUN_DIR"

# Starts a migrated stack in $1 (logs in $2).
stack_up() {
    local sdir=$1 logdir=$2 url
    mkdir -p "$logdir"
    PROFILE_BIN_DIR=$BIN_DIR "$REPO/tools/stack.sh" start "$sdir" >"$logdir/stack-start.log" 2>&1 ||
        { cat "$logdir/stack-start.log" >&2; return 1; }
    url=$(sed -n 's/^DATABASE_URL=//p' "$sdir/stack.env")
    DATABASE_URL=$url MIGRATIONS_DIR=$REPO/migrations "$BIN_DIR/profile-migrate" \
        >"$logdir/migrate.log" 2>&1 || { cat "$logdir/migrate.log" >&2; return 1; }
}

# Runs tests/faults/run.py with a time limit; $1 is the limit, the rest its arguments.
run_bounded() {
    local limit=$1 rc
    shift
    set +e
    PROFILE_BIN_DIR=$BIN_DIR timeout --signal=TERM --kill-after=20 "$limit" \
        "$PY" "$REPO/tests/faults/run.py" "$@" &
    RUNNER=$!
    wait "$RUNNER"
    rc=$?
    RUNNER=""
    set -e
    if [ "$rc" -eq 124 ]; then
        echo "test-faults: FAIL: the run did not finish within ${limit}s" >&2
    fi
    return "$rc"
}

common=(--stack-sh "$REPO/tools/stack.sh" --bin-dir "$BIN_DIR"
    --users "${FAULTS_USERS:-300}" --threads "${FAULTS_THREADS:-16}")
[ -n "${FAULTS_SEED:-}" ] && common+=(--seed "$FAULTS_SEED")
rc=0

if [[ ,$KINDS, == *,mixed,* ]]; then
    stack_up "$STACK_DIR" "$RUN_DIR" || exit 1
    echo "test-faults: ${DURATION}s of workload with faults (run dir $RUN_DIR)"
    # Bounded: the run, the client retry budget, two drains, the cache check and the stops.
    run_bounded $((DURATION + 300)) "${common[@]}" --stack-env "$STACK_DIR/stack.env" \
        --run-dir "$RUN_DIR" --duration "$DURATION" || rc=$?
    PROFILE_BIN_DIR=$BIN_DIR "$REPO/tools/stack.sh" stop "$STACK_DIR" >/dev/null 2>&1 || true
fi

if [[ ,$KINDS, == *,pg-failover,* ]]; then
    FDIR=$RUN_DIR/failover
    stack_up "$FDIR/stack" "$FDIR" || exit 1
    PROFILE_BIN_DIR=$BIN_DIR "$REPO/tools/stack.sh" standby-start "$FDIR/stack" \
        >"$FDIR/standby-start.log" 2>&1 || { cat "$FDIR/standby-start.log" >&2; exit 1; }
    echo "test-faults: pg-failover, ${FAILOVER_DURATION}s of workload (run dir $FDIR)"
    run_bounded $((FAILOVER_DURATION + 180)) "${common[@]}" --kind pg-failover \
        --stack-env "$FDIR/stack/stack.env" --run-dir "$FDIR" --duration "$FAILOVER_DURATION" ||
        rc=$?
fi
exit "$rc"
