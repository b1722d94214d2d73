#!/usr/bin/env bash
# The cost of a write in PostgreSQL (issue 15): pgbench runs of the API's write call
# (bench/pgbench_watchlist.sql), the minimal transactional outbox and the same with a NOTIFY,
# alternating, ROUNDS times each, against the database of a running stack.
#   bench/write_cost.sh STACK_DIR [SECONDS] [ROUNDS] [CLIENTS]
# STACK_DIR: a tools/stack.sh directory (its stack.env), migrated. Prints one tps per run.
set -euo pipefail
cd "$(dirname "$0")/.."
stack=${1:?usage: bench/write_cost.sh STACK_DIR [SECONDS] [ROUNDS] [CLIENTS]}
seconds=${2:-8}
rounds=${3:-2}
clients=${4:-30}
set -a
# shellcheck disable=SC1091
. "$stack/stack.env"
set +a
run() {
    pgbench -n -M prepared -c "$clients" -j 2 -T "$seconds" -f "bench/$1.sql" \
        -h "$PGHOST" -p "$PGPORT" -U "$PGUSER" "$PGDATABASE" 2>&1 |
        sed -n 's/^tps = \([0-9.]*\).*/\1/p'
}
for ((i = 1; i <= rounds; i++)); do
    for script in pgbench_watchlist pgbench_minimal_outbox pgbench_minimal_outbox_notify; do
        printf '%s round %d: %s tps\n' "$script" "$i" "$(run "$script")"
    done
done
