#!/usr/bin/env bash
# Relay drain benchmark (issue 5): ROWS pending outbox rows (PAYLOAD-byte payloads, USERS users)
# are published by one profile-relay into a kafka-mock of its own; prints events/s.
#
#   bench/relay_drain.sh [STACK_ENV]     (default: start a stack under .local/bench-relay)
#
# Environment: ROWS (1000000), USERS (10000), PAYLOAD (200), RELAY_BATCH_SIZE (2000),
# PROFILE_BIN_DIR (build/bin), RELAY_LOG (keep the relay's log there; with LOG_LEVEL=debug it
# shows each claim and mark with its duration).
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${ROWS:-1000000}
USERS=${USERS:-10000}
PAYLOAD=${PAYLOAD:-200}
BATCH=${RELAY_BATCH_SIZE:-2000}
BIN=${PROFILE_BIN_DIR:-$PWD/build/bin}

own_stack=""
if [ $# -ge 1 ]; then
    env_file=$1
else
    own_stack=$PWD/.local/bench-relay
    KAFKA_MOCK_BIN=$BIN/kafka-mock tools/stack.sh start "$own_stack" >/dev/null
    env_file=$own_stack/stack.env
fi
# shellcheck disable=SC1090
. "$env_file"

work=$(mktemp -d /tmp/relay-bench.XXXXXX)
db=relay_bench_$$
mock_pid="" relay_pid=""
cleanup() {
    [ -n "${RELAY_LOG:-}" ] && [ -f "$work/relay.log" ] && cp "$work/relay.log" "$RELAY_LOG"
    [ -n "$relay_pid" ] && kill "$relay_pid" 2>/dev/null && wait "$relay_pid" 2>/dev/null
    [ -n "$mock_pid" ] && kill "$mock_pid" 2>/dev/null && wait "$mock_pid" 2>/dev/null
    psql -X -q "$ADMIN_DATABASE_URL" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
    [ -n "$own_stack" ] && tools/stack.sh stop "$own_stack" >/dev/null 2>&1
    rm -rf "$work"
}
trap cleanup EXIT

# The owner migrates and loads; the relay connects as its own role (migrations/V004__roles.sql).
url="postgresql://profile_owner@$PGHOST:$PGPORT/$db"
relay_url="postgresql://profile_relay@$PGHOST:$PGPORT/$db"
psql -X -q "$ADMIN_DATABASE_URL" -c "CREATE DATABASE $db OWNER profile_owner" >/dev/null
find migrations -maxdepth 1 -name 'V*__*.sql' | sort -V | while IFS= read -r f; do
    psql -X -q -v ON_ERROR_STOP=1 "$url" -f "$f" >/dev/null
done
# ROWS rows round-robin over USERS users, per user seq 1..n; payload padded to PAYLOAD bytes.
psql -X -q -v ON_ERROR_STOP=1 "$url" >/dev/null <<SQL
INSERT INTO outbox (user_id, seq, event_type, payload, created_at)
SELECT 'bench-' || (g % $USERS), g / $USERS + 1, 'HistoryUpdated',
       json_build_object('userId', 'bench-' || (g % $USERS), 'videoId', 'v' || g,
                         'pad', repeat('x', greatest($PAYLOAD - 60, 0))),
       now()
FROM generate_series(0, $ROWS - 1) g;
INSERT INTO user_event_seq SELECT user_id, max(seq), now() FROM outbox GROUP BY user_id;
VACUUM ANALYZE outbox;
SQL
echo "relay-bench: $ROWS rows for $USERS users loaded" >&2

"$BIN/kafka-mock" --brokers 3 --partitions 12 --topic relay.bench >"$work/mock.out" \
    2>"$work/mock.log" &
mock_pid=$!
for _ in $(seq 50); do [ -s "$work/mock.out" ] && break; sleep 0.1; done
bootstrap=$(head -1 "$work/mock.out")

start=$(date +%s.%N)
DATABASE_URL=$relay_url REDIS_URL=$REDIS_URL KAFKA_BOOTSTRAP_SERVERS=$bootstrap \
    KAFKA_TOPIC=relay.bench RELAY_BATCH_SIZE=$BATCH RELAY_METRICS_PORT=0 \
    "$BIN/profile-relay" >"$work/relay.log" 2>&1 &
relay_pid=$!
while :; do
    left=$(psql -X -At "$url" -c "SELECT count(*) FROM outbox WHERE published_at IS NULL")
    [ "$left" -eq 0 ] && break
    if ! kill -0 "$relay_pid" 2>/dev/null; then
        echo "relay-bench: relay died" >&2
        tail -5 "$work/relay.log" >&2
        exit 1
    fi
    sleep 0.5
done
end=$(date +%s.%N)
awk -v s="$start" -v e="$end" -v n="$ROWS" -v b="$BATCH" 'BEGIN {
    printf "relay-bench: drained %d rows in %.1f s: %.0f events/s (batch %d)\n", n, e - s, n / (e - s), b
}'
