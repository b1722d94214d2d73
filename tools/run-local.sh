#!/usr/bin/env bash
# What `make run` runs after the build: a local stack in .local/run (a stale one there is stopped
# first), migrations, then build/bin/profile-api and build/bin/profile-relay (when built) wired
# to it. Prints where everything listens, a development token and example requests, then waits.
# Ctrl-C or SIGTERM stops everything it started.
#
# usage: tools/run-local.sh [BUILD_DIR]   (default: build)
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_DIR=${1:-$REPO/build}
[ -d "$BUILD_DIR" ] || {
    echo "run-local: build dir $BUILD_DIR does not exist (run make build first)" >&2
    exit 2
}
BUILD_DIR=$(cd "$BUILD_DIR" && pwd)
BIN_DIR=$BUILD_DIR/bin
RUN_DIR=$REPO/.local/run
STACK=$REPO/tools/stack.sh
export PROFILE_BIN_DIR=$BIN_DIR

die() {
    echo "run-local: $*" >&2
    exit 1
}

free_port() {
    /usr/bin/python3 -c '
import random, socket
for _ in range(500):
    p = random.randint(20000, 32767)
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", p))
        except OSError:
            continue
    print(p)
    break
else:
    raise SystemExit("run-local: no free port")'
}

pid_is() {
    [ -n "$1" ] && [ "$(cat "/proc/$1/comm" 2>/dev/null)" = "$2" ]
}

# Stops a service recorded in RUN_DIR/NAME.pid: SIGTERM, then SIGKILL after 20 s.
stop_service() {
    local name=$1 pid="" i
    [ -f "$RUN_DIR/$name.pid" ] && pid=$(cat "$RUN_DIR/$name.pid")
    if pid_is "$pid" "$name"; then
        echo "run-local: stopping $name (pid $pid)"
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 200; i++)); do
            pid_is "$pid" "$name" || break
            sleep 0.1
        done
        if pid_is "$pid" "$name"; then
            echo "run-local: $name did not stop in 20s, sending SIGKILL" >&2
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    rm -f "$RUN_DIR/$name.pid"
}

# shellcheck disable=SC2317 # invoked by the EXIT trap
cleanup() {
    trap - EXIT INT TERM
    if [ -n "${SLEEP_PID:-}" ]; then
        kill "$SLEEP_PID" 2>/dev/null || true
    fi
    stop_service profile-api
    stop_service profile-relay
    "$STACK" stop "$RUN_DIR" >/dev/null 2>&1 || echo "run-local: stack stop failed" >&2
    echo "run-local: stopped"
}

# Starts a built service in its own session (so a Ctrl-C reaches only this script, which then
# stops things in order), logging to RUN_DIR/NAME.log, and waits for its health URL. The service
# connects to PostgreSQL with its own role's URL (migrations/V004__roles.sql), never the owner's.
start_service() {
    local name=$1 url=$2 db_url=$3 pid i code
    DATABASE_URL=$db_url setsid "$BIN_DIR/$name" </dev/null >"$RUN_DIR/$name.log" 2>&1 &
    pid=$!
    echo "$pid" >"$RUN_DIR/$name.pid"
    for ((i = 0; i < 300; i++)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "---- last lines of $RUN_DIR/$name.log ----" >&2
            tail -n 25 "$RUN_DIR/$name.log" >&2 || true
            die "$name exited during start-up"
        fi
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$url" || true)
        [ "$code" = 200 ] && return 0
        sleep 0.1
    done
    echo "---- last lines of $RUN_DIR/$name.log ----" >&2
    tail -n 25 "$RUN_DIR/$name.log" >&2 || true
    die "$name did not answer 200 on $url within 30s"
}

mkdir -p "$RUN_DIR"
# A previous run that was killed hard may have left things behind.
stop_service profile-api
stop_service profile-relay
"$STACK" stop "$RUN_DIR" >/dev/null 2>&1 || true

trap cleanup EXIT
trap 'exit 0' INT TERM HUP

"$STACK" start "$RUN_DIR"
set -a
# shellcheck source=/dev/null
. "$RUN_DIR/stack.env"
set +a

if [ -x "$BIN_DIR/profile-migrate" ]; then
    MIGRATIONS_DIR=$REPO/migrations "$BIN_DIR/profile-migrate" || die "migrations failed"
else
    echo "run-local: $BIN_DIR/profile-migrate not built; applying migrations/ with psql"
    # No process substitution here: `wait -n` below must only see the services.
    files=$(find "$REPO/migrations" -maxdepth 1 -name 'V*__*.sql' | sort -V)
    while IFS= read -r f; do
        [ -n "$f" ] || continue
        psql -X -q -v ON_ERROR_STOP=1 -d "$DATABASE_URL" -f "$f" || die "migration $f failed"
    done <<<"$files"
fi

# A development secret, kept across runs so that printed tokens stay valid for 24 h.
if [ ! -s "$RUN_DIR/dev-secret" ]; then
    (umask 077 && /usr/bin/python3 -c 'import secrets; print(secrets.token_hex(32))' \
        >"$RUN_DIR/dev-secret")
fi
JWT_HS256_SECRET=$(cat "$RUN_DIR/dev-secret")
JWT_ISSUER=profile-dev
JWT_AUDIENCE=profile-api
HTTP_PORT=$(free_port)
RELAY_METRICS_PORT=$(free_port)
while [ "$RELAY_METRICS_PORT" = "$HTTP_PORT" ]; do RELAY_METRICS_PORT=$(free_port); done
export JWT_HS256_SECRET JWT_ISSUER JWT_AUDIENCE HTTP_PORT RELAY_METRICS_PORT
export SHUTDOWN_DRAIN_SECONDS=${SHUTDOWN_DRAIN_SECONDS:-1}

API_URL=http://127.0.0.1:$HTTP_PORT
services=()
if [ -x "$BIN_DIR/profile-api" ]; then
    start_service profile-api "$API_URL/health/ready" "$API_DATABASE_URL"
    services+=(profile-api)
else
    echo "run-local: $BIN_DIR/profile-api is not built; not started" >&2
fi
if [ -x "$BIN_DIR/profile-relay" ]; then
    start_service profile-relay "http://127.0.0.1:$RELAY_METRICS_PORT/health/live" \
        "$RELAY_DATABASE_URL"
    services+=(profile-relay)
else
    echo "run-local: $BIN_DIR/profile-relay is not built; not started" >&2
fi

TOKEN=$(/usr/bin/python3 -c '
import os, time, jwt
now = int(time.time())
print(jwt.encode({"sub": "dev-user", "roles": ["user"], "iss": os.environ["JWT_ISSUER"],
                  "aud": os.environ["JWT_AUDIENCE"], "iat": now, "exp": now + 86400},
                 os.environ["JWT_HS256_SECRET"], algorithm="HS256"))')

echo
echo "==================== profile service: local development ===================="
for s in "${services[@]}"; do
    case $s in
    profile-api) echo "API            $API_URL  (log: $RUN_DIR/profile-api.log)" ;;
    profile-relay)
        echo "relay metrics  http://127.0.0.1:$RELAY_METRICS_PORT/metrics  (log: $RUN_DIR/profile-relay.log)"
        ;;
    esac
done
cat <<EOF
PostgreSQL     $DATABASE_URL (owner; the API connects as $API_DATABASE_URL,
               the relay as $RELAY_DATABASE_URL)
Redis          $REDIS_URL
Kafka (mock)   $KAFKA_BOOTSTRAP_SERVERS  topic $KAFKA_TOPIC  (control FIFO: $KAFKA_CONTROL)
Read events    kcat -C -b $KAFKA_BOOTSTRAP_SERVERS -t $KAFKA_TOPIC -f '%k %h %s\n'
JWT            HS256, issuer $JWT_ISSUER, audience $JWT_AUDIENCE, secret in $RUN_DIR/dev-secret

DEVELOPMENT TOKEN (sub=dev-user, roles ["user"], expires in 24 h; never use outside this machine):
  export TOKEN=$TOKEN

Examples:
  curl -s -X PUT $API_URL/profiles/dev-user -H "Authorization: Bearer \$TOKEN" \\
       -H 'Content-Type: application/json' -d '{"displayName":"Dev User","preferences":{"language":"en"}}'
  curl -s -X POST $API_URL/profiles/dev-user/watchlist -H "Authorization: Bearer \$TOKEN" \\
       -H 'Content-Type: application/json' -d '{"videoId":"v1"}'
  curl -s $API_URL/profiles/dev-user/watchlist -H "Authorization: Bearer \$TOKEN"

Ctrl-C stops everything.
EOF

if [ ${#services[@]} -eq 0 ]; then
    echo "run-local: no service is built; the stack keeps running until Ctrl-C"
    while :; do
        sleep 3600 &
        SLEEP_PID=$!
        wait "$SLEEP_PID" || true
    done
fi
# Returns when a service exits on its own (Ctrl-C runs the INT trap instead).
set +e
wait -n
rc=$?
set -e
for s in "${services[@]}"; do
    pid_is "$(cat "$RUN_DIR/$s.pid" 2>/dev/null)" "$s" || echo "run-local: $s exited (status $rc); see $RUN_DIR/$s.log" >&2
done
exit 1
