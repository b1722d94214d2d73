"""PgBouncer 1.18 in transaction mode in front of the API (tools/stack.sh start DIR --pgbouncer).

- PG_PREPARED_STATEMENTS=off: requests pass through the pooler, across the admin console's
  RECONNECT and a PostgreSQL restart (no 5xx around RECONNECT, no 500 once ready again).
- PG_PREPARED_STATEMENTS=on behind it: statements go missing; whenever a request fails so,
  /health/ready says 503.
- profile-migrate and profile-relay refuse the transaction-mode pooler with one line, and start
  direct and through the session-mode alias (database profile_session).

The API suites themselves run through the pooler in a second pass of tools/run-tests.sh
(PROFILE_TEST_VIA_PGBOUNCER=1, see api_helpers.py).
"""
import subprocess
import threading
import time
import uuid

import psycopg2
import pytest
import requests

import support
from api_helpers import new_user, start_api, token
from support import bin_path, free_port, run_sql, spawn, wait_http  # noqa: F401

SESSION_DB = "profile_session"  # the stack's session-mode alias points at this database


@pytest.fixture(scope="module")
def bouncer(stack):
    if "PGBOUNCER_URL" not in stack:
        pytest.skip("the stack runs without PgBouncer (tools/stack.sh start DIR --pgbouncer)")
    return stack


def admin(stack, command):
    """Runs a command on PgBouncer's admin console."""
    conn = psycopg2.connect(stack["PGBOUNCER_ADMIN_URL"])
    try:
        conn.set_session(autocommit=True)
        with conn.cursor() as cur:
            cur.execute(command)
    finally:
        conn.close()


def ready_status(api):
    try:
        return requests.get(api.url("/health/ready"), timeout=2).status_code
    except requests.RequestException:
        return None


class Load:
    """Writes (POST watchlist) and reads (GET watchlist) in a thread; records (phase, status)."""

    def __init__(self, api):
        self.api = api
        self.phase = "before"
        self.results = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        s = requests.Session()
        user = new_user("pgb")
        auth = {"Authorization": "Bearer " + token(user)}
        i = 0
        while not self._stop.is_set():
            i += 1
            phase = self.phase
            try:
                r = s.post(self.api.url(f"/profiles/{user}/watchlist"),
                           json={"videoId": f"v{i % 50}"}, headers=auth, timeout=15)
                self.results.append((phase, "write", r.status_code, r.text[:200]))
                r = s.get(self.api.url(f"/profiles/{user}/watchlist"), headers=auth, timeout=15)
                self.results.append((phase, "read", r.status_code, r.text[:200]))
            except requests.RequestException as e:
                self.results.append((phase, "error", 0, repr(e)))
            time.sleep(0.01)

    def statuses(self, phase):
        return [st for ph, _, st, _ in self.results if ph == phase]

    def failures(self, phase, codes):
        return [(kind, st, text) for ph, kind, st, text in self.results
                if ph == phase and st in codes]

    def stop(self):
        self._stop.set()
        self._thread.join(20)


def test_unnamed_statements_survive_reconnect_and_postgres_restart(bouncer):
    stack = bouncer
    api = start_api(stack, DATABASE_URL=support.role_url(stack["PGBOUNCER_URL"], "api"),
                    PG_PREPARED_STATEMENTS="off",
                    HTTP_THREADS=2, PG_POOL_MAX=6, CACHE_LOCAL_MB=0)
    load = Load(api)
    try:
        time.sleep(1.5)
        load.phase = "reconnect"
        admin(stack, "RECONNECT")
        time.sleep(2.5)
        load.phase = "restart"
        r = subprocess.run([str(support.REPO / "tools" / "stack.sh"), "pg-restart",
                            stack["STACK_DIR"], "fast"], capture_output=True, text=True,
                           timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
        deadline = time.monotonic() + 30
        while ready_status(api) != 200:
            assert time.monotonic() < deadline, "API not ready again 30 s after the restart"
            time.sleep(0.2)
        time.sleep(1)  # let connections broken by the restart surface and be replaced
        load.phase = "after"
        time.sleep(3)
    finally:
        load.stop()
        out = api.proc.output()
        assert api.stop() == 0, out[-3000:]

    for phase in ("before", "reconnect", "after"):
        assert len(load.statuses(phase)) >= 4, (phase, load.results[-5:])
    # RECONNECT closes server connections once their transaction ends: invisible to clients
    assert not load.failures("before", range(500, 600))
    assert not load.failures("reconnect", range(500, 600)), load.failures("reconnect",
                                                                           range(500, 600))
    # after the restart, once ready: every request succeeds
    assert not load.failures("after", range(500, 600)), load.failures("after", range(500, 600))
    assert set(load.statuses("after")) <= {200, 201}, set(load.statuses("after"))
    # during the restart itself, failures are 503 (unavailable), never 500
    assert not load.failures("restart", [500]), load.failures("restart", [500])
    assert "prepared statement" not in out


def test_named_statements_behind_transaction_pooler_turn_readiness_off(bouncer):
    """The issue's failure: named statements prepared on one server connection, then RECONNECT
    gives the pooler fresh server connections that never saw them. Every request is a 500 and
    readiness must say so (it said 200 before)."""
    stack = bouncer
    admin(stack, "RECONNECT")  # no server connection left from earlier tests' statements
    # one pool with one connection: the outbox hint's own connection (OUTBOX_HINT) would
    # prepare the same names on PgBouncer's server connections before the pool is ready
    api = start_api(stack, DATABASE_URL=support.role_url(stack["PGBOUNCER_URL"], "api"),
                    PG_PREPARED_STATEMENTS="on", OUTBOX_HINT=0,
                    HTTP_THREADS=1, PG_POOL_MAX=1, CACHE_LOCAL_MB=0,
                    REDIS_URL="redis://127.0.0.1:1/0")  # every read goes to PostgreSQL
    s = requests.Session()
    failed = unready_after_failure = 0
    missed = []
    codes = {}
    try:
        user = new_user("pgbn")
        auth = {"Authorization": "Bearer " + token(user)}
        r = s.get(api.url(f"/profiles/{user}/watchlist"), headers=auth, timeout=10)
        assert r.status_code == 200, r.text
        assert ready_status(api) == 200
        admin(stack, "RECONNECT")
        for _ in range(20):
            r = s.get(api.url(f"/profiles/{user}/watchlist"), headers=auth, timeout=10)
            codes[r.status_code] = codes.get(r.status_code, 0) + 1
            if r.status_code == 500:
                failed += 1
                # the very next readiness check must see it
                ready = s.get(api.url("/health/ready"), timeout=5)
                if ready.status_code == 503:
                    unready_after_failure += 1
                else:
                    missed.append((r.text[:300], ready.text[:300]))
    finally:
        out = api.proc.output()
        api.stop()
    assert failed > 0, f"no statement failed: the scenario did not happen {codes}\n{out[-2000:]}"
    assert unready_after_failure == failed, (failed, missed, out[-3000:])
    assert "set PG_PREPARED_STATEMENTS=off" in out


def test_migrate_refuses_transaction_pooler_and_runs_direct_and_in_session_mode(bouncer):
    stack = bouncer
    support.new_database(stack, SESSION_DB, migrate=False)
    env = {"MIGRATIONS_DIR": str(support.MIGRATIONS_DIR)}
    r = spawn([bin_path("profile-migrate")], dict(env, DATABASE_URL=stack["PGBOUNCER_URL"]))
    try:
        assert r.proc.wait(30) == 2, r.output()
    finally:
        r.stop(timeout=10)
    lines = [ln for ln in r.output().splitlines() if "transaction mode" in ln]
    assert len(lines) == 1, r.output()
    # profile-migrate runs as the schema owner (V004 refuses anyone else)
    r = spawn([bin_path("profile-migrate")],
              dict(env, DATABASE_URL=support.role_url(stack["PGBOUNCER_SESSION_URL"], "owner")))
    assert r.proc.wait(60) == 0, r.output()
    assert "transaction mode" not in r.output()
    assert run_sql(support.database_url(stack, SESSION_DB),
                   "SELECT count(*) > 0 FROM schema_migrations")[0][0]
    r = spawn([bin_path("profile-migrate")], dict(env, DATABASE_URL=stack["DATABASE_URL"]))
    assert r.proc.wait(60) == 0, r.output()


def test_relay_refuses_transaction_pooler_and_runs_in_session_mode(bouncer):
    stack = bouncer
    support.new_database(stack, SESSION_DB)
    base_env = {"KAFKA_BOOTSTRAP_SERVERS": stack["KAFKA_BOOTSTRAP_SERVERS"],
                "KAFKA_TOPIC": f"pgb-{uuid.uuid4().hex[:8]}", "REDIS_URL": stack["REDIS_URL"],
                "LOG_LEVEL": "info"}
    port = free_port()
    p = spawn([bin_path("profile-relay")], dict(base_env, RELAY_METRICS_PORT=port,
              DATABASE_URL=stack["PGBOUNCER_URL"]))  # refused before it touches anything
    try:
        assert p.proc.wait(30) == 2, p.output()
    finally:
        p.stop(timeout=10)  # never left running when the check failed
    lines = [ln for ln in p.output().splitlines() if "transaction mode" in ln]
    assert len(lines) == 1, p.output()

    port = free_port()
    p = spawn([bin_path("profile-relay")], dict(base_env, RELAY_METRICS_PORT=port,
              DATABASE_URL=stack["PGBOUNCER_SESSION_URL"]),
              ready_url=f"http://127.0.0.1:{port}/health/live")
    try:
        wait_http(f"http://127.0.0.1:{port}/health/ready", timeout=30, proc=p.proc)
        held = 0
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and held < 64:
            held = run_sql(support.database_url(stack, SESSION_DB),
                           "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = "
                           "l.database WHERE l.locktype = 'advisory' AND l.objsubid = 2 AND "
                           "l.granted AND d.datname = current_database()")[0][0]
            time.sleep(0.2)
        assert held == 64, p.output()[-2000:]
    finally:
        assert p.stop(timeout=20) == 0, p.output()[-2000:]
    assert "transaction mode" not in p.output()
