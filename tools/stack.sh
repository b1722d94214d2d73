#!/usr/bin/env bash
# Local stack for development and tests (docs/operations.md): PostgreSQL 15, redis-server and
# build/bin/kafka-mock on 127.0.0.1, free ports, all state under one directory.
#
#   tools/stack.sh start DIR [--pgbouncer]         start everything, write DIR/stack.env
#   tools/stack.sh stop DIR                        stop exactly what start started (idempotent)
#   tools/stack.sh status DIR                      exit 0 when every component runs
#   tools/stack.sh pg-restart DIR [fast|immediate] restart PostgreSQL on the same port
#   tools/stack.sh redis-stop DIR | redis-start DIR
#   tools/stack.sh redis-cluster-node-start DIR PORT   start a cluster node again (it rejoins)
#   tools/stack.sh standby-start DIR               add a synchronous streaming standby
#   tools/stack.sh standby-promote DIR             promote it (after the primary is gone)
#   tools/stack.sh standby-stop DIR                stop and remove it (stop does it too)
#   tools/stack.sh pg-kill DIR                     kill -9 the primary's postmaster
#
# STACK_REDIS_CLUSTER=1 also starts a Redis Cluster of six redis-server nodes (3 masters and 3
# replicas, cluster-node-timeout 2000 ms) and writes REDIS_CLUSTER_URL (a comma list of the
# nodes, for REDIS_MODE=cluster) and REDIS_CLUSTER_PORTS into stack.env; each node's pid is in
# DIR/redis-cluster/PORT.pid. stop stops all six.
#
# Environment: PG_BIN (default /usr/lib/postgresql/15/bin), KAFKA_MOCK_BIN (default
# $PROFILE_BIN_DIR/kafka-mock, PROFILE_BIN_DIR defaulting to <repo>/build/bin), PGBOUNCER_BIN
# (default /usr/sbin/pgbouncer). STACK_PG_SETTINGS: extra postgresql.conf lines
# (";"-separated, e.g. "shared_buffers = 4GB; max_wal_size = 4GB"), appended after the stack's
# own small defaults (benchmarks size the server for the machine with it).
#
# --pgbouncer (or STACK_PGBOUNCER=1) also starts PgBouncer in transaction mode in front of the
# PostgreSQL (as the postgres user when we are root: pgbouncer refuses root) and adds to
# stack.env PGBOUNCER_URL (transaction mode, any database), PGBOUNCER_SESSION_URL (session mode,
# to a database profile_session that start creates empty) and PGBOUNCER_ADMIN_URL (the admin console: RECONNECT, SHOW POOLS).
# Authentication is trust; any PostgreSQL role can log in through it (auth_query).
#
# stack.env holds DATABASE_URL (profile_owner: migrations), API_DATABASE_URL (profile_app),
# RELAY_DATABASE_URL (profile_relay) and ADMIN_DATABASE_URL (the local superuser `profile`).
#
# Files in DIR: stack.env, pg.tmpdir (the mktemp dir holding the PG data dir and socket dir; the
# postgres user must own it, so it lives under /tmp), postgres.log, redis.port, redis.pid,
# redis.log, kafka-mock.pid, kafka-mock.out (first line = bootstrap), kafka-mock.log, kafka.ctl;
# with PgBouncer: pgbouncer.log (its ini, auth file and pid file sit in the pg.tmpdir folder).
# With a standby: standby.tmpdir (its mktemp dir) and standby.log; stack.env then also holds
# PG_STANDBY_PORT, PG_STANDBY_DATA_DIR and DATABASE_URL_HA (both hosts, target_session_attrs=
# read-write: the URL of a client that follows a failover).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
KAFKA_MOCK_BIN=${KAFKA_MOCK_BIN:-${PROFILE_BIN_DIR:-$REPO/build/bin}/kafka-mock}
KAFKA_TOPIC_DEFAULT=profile.events
PGBOUNCER_BIN=${PGBOUNCER_BIN:-/usr/sbin/pgbouncer}
WITH_PGBOUNCER=0

die() {
    echo "stack: $*" >&2
    exit 1
}

usage() {
    echo "usage: $0 start DIR [--pgbouncer]" >&2
    echo "       $0 stop|status|redis-stop|redis-start DIR" >&2
    echo "       $0 pg-restart DIR [fast|immediate]" >&2
    echo "       $0 standby-start|standby-promote|standby-stop|pg-kill DIR" >&2
    exit 2
}

# Runs a PostgreSQL command as the postgres user when we are root (initdb/postgres refuse root).
as_pg() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

# Prints a port below 32768 (outside the ephemeral range) that is free on 127.0.0.1 right now.
free_port() {
    /usr/bin/python3 - <<'EOF'
import random, socket
for _ in range(500):
    port = random.randint(20000, 32767)
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        continue
    finally:
        s.close()
    print(port)
    break
else:
    raise SystemExit("stack: no free port found")
EOF
}

# Shows the end of a log after a failure.
show_log() {
    local f=$1
    if [ -f "$f" ]; then
        echo "---- last lines of $f ----" >&2
        tail -n 25 "$f" >&2 || true
        echo "----" >&2
    else
        echo "(no log at $f)" >&2
    fi
}

# True when pid is alive (not a zombie) and its command name is $2 (guards against a recycled
# pid). Our daemons are reparented to init, which may reap them late: a zombie counts as gone.
pid_is() {
    local pid=$1 name=$2 comm stat
    [ -n "$pid" ] && [ -r "/proc/$pid/comm" ] || return 1
    comm=$(cat "/proc/$pid/comm" 2>/dev/null) || return 1
    [ "$comm" = "$name" ] || return 1
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [ "${stat%% *}" != Z ]
}

# Sends SIGTERM, waits up to $3 seconds, then SIGKILL.
stop_pid() {
    local pid=$1 name=$2 wait_s=${3:-10} i
    pid_is "$pid" "$name" || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    for ((i = 0; i < wait_s * 10; i++)); do
        pid_is "$pid" "$name" || return 0
        sleep 0.1
    done
    echo "stack: $name (pid $pid) did not stop in ${wait_s}s, sending SIGKILL" >&2
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        pid_is "$pid" "$name" || return 0
        sleep 0.1
    done
}

# The value of KEY in DIR/stack.env, or empty.
env_get() {
    local key=$1
    [ -f "$DIR/stack.env" ] || return 0
    sed -n "s/^$key=//p" "$DIR/stack.env" | tail -n 1
}

pg_tmpdir() {
    [ -f "$DIR/pg.tmpdir" ] && cat "$DIR/pg.tmpdir"
    return 0
}

pg_log() {
    local log
    log=$(env_get PG_LOG)
    if [ -z "$log" ]; then
        log=$DIR/postgres.log
        [ -f "$log" ] || log=$(pg_tmpdir)/postgres.log
    fi
    echo "$log"
}

# ---------------------------------------------------------------------------- PostgreSQL

pg_start_cluster() {
    local tmp=$1 log=$2
    if ! as_pg "$PG_BIN/pg_ctl" -D "$tmp/data" -l "$log" -w -t 60 -s start >/dev/null; then
        return 1
    fi
}

pg_setup() {
    local tmp port sock log attempt
    [ -x "$PG_BIN/initdb" ] || die "PostgreSQL 15 not found in $PG_BIN (run tools/install-deps.sh)"
    tmp=$(mktemp -d /tmp/profile-pg.XXXXXX)
    echo "$tmp" >"$DIR/pg.tmpdir"
    mkdir -p "$tmp/data" "$tmp/sock"
    chmod 700 "$tmp" "$tmp/data"
    if [ "$(id -u)" -eq 0 ]; then
        chown -R postgres:postgres "$tmp"
    fi

    # The log lives in DIR when the postgres user can write there, otherwise beside the data
    # (copied into DIR by stop).
    log=$DIR/postgres.log
    : >"$log"
    if [ "$(id -u)" -eq 0 ]; then
        chown postgres "$log"
        if ! runuser -u postgres -- test -w "$log" 2>/dev/null; then
            rm -f "$log"
            log=$tmp/postgres.log
            : >"$log"
            chown postgres "$log"
        fi
    fi
    PG_LOG=$log

    if ! as_pg "$PG_BIN/initdb" -D "$tmp/data" -E UTF8 --locale=C.UTF-8 -U postgres \
        -A trust --no-sync >"$DIR/initdb.log" 2>&1; then
        show_log "$DIR/initdb.log"
        die "initdb failed"
    fi
    sock=$tmp/sock
    as_pg tee -a "$tmp/data/postgresql.conf" >/dev/null <<EOF

# --- profile local stack (tools/stack.sh) ---
listen_addresses = '127.0.0.1'
unix_socket_directories = '$sock'
synchronous_commit = on
max_connections = 300
shared_buffers = 64MB
log_timezone = 'UTC'
timezone = 'UTC'
include_if_exists = 'stack_port.conf'
EOF
    if [ -n "${STACK_PG_SETTINGS:-}" ]; then
        tr ';' '\n' <<<"$STACK_PG_SETTINGS" | sed 's/^ *//' |
            as_pg tee -a "$tmp/data/postgresql.conf" >/dev/null
    fi
    as_pg tee "$tmp/data/pg_hba.conf" >/dev/null <<'EOF'
# profile local stack: trust on the private socket and loopback only.
local   all all              trust
host    all all 127.0.0.1/32 trust
EOF

    # A free port can be taken between choosing and binding (another stack starting): retry.
    for attempt in 1 2 3; do
        port=$(free_port)
        echo "port = $port" | as_pg tee "$tmp/data/stack_port.conf" >/dev/null
        if pg_start_cluster "$tmp" "$log"; then
            PGPORT=$port
            break
        fi
        if [ "$attempt" -eq 3 ] || ! grep -q 'could not bind\|Address already in use' "$log"; then
            show_log "$log"
            die "PostgreSQL did not start"
        fi
        echo "stack: port $port was taken, retrying" >&2
    done

    if ! as_pg "$PG_BIN/psql" -X -q -h "$sock" -p "$PGPORT" -U postgres -d postgres \
        -v ON_ERROR_STOP=1 -c "CREATE ROLE profile SUPERUSER LOGIN" \
        -c "CREATE ROLE profile_owner LOGIN" -c "CREATE ROLE profile_app LOGIN" \
        -c "CREATE ROLE profile_relay LOGIN" \
        -c "CREATE DATABASE profile OWNER profile_owner" >/dev/null; then
        show_log "$log"
        die "could not create role/database profile"
    fi
    PG_DATA_DIR=$tmp/data
    # shellcheck disable=SC2034 # read indirectly by write_env
    PG_SOCKET_DIR=$sock
}

pg_stop() {
    local tmp mode=${1:-fast} pid
    tmp=$(pg_tmpdir)
    [ -n "$tmp" ] && [ -d "$tmp/data" ] || return 0
    [ -f "$tmp/data/postmaster.pid" ] || return 0
    if as_pg "$PG_BIN/pg_ctl" -D "$tmp/data" -m "$mode" -w -t 30 -s stop >/dev/null 2>&1; then
        return 0
    fi
    as_pg "$PG_BIN/pg_ctl" -D "$tmp/data" -m immediate -w -t 10 -s stop >/dev/null 2>&1 && return 0
    pid=$(head -n 1 "$tmp/data/postmaster.pid" 2>/dev/null || true)
    if pid_is "$pid" postgres; then
        echo "stack: PostgreSQL (pid $pid) did not stop, sending SIGKILL" >&2
        kill -KILL "$pid" 2>/dev/null || true
        sleep 0.5
    fi
}

# ---------------------------------------------------------------------------- Redis

redis_launch() {
    local port=$1 i
    rm -f "$DIR/redis.pid"
    if ! redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no \
        --daemonize yes --pidfile "$DIR/redis.pid" --logfile "$DIR/redis.log" \
        --dir "$DIR" --databases 16 >/dev/null 2>&1; then
        return 1
    fi
    for ((i = 0; i < 100; i++)); do
        if [ "$(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null)" = PONG ] &&
            [ -s "$DIR/redis.pid" ]; then
            return 0
        fi
        # Daemonized: once the pidfile is written, a dead pid means it failed.
        if [ -s "$DIR/redis.pid" ] && ! pid_is "$(cat "$DIR/redis.pid")" redis-server; then
            return 1
        fi
        sleep 0.1
    done
    return 1
}

redis_setup() {
    local attempt port
    command -v redis-server >/dev/null || die "redis-server not found (run tools/install-deps.sh)"
    for attempt in 1 2 3; do
        port=$(free_port)
        echo "$port" >"$DIR/redis.port"
        if redis_launch "$port"; then
            REDIS_PORT=$port
            return 0
        fi
        redis_stop_pid
        if [ "$attempt" -eq 3 ] || ! grep -q 'Address already in use' "$DIR/redis.log" 2>/dev/null; then
            show_log "$DIR/redis.log"
            die "redis-server did not start"
        fi
        echo "stack: port $port was taken, retrying" >&2
    done
}

redis_stop_pid() {
    local pid=""
    [ -f "$DIR/redis.pid" ] && pid=$(cat "$DIR/redis.pid")
    [ -n "$pid" ] && stop_pid "$pid" redis-server 10
    rm -f "$DIR/redis.pid"
}

# ---------------------------------------------------------------------------- Redis Cluster

CLUSTER_NODES=6

cluster_node_launch() {
    local port=$1 d=$DIR/redis-cluster i
    rm -f "$d/$port.pid"
    # cluster-require-full-coverage no: while a master's slots have no owner (a failover), the
    # other masters keep serving their own slots
    if ! redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no \
        --cluster-enabled yes --cluster-config-file "nodes-$port.conf" \
        --cluster-node-timeout 2000 --cluster-require-full-coverage no \
        --daemonize yes --pidfile "$d/$port.pid" --logfile "$d/$port.log" --dir "$d" \
        >/dev/null 2>&1; then
        return 1
    fi
    for ((i = 0; i < 100; i++)); do
        if [ "$(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null)" = PONG ] &&
            [ -s "$d/$port.pid" ]; then
            return 0
        fi
        if [ -s "$d/$port.pid" ] && ! pid_is "$(cat "$d/$port.pid")" redis-server; then
            return 1
        fi
        sleep 0.1
    done
    return 1
}

# True when every node says cluster_state:ok and sees 3 slot ranges.
cluster_ok() {
    local port
    for port in "$@"; do
        redis-cli -h 127.0.0.1 -p "$port" cluster info 2>/dev/null | grep -q '^cluster_state:ok' ||
            return 1
        [ "$(redis-cli -h 127.0.0.1 -p "$port" cluster slots 2>/dev/null | grep -c .)" -gt 0 ] ||
            return 1
    done
}

redis_cluster_setup() {
    local d=$DIR/redis-cluster ports=() port i addrs=()
    mkdir -p "$d"
    for ((i = 0; i < CLUSTER_NODES; i++)); do
        port=$(free_port)
        if ! cluster_node_launch "$port"; then
            port=$(free_port) # taken meanwhile: once more
            cluster_node_launch "$port" || {
                show_log "$d/$port.log"
                die "redis cluster node did not start"
            }
        fi
        ports+=("$port")
        addrs+=("127.0.0.1:$port")
    done
    echo "${ports[*]}" >"$d/ports"
    if ! redis-cli --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes \
        >"$d/create.log" 2>&1; then
        show_log "$d/create.log"
        die "redis-cli --cluster create failed"
    fi
    for ((i = 0; i < 300; i++)); do
        cluster_ok "${ports[@]}" && break
        sleep 0.1
    done
    cluster_ok "${ports[@]}" || die "redis cluster did not reach cluster_state:ok in 30s"
    REDIS_CLUSTER_PORTS=$(
        IFS=,
        echo "${ports[*]}"
    )
    REDIS_CLUSTER_URL=$(printf 'redis://127.0.0.1:%s,' "${ports[@]}")
    REDIS_CLUSTER_URL=${REDIS_CLUSTER_URL%,}
}

redis_cluster_stop() {
    local d=$DIR/redis-cluster f
    [ -d "$d" ] || return 0
    shopt -s nullglob
    for f in "$d"/*.pid; do
        stop_pid "$(cat "$f")" redis-server 10
        rm -f "$f"
    done
    shopt -u nullglob
}

# ---------------------------------------------------------------------------- kafka-mock

kafka_setup() {
    local pid i line=""
    : >"$DIR/kafka-mock.out"
    # setsid: a Ctrl-C in the caller's terminal must not kill the broker before the services
    # that use it have shut down; stop sends SIGTERM by the recorded pid.
    setsid "$KAFKA_MOCK_BIN" --brokers 3 --topic "$KAFKA_TOPIC_DEFAULT" --partitions 6 \
        --control "$DIR/kafka.ctl" </dev/null >"$DIR/kafka-mock.out" 2>"$DIR/kafka-mock.log" &
    pid=$!
    echo "$pid" >"$DIR/kafka-mock.pid"
    for ((i = 0; i < 150; i++)); do
        # A complete first line (the program writes it with its newline in one flush).
        if [ "$(wc -l <"$DIR/kafka-mock.out")" -ge 1 ]; then
            line=$(head -n 1 "$DIR/kafka-mock.out")
            break
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            show_log "$DIR/kafka-mock.log"
            die "kafka-mock exited during start-up"
        fi
        sleep 0.1
    done
    if ! [[ $line =~ ^[0-9.]+:[0-9]+(,[0-9.]+:[0-9]+)*$ ]]; then
        show_log "$DIR/kafka-mock.log"
        die "kafka-mock did not print a bootstrap address within 15s (got '$line')"
    fi
    pid_is "$pid" kafka-mock || die "pid $pid is not kafka-mock (setsid forked?)"
    KAFKA_BOOTSTRAP_SERVERS=$line
}

kafka_stop() {
    local pid=""
    [ -f "$DIR/kafka-mock.pid" ] && pid=$(cat "$DIR/kafka-mock.pid")
    [ -n "$pid" ] && stop_pid "$pid" kafka-mock 10
    rm -f "$DIR/kafka-mock.pid" "$DIR/kafka.ctl"
}

# ---------------------------------------------------------------------------- PgBouncer

pgbouncer_write_ini() {
    local dir=$1 port=$2
    cat >"$dir/pgbouncer.ini" <<EOF
; profile local stack (tools/stack.sh): PgBouncer in transaction mode, as in production
[databases]
profile_session = host=127.0.0.1 port=$PGPORT dbname=profile_session pool_mode=session
* = host=127.0.0.1 port=$PGPORT

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir =
auth_type = trust
auth_file = $dir/userlist.txt
auth_user = profile
auth_query = SELECT usename, passwd FROM pg_catalog.pg_shadow WHERE usename = \$1
pool_mode = transaction
admin_users = profile
max_client_conn = 1000
default_pool_size = 20
server_login_retry = 1
ignore_startup_parameters = extra_float_digits,options
logfile = $dir/pgbouncer.log
pidfile = $dir/pgbouncer.pid
EOF
}

pgbouncer_setup() {
    local tmp dir port attempt i pid
    [ -x "$PGBOUNCER_BIN" ] || die "pgbouncer not found at $PGBOUNCER_BIN (run tools/install-deps.sh)"
    tmp=$(pg_tmpdir)
    dir=$tmp/pgbouncer
    mkdir -p "$dir"
    # Only the role that runs auth_query is listed; every other role is looked up in pg_shadow
    # (so auth_user must be a superuser, as profile is in this stack).
    echo '"profile" ""' >"$dir/userlist.txt"
    for attempt in 1 2 3; do
        port=$(free_port)
        pgbouncer_write_ini "$dir" "$port"
        : >"$dir/pgbouncer.log"
        rm -f "$dir/pgbouncer.pid"
        if [ "$(id -u)" -eq 0 ]; then
            chown -R postgres:postgres "$dir"
        fi
        if as_pg "$PGBOUNCER_BIN" -d -q "$dir/pgbouncer.ini" >>"$DIR/pgbouncer.start.log" 2>&1; then
            for ((i = 0; i < 50; i++)); do
                pid=""
                [ -s "$dir/pgbouncer.pid" ] && pid=$(cat "$dir/pgbouncer.pid")
                if pid_is "$pid" pgbouncer &&
                    psql -X -q -t -A -d "postgresql://profile@127.0.0.1:$port/profile" \
                        -c 'SELECT 1' >/dev/null 2>&1; then
                    PGBOUNCER_PORT=$port
                    return 0
                fi
                sleep 0.1
            done
        fi
        pgbouncer_stop
        if [ "$attempt" -eq 3 ] || ! grep -q 'Address already in use' "$dir/pgbouncer.log"; then
            show_log "$dir/pgbouncer.log"
            die "pgbouncer did not start"
        fi
        echo "stack: port $port was taken, retrying" >&2
    done
}

pgbouncer_stop() {
    local tmp pid=""
    tmp=$(pg_tmpdir)
    [ -n "$tmp" ] && [ -d "$tmp/pgbouncer" ] || return 0
    [ -s "$tmp/pgbouncer/pgbouncer.pid" ] && pid=$(cat "$tmp/pgbouncer/pgbouncer.pid")
    [ -n "$pid" ] && stop_pid "$pid" pgbouncer 10
    rm -f "$tmp/pgbouncer/pgbouncer.pid"
    cp "$tmp/pgbouncer/pgbouncer.log" "$DIR/pgbouncer.log" 2>/dev/null || true
}

# ---------------------------------------------------------------------------- commands

write_env() {
    local f=$DIR/stack.env.tmp key val
    : >"$f"
    for key in STACK_DIR PGHOST PGPORT PGUSER PGDATABASE DATABASE_URL ADMIN_DATABASE_URL \
        API_DATABASE_URL RELAY_DATABASE_URL PG_DATA_DIR PG_LOG \
        PG_SOCKET_DIR REDIS_PORT REDIS_URL REDIS_CLUSTER_URL REDIS_CLUSTER_PORTS \
        KAFKA_BOOTSTRAP_SERVERS KAFKA_CONTROL KAFKA_TOPIC \
        PGBOUNCER_PORT PGBOUNCER_URL PGBOUNCER_SESSION_URL PGBOUNCER_ADMIN_URL; do
        val=${!key:-}
        if [ -z "$val" ] && [[ $key == PGBOUNCER_* ]]; then
            continue
        fi
        # Plain KEY=VALUE (no quoting) so that both `source` and naive parsers read it.
        [[ $val =~ ^[A-Za-z0-9_./:@,+=-]*$ ]] || die "unsafe characters in $key='$val'"
        echo "$key=$val" >>"$f"
    done
    mv "$f" "$DIR/stack.env"
}

cmd_start() {
    if [ -f "$DIR/stack.env" ] || [ -f "$DIR/pg.tmpdir" ] || [ -f "$DIR/kafka-mock.pid" ] ||
        [ -f "$DIR/redis.pid" ]; then
        die "$DIR already holds a stack (or a partial one): run '$0 stop $DIR' first"
    fi
    [ -x "$KAFKA_MOCK_BIN" ] ||
        die "kafka-mock not found at $KAFKA_MOCK_BIN: build it first (make build, or cmake --build build --target kafka-mock)"
    # Whatever fails below, undo what was started so far.
    trap 'echo "stack: start failed, stopping what was started" >&2; cmd_stop >/dev/null 2>&1 || true' EXIT
    pg_setup
    redis_setup
    # shellcheck disable=SC2034 # read indirectly by write_env
    REDIS_CLUSTER_URL="" REDIS_CLUSTER_PORTS=""
    if [ "${STACK_REDIS_CLUSTER:-0}" = 1 ]; then
        redis_cluster_setup
    fi
    kafka_setup
    if [ "$WITH_PGBOUNCER" = 1 ]; then
        as_pg "$PG_BIN/psql" -X -q -h "$PG_SOCKET_DIR" -p "$PGPORT" -U postgres -d postgres \
            -v ON_ERROR_STOP=1 -c "CREATE DATABASE profile_session OWNER profile" >/dev/null ||
            die "could not create database profile_session"
        pgbouncer_setup
        # shellcheck disable=SC2034 # these are read indirectly by write_env
        PGBOUNCER_URL=postgresql://profile@127.0.0.1:$PGBOUNCER_PORT/profile
        # shellcheck disable=SC2034
        PGBOUNCER_SESSION_URL=postgresql://profile@127.0.0.1:$PGBOUNCER_PORT/profile_session
        # shellcheck disable=SC2034
        PGBOUNCER_ADMIN_URL=postgresql://profile@127.0.0.1:$PGBOUNCER_PORT/pgbouncer
    fi
    # shellcheck disable=SC2034 # these are read indirectly by write_env
    STACK_DIR=$DIR PGHOST=127.0.0.1 PGUSER=profile PGDATABASE=profile
    # One role per program (migrations/V004__roles.sql): the owner migrates, the API and the
    # relay connect as their own roles, so a missing grant fails a test. `profile` is the local
    # superuser for administration (PGUSER: psql, pg_prove, CREATE DATABASE).
    DATABASE_URL=postgresql://profile_owner@127.0.0.1:$PGPORT/profile
    # shellcheck disable=SC2034 # read indirectly by write_env
    ADMIN_DATABASE_URL=postgresql://profile@127.0.0.1:$PGPORT/profile
    API_DATABASE_URL=postgresql://profile_app@127.0.0.1:$PGPORT/profile
    RELAY_DATABASE_URL=postgresql://profile_relay@127.0.0.1:$PGPORT/profile
    REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0
    KAFKA_CONTROL=$DIR/kafka.ctl
    KAFKA_TOPIC=$KAFKA_TOPIC_DEFAULT
    write_env
    trap - EXIT
    echo "stack: up in $DIR"
    echo "  postgres  $DATABASE_URL (owner; data $PG_DATA_DIR, log $PG_LOG)"
    echo "            api $API_DATABASE_URL, relay $RELAY_DATABASE_URL"
    echo "  redis     $REDIS_URL"
    [ -z "$REDIS_CLUSTER_URL" ] || echo "  cluster   $REDIS_CLUSTER_URL"
    echo "  kafka     $KAFKA_BOOTSTRAP_SERVERS (topic $KAFKA_TOPIC, control $KAFKA_CONTROL)"
    if [ "$WITH_PGBOUNCER" = 1 ]; then
        echo "  pgbouncer $PGBOUNCER_URL (transaction mode; session: $PGBOUNCER_SESSION_URL)"
    fi
    echo "  env       $DIR/stack.env"
}

cmd_stop() {
    local tmp
    kafka_stop
    redis_stop_pid
    pgbouncer_stop
    redis_cluster_stop
    pg_stop fast
    tmp=$(pg_tmpdir)
    if [ -n "$tmp" ] && [ -d "$tmp" ]; then
        case $tmp in
        /tmp/profile-pg.*)
            if [ -f "$tmp/postgres.log" ]; then
                cp "$tmp/postgres.log" "$DIR/postgres.log" 2>/dev/null || true
            fi
            rm -rf "$tmp"
            ;;
        *) echo "stack: not removing unexpected PG dir '$tmp'" >&2 ;;
        esac
    fi
    standby_stop
    rm -f "$DIR/pg.tmpdir" "$DIR/stack.env" "$DIR/redis.port"
    echo "stack: stopped $DIR"
}

cmd_status() {
    local ok=0 tmp pid port
    tmp=$(pg_tmpdir)
    if [ -n "$tmp" ] && [ -d "$tmp/data" ] &&
        as_pg "$PG_BIN/pg_ctl" -D "$tmp/data" status >/dev/null 2>&1; then
        echo "postgres: running (port $(env_get PGPORT), data $tmp/data)"
    else
        echo "postgres: stopped"
        ok=1
    fi
    pid=""
    [ -f "$DIR/redis.pid" ] && pid=$(cat "$DIR/redis.pid")
    port=""
    [ -f "$DIR/redis.port" ] && port=$(cat "$DIR/redis.port")
    if pid_is "$pid" redis-server; then
        echo "redis: running (pid $pid, port $port)"
    else
        echo "redis: stopped"
        ok=1
    fi
    pid=""
    [ -f "$DIR/kafka-mock.pid" ] && pid=$(cat "$DIR/kafka-mock.pid")
    if pid_is "$pid" kafka-mock; then
        echo "kafka-mock: running (pid $pid, $(env_get KAFKA_BOOTSTRAP_SERVERS))"
    else
        echo "kafka-mock: stopped"
        ok=1
    fi
    if [ -n "$(env_get PGBOUNCER_PORT)" ]; then
        pid=""
        [ -s "$tmp/pgbouncer/pgbouncer.pid" ] && pid=$(cat "$tmp/pgbouncer/pgbouncer.pid")
        if pid_is "$pid" pgbouncer; then
            echo "pgbouncer: running (pid $pid, port $(env_get PGBOUNCER_PORT))"
        else
            echo "pgbouncer: stopped"
            ok=1
        fi
    fi
    return $ok
}

cmd_pg_restart() {
    local mode=${1:-fast} tmp log
    case $mode in fast | immediate | smart) ;; *) usage ;; esac
    tmp=$(pg_tmpdir)
    if [ -z "$tmp" ] || [ ! -d "$tmp/data" ]; then
        die "no PostgreSQL in $DIR"
    fi
    log=$(pg_log)
    if [ -f "$tmp/data/postmaster.pid" ]; then
        as_pg "$PG_BIN/pg_ctl" -D "$tmp/data" -m "$mode" -w -t 60 -s stop >/dev/null ||
            die "PostgreSQL did not stop"
    fi
    if ! pg_start_cluster "$tmp" "$log"; then
        show_log "$log"
        die "PostgreSQL did not start again"
    fi
    echo "stack: PostgreSQL restarted ($mode) on port $(env_get PGPORT)"
}

cmd_redis_stop() {
    redis_stop_pid
    echo "stack: redis stopped"
}

cmd_redis_start() {
    local port
    [ -f "$DIR/redis.port" ] || die "no redis in $DIR (start the stack first)"
    port=$(cat "$DIR/redis.port")
    if [ -f "$DIR/redis.pid" ] && pid_is "$(cat "$DIR/redis.pid")" redis-server; then
        echo "stack: redis already running on port $port"
        return 0
    fi
    if ! redis_launch "$port"; then
        show_log "$DIR/redis.log"
        die "redis-server did not start again on port $port"
    fi
    echo "stack: redis started on port $port"
}

cmd_redis_cluster_node_start() {
    local port=$1
    [[ $port =~ ^[0-9]+$ ]] && [ -f "$DIR/redis-cluster/nodes-$port.conf" ] ||
        die "no cluster node on port $port in $DIR"
    if [ -f "$DIR/redis-cluster/$port.pid" ] &&
        pid_is "$(cat "$DIR/redis-cluster/$port.pid")" redis-server; then
        echo "stack: cluster node $port already running"
        return 0
    fi
    cluster_node_launch "$port" || {
        show_log "$DIR/redis-cluster/$port.log"
        die "cluster node $port did not start again"
    }
    echo "stack: cluster node $port started"
}

# ---------------------------------------------------------------------------- standby
# A streaming standby of the stack's primary (docs/operations.md, High availability): a
# pg_basebackup copy in its own mktemp dir, on its own port, named by application_name in the
# primary's synchronous_standby_names so that every commit waits for its WAL flush there.

STANDBY_NAME=profile_standby

standby_tmpdir() {
    [ -f "$DIR/standby.tmpdir" ] && cat "$DIR/standby.tmpdir"
    return 0
}

# Replaces (or adds) KEY=VALUE in DIR/stack.env; an empty value removes the key.
env_put() {
    local key=$1 val=$2 f=$DIR/stack.env.tmp
    [ -f "$DIR/stack.env" ] || die "no stack.env in $DIR"
    [[ $val =~ ^[A-Za-z0-9_./:@,+=?-]*$ ]] || die "unsafe characters in $key='$val'"
    grep -v "^$key=" "$DIR/stack.env" >"$f" || true
    [ -z "$val" ] || echo "$key=$val" >>"$f"
    mv "$f" "$DIR/stack.env"
}

# Runs one SQL statement as postgres on the primary's socket; prints the rows unaligned.
primary_sql() {
    as_pg "$PG_BIN/psql" -X -q -At -h "$(pg_tmpdir)/sock" -p "$(env_get PGPORT)" -U postgres \
        -d postgres -v ON_ERROR_STOP=1 -c "$1"
}

# Waits up to $2 tenths of a second for the standby's row in pg_stat_replication to show $1
# in column $3 (state or sync_state).
standby_wait() {
    local want=$1 tries=$2 col=$3 i got=""
    for ((i = 0; i < tries; i++)); do
        got=$(primary_sql "SELECT $col FROM pg_stat_replication
            WHERE application_name = '$STANDBY_NAME'" 2>/dev/null || true)
        [ "$got" = "$want" ] && return 0
        sleep 0.1
    done
    echo "stack: standby $col is '$got', not '$want'" >&2
    return 1
}

cmd_standby_start() {
    local ptmp stmp port pport log attempt
    ptmp=$(pg_tmpdir)
    { [ -n "$ptmp" ] && [ -d "$ptmp/data" ]; } || die "no PostgreSQL in $DIR (start the stack first)"
    [ -z "$(standby_tmpdir)" ] || die "$DIR already has a standby: run '$0 standby-stop $DIR' first"
    pport=$(env_get PGPORT)
    # Replication connections from loopback (the 'all' database entry does not cover them).
    if ! grep -q '^host *replication' "$ptmp/data/pg_hba.conf"; then
        echo "host    replication all 127.0.0.1/32 trust" |
            as_pg tee -a "$ptmp/data/pg_hba.conf" >/dev/null
        primary_sql "SELECT pg_reload_conf()" >/dev/null || die "primary reload failed"
    fi
    stmp=$(mktemp -d /tmp/profile-pg.XXXXXX)
    echo "$stmp" >"$DIR/standby.tmpdir"
    mkdir -p "$stmp/sock"
    chmod 700 "$stmp"
    if [ "$(id -u)" -eq 0 ]; then
        chown -R postgres:postgres "$stmp"
    fi
    log=$DIR/standby.log
    : >"$log"
    if [ "$(id -u)" -eq 0 ]; then
        chown postgres "$log"
        if ! runuser -u postgres -- test -w "$log" 2>/dev/null; then
            log=$stmp/standby.log
            : >"$log"
            chown postgres "$log"
        fi
    fi
    # Copied before synchronous_standby_names is set on the primary: a promoted standby must
    # not wait for a standby of its own.
    if ! as_pg "$PG_BIN/pg_basebackup" -h 127.0.0.1 -p "$pport" -U postgres -D "$stmp/data" \
        -R -X stream -c fast --no-sync >"$DIR/basebackup.log" 2>&1; then
        show_log "$DIR/basebackup.log"
        die "pg_basebackup failed"
    fi
    # After -R's own lines, so that these win (application_name names it in
    # synchronous_standby_names).
    as_pg tee -a "$stmp/data/postgresql.auto.conf" >/dev/null <<EOF
# --- standby of the profile local stack (tools/stack.sh standby-start) ---
primary_conninfo = 'host=127.0.0.1 port=$pport user=postgres application_name=$STANDBY_NAME'
unix_socket_directories = '$stmp/sock'
hot_standby = on
EOF
    for attempt in 1 2 3; do
        port=$(free_port)
        echo "port = $port" | as_pg tee "$stmp/data/stack_port.conf" >/dev/null
        if as_pg "$PG_BIN/pg_ctl" -D "$stmp/data" -l "$log" -w -t 60 -s start >/dev/null; then
            break
        fi
        if [ "$attempt" -eq 3 ] || ! grep -q 'could not bind\|Address already in use' "$log"; then
            show_log "$log"
            die "the standby did not start"
        fi
        echo "stack: port $port was taken, retrying" >&2
    done
    standby_wait streaming 300 state || { show_log "$log"; die "the standby is not streaming"; }
    primary_sql "ALTER SYSTEM SET synchronous_standby_names = '$STANDBY_NAME'" >/dev/null ||
        die "could not set synchronous_standby_names"
    primary_sql "ALTER SYSTEM SET synchronous_commit = on" >/dev/null ||
        die "could not set synchronous_commit"
    primary_sql "SELECT pg_reload_conf()" >/dev/null || die "primary reload failed"
    standby_wait sync 100 sync_state || die "the standby did not become synchronous"
    env_put PG_STANDBY_PORT "$port"
    env_put PG_STANDBY_DATA_DIR "$stmp/data"
    env_put DATABASE_URL_HA \
        "postgresql://profile@127.0.0.1:$pport,127.0.0.1:$port/profile?target_session_attrs=read-write"
    echo "stack: synchronous standby $STANDBY_NAME on port $port (data $stmp/data, log $log)"
    echo "  DATABASE_URL_HA=$(env_get DATABASE_URL_HA)"
}

cmd_standby_promote() {
    local stmp
    stmp=$(standby_tmpdir)
    { [ -n "$stmp" ] && [ -d "$stmp/data" ]; } || die "no standby in $DIR"
    as_pg "$PG_BIN/pg_ctl" -D "$stmp/data" -w -t 60 -s promote >/dev/null ||
        die "promotion failed"
    echo "stack: standby on port $(env_get PG_STANDBY_PORT) promoted"
}

# Stops and removes the standby (idempotent). A running primary loses its
# synchronous_standby_names with it: without a standby its commits would wait forever.
standby_stop() {
    local stmp pid
    stmp=$(standby_tmpdir)
    [ -n "$stmp" ] || return 0
    if [ -f "$stmp/data/postmaster.pid" ]; then
        as_pg "$PG_BIN/pg_ctl" -D "$stmp/data" -m fast -w -t 30 -s stop >/dev/null 2>&1 ||
            as_pg "$PG_BIN/pg_ctl" -D "$stmp/data" -m immediate -w -t 10 -s stop >/dev/null 2>&1 ||
            true
        pid=$(head -n 1 "$stmp/data/postmaster.pid" 2>/dev/null || true)
        if pid_is "$pid" postgres; then
            echo "stack: standby (pid $pid) did not stop, sending SIGKILL" >&2
            kill -KILL "$pid" 2>/dev/null || true
            sleep 0.5
        fi
    fi
    if [ -f "$DIR/stack.env" ] && primary_sql "SELECT 1" >/dev/null 2>&1; then
        primary_sql "ALTER SYSTEM RESET synchronous_standby_names" >/dev/null 2>&1 || true
        primary_sql "SELECT pg_reload_conf()" >/dev/null 2>&1 || true
    fi
    case $stmp in
    /tmp/profile-pg.*)
        if [ -f "$stmp/standby.log" ]; then
            cp "$stmp/standby.log" "$DIR/standby.log" 2>/dev/null || true
        fi
        rm -rf "$stmp"
        ;;
    *) echo "stack: not removing unexpected standby dir '$stmp'" >&2 ;;
    esac
    rm -f "$DIR/standby.tmpdir"
    if [ -f "$DIR/stack.env" ]; then
        env_put PG_STANDBY_PORT ""
        env_put PG_STANDBY_DATA_DIR ""
        env_put DATABASE_URL_HA ""
    fi
}

cmd_standby_stop() {
    standby_stop
    echo "stack: standby stopped"
}

# kill -9 of the primary's postmaster: the pid comes from its own postmaster.pid and must be a
# postgres process, so no other cluster on the machine is touched. Its backends notice the
# postmaster's death and exit by themselves.
cmd_pg_kill() {
    local tmp pid
    tmp=$(pg_tmpdir)
    { [ -n "$tmp" ] && [ -f "$tmp/data/postmaster.pid" ]; } || die "no running PostgreSQL in $DIR"
    pid=$(head -n 1 "$tmp/data/postmaster.pid")
    pid_is "$pid" postgres || die "pid '$pid' of $tmp/data/postmaster.pid is not a running postgres"
    kill -KILL "$pid"
    echo "stack: PostgreSQL postmaster (pid $pid) killed with SIGKILL"
}

[ $# -ge 2 ] || usage
CMD=$1
mkdir -p "$2"
DIR=$(cd "$2" && pwd)
shift 2

case $CMD in
start)
    WITH_PGBOUNCER=${STACK_PGBOUNCER:-0}
    if [ $# -eq 1 ] && [ "$1" = --pgbouncer ]; then
        WITH_PGBOUNCER=1
    elif [ $# -ne 0 ]; then
        usage
    fi
    cmd_start
    ;;
stop) [ $# -eq 0 ] || usage; cmd_stop ;;
status) [ $# -eq 0 ] || usage; cmd_status ;;
pg-restart) [ $# -le 1 ] || usage; cmd_pg_restart "${1:-fast}" ;;
redis-stop) [ $# -eq 0 ] || usage; cmd_redis_stop ;;
redis-start) [ $# -eq 0 ] || usage; cmd_redis_start ;;
redis-cluster-node-start) [ $# -eq 1 ] || usage; cmd_redis_cluster_node_start "$1" ;;
standby-start) [ $# -eq 0 ] || usage; cmd_standby_start ;;
standby-promote) [ $# -eq 0 ] || usage; cmd_standby_promote ;;
standby-stop) [ $# -eq 0 ] || usage; cmd_standby_stop ;;
pg-kill) [ $# -eq 0 ] || usage; cmd_pg_kill ;;
*) usage ;;
esac
