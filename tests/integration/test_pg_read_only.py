"""A server that turns read-only under the services (a primary fenced or demoted during a
failover, docs/operations.md "High availability"): profile-api and profile-relay, given
target_session_attrs=read-write, must drop every pooled connection to it (no 500 for a
"cannot execute ... in a read-only transaction"), keep running, and carry on by themselves once
a writable server is back. The kill -9 failover to a synchronous standby is the pg-failover kind
of `make test-faults` (tests/faults/failover.py).

The read-only switch is server-wide (ALTER SYSTEM + reload), so it is undone in a finally."""
import contextlib
import time
import uuid

import psycopg2
import pytest
import requests

import support
from api_helpers import new_user, start_api
from test_relay_e2e import (Collector, Relay, check_order, cleanup, emit_many, fresh_db,  # noqa: F401
                            topic, uid, wait_for)

READ_WRITE = "target_session_attrs=read-write"


def with_attrs(url):
    return url + ("&" if "?" in url else "?") + READ_WRITE


def admin_sql(stack, sql):
    """Runs sql on the stack's server in a session that is never read-only."""
    conn = psycopg2.connect(support.database_url(stack, role="admin"),
                            options="-c default_transaction_read_only=off")
    try:
        conn.set_session(autocommit=True)
        with conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetchall() if cur.description is not None else []
    finally:
        conn.close()


@contextlib.contextmanager
def read_only_server(stack):
    admin_sql(stack, "ALTER SYSTEM SET default_transaction_read_only = on")
    admin_sql(stack, "SELECT pg_reload_conf()")
    try:
        yield
    finally:
        admin_sql(stack, "ALTER SYSTEM RESET default_transaction_read_only")
        admin_sql(stack, "SELECT pg_reload_conf()")


def sessions_on(stack, db):
    return admin_sql(stack, "SELECT count(*) FROM pg_stat_activity WHERE datname = '%s'"
                     " AND pid <> pg_backend_pid()" % db)[0][0]


def test_api_drops_connections_to_a_read_only_server(stack):
    if "STACK_DIR" not in stack:
        pytest.skip("needs a tools/stack.sh stack (the test changes server settings)")
    db = "ro_api_%s" % uuid.uuid4().hex[:8]
    url = support.new_database(stack, db)
    # One event loop, so one pool: sequential writes go through all its connections.
    # the pool's connections only: the outbox hint's idle connection (OUTBOX_HINT) learns of a
    # read-only server when its next NOTIFY fails, which no write reaches while fenced
    a = start_api(stack, DATABASE_URL=support.role_url(with_attrs(url), "api"), PG_POOL_MAX=4,
                  HTTP_THREADS=1, OUTBOX_HINT=0)
    u = new_user()
    assert a.put(f"/profiles/{u}", u, {"displayName": "before"}).status_code == 201
    statuses = []
    with read_only_server(stack):
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            r = a.put(f"/profiles/{u}", u, {"displayName": "during"})
            statuses.append(r.status_code)
            if r.status_code == 503 and sessions_on(stack, db) == 0:
                break
            time.sleep(0.1)
        # Not one pooled connection stays on the read-only server, and nothing got a 500. A
        # backend takes the reload when it reads its next statement, so a first write may still
        # pass; from the first 503 on, every write gets 503.
        assert sessions_on(stack, db) == 0
        first = statuses.index(503)
        assert set(statuses[:first]) <= {200} and set(statuses[first:]) == {503}, statuses
        assert a.get(f"/profiles/{u}", u).status_code == 503
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        r = a.put(f"/profiles/{u}", u, {"displayName": "after"})
        if r.status_code == 200:
            break
        assert r.status_code == 503, r.text
        time.sleep(0.2)
    assert r.status_code == 200, r.text
    assert a.get(f"/profiles/{u}", u).json()["displayName"] == "after"
    assert a.proc.proc.poll() is None  # the same process throughout
    assert "not a writable primary" in a.proc.output()
    print(f"read-only server: writes answered {statuses}")
    assert a.stop() == 0


def test_relay_drops_connections_to_a_read_only_server(stack, topic, cleanup):  # noqa: F811
    if "STACK_DIR" not in stack:
        pytest.skip("needs a tools/stack.sh stack (the test changes server settings)")
    url = fresh_db(stack, "ro")
    db = url.rsplit("/", 1)[1]
    col = Collector(stack, topic)
    cleanup.append(col)
    relay = Relay(stack, with_attrs(url), topic)
    cleanup.append(relay)
    users = [uid() for _ in range(10)]
    emit_many(url, users, 3)
    col.wait_users({u: 3 for u in users}, timeout=20)
    with read_only_server(stack):
        wait_for(lambda: relay.metric("profile_relay_pg_up") == 0 and
                 relay.metric("profile_relay_partitions_held") == 0 and sessions_on(stack, db) == 0,
                 20, "the relay dropped its connections to the read-only server")
        assert relay.proc.proc.poll() is None
        assert requests.get(f"http://127.0.0.1:{relay.port}/health/live", timeout=2).ok
    wait_for(lambda: relay.metric("profile_relay_pg_up") == 1, 20, "relay reconnected")
    emit_many(url, users, 3)
    col.wait_users({u: 6 for u in users}, timeout=20)
    check_order(col.snapshot(), {u: 6 for u in users})
    wait_for(lambda: relay.metric("profile_relay_partitions_held") == 64, 15, "leases re-taken")
    assert relay.proc.proc.poll() is None
    assert relay.stop() == 0
