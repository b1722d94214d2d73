#!/usr/bin/env bash
# History retention under a write load (docs/performance.md, "History retention"): OLD history
# entries older than 30 days and RECENT newer ones are loaded; then a pgbench write load
# (api_history_add as profile_app, RATE transactions/s, CLIENTS clients) runs twice for DURATION
# each, with a profile-relay publishing its events: first with HISTORY_RETENTION_DAYS unset,
# then with HISTORY_RETENTION_DAYS=30. Prints the write latency (p50/p99/max) of both phases and
# the rows/s retention removed in the second.
#
#   bench/history_retention.sh [STACK_ENV]    (default: start a stack under .local/bench-retention)
#
# Environment: OLD (300000), RECENT (100000), USERS (10000), RATE (100), CLIENTS (4),
# DURATION (30, seconds per phase), HISTORY_RETENTION_BATCH (1000), PROFILE_BIN_DIR (build/bin).
set -euo pipefail
cd "$(dirname "$0")/.."
OLD=${OLD:-300000}
RECENT=${RECENT:-100000}
USERS=${USERS:-10000}
RATE=${RATE:-100}
CLIENTS=${CLIENTS:-4}
SECONDS_EACH=${DURATION:-30}
BATCH=${HISTORY_RETENTION_BATCH:-1000}
BIN=${PROFILE_BIN_DIR:-$PWD/build/bin}

own_stack=""
if [ $# -ge 1 ]; then
    env_file=$1
else
    own_stack=$PWD/.local/bench-retention
    tools/stack.sh stop "$own_stack" >/dev/null 2>&1 || true
    KAFKA_MOCK_BIN=$BIN/kafka-mock tools/stack.sh start "$own_stack" >/dev/null
    env_file=$own_stack/stack.env
fi
# shellcheck disable=SC1090
. "$env_file"

work=$(mktemp -d /tmp/retention-bench.XXXXXX)
db=retention_bench_$$
relay_pid=""
stop_relay() {
    if [ -n "$relay_pid" ]; then
        kill "$relay_pid" 2>/dev/null || true
        wait "$relay_pid" 2>/dev/null || true
    fi
    relay_pid=""
}
cleanup() {
    stop_relay
    psql -X -q "$ADMIN_DATABASE_URL" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
    [ -n "$own_stack" ] && tools/stack.sh stop "$own_stack" >/dev/null 2>&1
    rm -rf "$work"
}
trap cleanup EXIT

url="postgresql://profile_owner@$PGHOST:$PGPORT/$db"
psql -X -q "$ADMIN_DATABASE_URL" -c "CREATE DATABASE $db OWNER profile_owner" >/dev/null
DATABASE_URL=$url MIGRATIONS_DIR=$PWD/migrations "$BIN/profile-migrate" 2>/dev/null
psql -X -q -v ON_ERROR_STOP=1 "$url" >/dev/null <<SQL
INSERT INTO history_entries (user_id, video_id, position_seconds, duration_seconds, watched_at)
SELECT 'u' || (g % $USERS), 'v' || (g % 500), g % 3000, 3000,
       now() - interval '31 days' - (g % 5000) * interval '10 minutes'
  FROM generate_series(1, $OLD) g;
INSERT INTO history_entries (user_id, video_id, position_seconds, duration_seconds, watched_at)
SELECT 'u' || (g % $USERS), 'v' || (g % 500), g % 3000, 3000,
       now() - (g % 2000) * interval '10 minutes'
  FROM generate_series(1, $RECENT) g;
VACUUM ANALYZE history_entries;
SQL
echo "retention-bench: $OLD old and $RECENT recent entries for $USERS users loaded" >&2

cat >"$work/write.sql" <<SQL
\set u random(0, $((USERS - 1)))
\set v random(1, 500)
SELECT status FROM api_history_add(NULL, NULL, NULL, 86400, NULL, 'u' || :u, 'v' || :v, 10, 3000, NULL);
SQL

start_relay() {
    DATABASE_URL="postgresql://profile_relay@$PGHOST:$PGPORT/$db" REDIS_URL=$REDIS_URL \
        KAFKA_BOOTSTRAP_SERVERS=$KAFKA_BOOTSTRAP_SERVERS KAFKA_TOPIC=retention.bench \
        RELAY_METRICS_PORT=0 HISTORY_RETENTION_BATCH=$BATCH "$@" "$BIN/profile-relay" \
        >>"$work/relay.log" 2>&1 &
    relay_pid=$!
}

old_rows() {
    psql -X -At "$url" -c "SELECT count(*) FROM history_entries WHERE watched_at < now() - interval '30 days'"
}

# One write phase: pgbench logs every transaction; prints "p50 p99 max tps" in ms.
phase() {
    local name=$1
    rm -f "$work"/pgbench_log.*
    (cd "$work" && pgbench -n -M prepared -c "$CLIENTS" -j 2 -R "$RATE" -T "$SECONDS_EACH" -l \
        -f write.sql -h "$PGHOST" -p "$PGPORT" -U profile_app "$db" >"$work/$name.out" 2>&1)
    cat "$work"/pgbench_log.* | /usr/bin/python3 -c '
import sys
# time (field 3) counts from the scheduled start under --rate; minus schedule_lag (field 7) it
# is the transaction itself, which is what retention could slow down.
rows = [line.split() for line in sys.stdin if line.strip()]
lat = sorted((int(r[2]) - (int(r[6]) if len(r) > 6 else 0)) / 1000.0 for r in rows)
n = len(lat)
print(f"{lat[n // 2]:.2f} {lat[min(n - 1, int(n * 0.99))]:.2f} {lat[-1]:.2f} {n}")'
}

start_relay env
sleep 2
read -r a50 a99 amax an < <(phase off)
stop_relay
before=$(old_rows)
start_relay env HISTORY_RETENTION_DAYS=30
t0=$(date +%s.%N)
read -r b50 b99 bmax bn < <(phase on)
t1=$(date +%s.%N)
after=$(old_rows)
stop_relay
removed=$((before - after))
rate=$(/usr/bin/python3 -c "print(f'{$removed / ($t1 - $t0):.0f}')")

echo "write load: pgbench -R $RATE -c $CLIENTS -T $SECONDS_EACH (api_history_add as profile_app)"
printf '%-28s %10s %10s %10s %8s\n' phase "p50 ms" "p99 ms" "max ms" writes
printf '%-28s %10s %10s %10s %8s\n' "retention off" "$a50" "$a99" "$amax" "$an"
printf '%-28s %10s %10s %10s %8s\n' "retention on (batch $BATCH)" "$b50" "$b99" "$bmax" "$bn"
echo "retention removed $removed of $before old rows in the ${SECONDS_EACH}s phase: $rate rows/s"
