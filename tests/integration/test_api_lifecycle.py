"""profile-api as a process: configuration errors (exit 2), SIGTERM drain (readiness 503, then
exit 0 after in-flight work), client disconnects during a query, and a PostgreSQL restart
(503s at most, then recovery without restarting the API). Fresh process per test."""
import os
import signal
import subprocess
import threading
import time

import psycopg2
import pytest
import requests

from api_helpers import api_env, new_user, start_api
from support import REPO, bin_path, database_url, free_port, psql


def run_api_expect_exit(stack, **extra):
    env = dict(os.environ)
    for k, v in api_env(stack, free_port(), **extra).items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = str(v)
    return subprocess.run([bin_path("profile-api")], env=env, capture_output=True, text=True,
                          timeout=20)


def test_config_errors_exit_2(stack):
    r = run_api_expect_exit(stack, JWT_ISSUER=None, PG_POOL_MAX="lots")
    assert r.returncode == 2, r.stderr
    assert "JWT_ISSUER" in r.stderr and "PG_POOL_MAX" in r.stderr
    r = run_api_expect_exit(stack, JWT_HS256_SECRET="short")
    assert r.returncode == 2, r.stderr
    assert "short" not in r.stderr.replace("too short", "")  # the secret is never echoed
    r = run_api_expect_exit(stack, JWT_PUBLIC_KEY_FILE="/nonexistent.pem")
    assert r.returncode == 2, r.stderr


def test_sigterm_drains_then_exits_0(stack):
    a = start_api(stack, SHUTDOWN_DRAIN_SECONDS=2)
    u = new_user()
    s = requests.Session()
    assert s.get(a.url("/health/ready")).status_code == 200
    a.proc.proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    r = s.get(a.url("/health/ready"))
    assert r.status_code == 503
    assert r.headers["Content-Type"].startswith("application/problem+json")
    assert requests.get(a.url("/health/live")).status_code == 200
    # still serving real requests while draining
    r = a.put(f"/profiles/{u}", u, {"displayName": "during drain"})
    assert r.status_code == 201
    rc = a.proc.proc.wait(timeout=20)
    assert rc == 0, a.proc.output()
    with pytest.raises(requests.ConnectionError):
        requests.get(a.url("/health/live"), timeout=2)
    assert '"stopped"' in a.proc.output() or "stopped" in a.proc.output()


def test_sigterm_finishes_in_flight_request(stack):
    """A write blocked in PostgreSQL when SIGTERM arrives still completes and is answered."""
    a = start_api(stack, SHUTDOWN_DRAIN_SECONDS=0)
    u = new_user()
    conn = psycopg2.connect(database_url(stack))
    conn.autocommit = True
    result = {}
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(7301, hashtext(%s))", (u,))

        def writer():
            result["r"] = a.post(f"/profiles/{u}/watchlist", u, {"videoId": "v1"}, timeout=30)

        t = threading.Thread(target=writer)
        t.start()
        time.sleep(0.5)
        a.proc.proc.send_signal(signal.SIGTERM)
        time.sleep(1.0)
        assert a.proc.proc.poll() is None  # waiting for the in-flight request
        with conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_unlock(7301, hashtext(%s))", (u,))
        t.join(timeout=20)
    finally:
        conn.close()
    assert result["r"].status_code == 201
    assert a.proc.proc.wait(timeout=20) == 0
    assert psql(stack, "SELECT count(*) FROM outbox WHERE user_id = %s", params=(u,)) == [(1,)]


def test_client_disconnect_during_query(stack):
    """Clients that give up while their statement runs leave the server healthy; the writes
    they sent still commit exactly once."""
    a = start_api(stack)
    u = new_user()
    conn = psycopg2.connect(database_url(stack))
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(7301, hashtext(%s))", (u,))
        for i in range(8):
            with pytest.raises(requests.exceptions.Timeout):
                a.post(f"/profiles/{u}/watchlist", u, {"videoId": f"v{i}"}, timeout=0.3)
        with conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_unlock(7301, hashtext(%s))", (u,))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            n = psql(stack, "SELECT count(*) FROM watchlist_items WHERE user_id = %s",
                     params=(u,))[0][0]
            if n == 8:
                break
            time.sleep(0.1)
        assert n == 8
        assert len(a.get(f"/profiles/{u}/watchlist", u).json()["items"]) == 8
        assert requests.get(a.url("/health/ready")).status_code == 200
    finally:
        conn.close()
        assert a.stop() == 0


def test_postgres_restart_recovers(stack):
    if "STACK_DIR" not in stack:
        pytest.skip("needs a tools/stack.sh stack")
    a = start_api(stack)
    u = new_user()
    assert a.put(f"/profiles/{u}", u, {"displayName": "before"}).status_code == 201
    statuses = []
    stop = threading.Event()

    def load():
        s = requests.Session()
        while not stop.is_set():
            try:
                r = a.get(f"/profiles/{u}", u, session=s, timeout=5)
                statuses.append(r.status_code)
            except requests.RequestException as e:
                statuses.append(repr(e))
            time.sleep(0.02)

    t = threading.Thread(target=load)
    t.start()
    try:
        time.sleep(0.3)
        env = dict(os.environ, PROFILE_BIN_DIR=os.path.dirname(bin_path("profile-api")))
        r = subprocess.run([str(REPO / "tools" / "stack.sh"), "pg-restart", stack["STACK_DIR"],
                            "fast"], env=env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if requests.get(a.url("/health/ready"), timeout=2).status_code == 200:
                break
            time.sleep(0.1)
        time.sleep(0.5)
    finally:
        stop.set()
        t.join()
    assert set(statuses) <= {200, 503}, [s for s in statuses if s not in (200, 503)]
    assert statuses[-1] == 200
    assert a.proc.proc.poll() is None  # same process
    r = a.put(f"/profiles/{u}", u, {"displayName": "after"})
    assert r.status_code == 200, r.text
    print(f"during restart: {statuses.count(200)} x 200, {statuses.count(503)} x 503")
    assert a.stop() == 0


def test_pool_queue_full_503(stack):
    """One connection, its pipeline blocked in PostgreSQL: the bounded wait queue fills and the
    overflow gets 503 with Retry-After at once; the rest complete once PostgreSQL moves on."""
    a = start_api(stack, HTTP_THREADS=1, PG_POOL_MAX=1)
    u = new_user()
    conn = psycopg2.connect(database_url(stack))
    conn.autocommit = True
    results = []
    lock = threading.Lock()
    n = 300

    def worker(i):
        try:
            r = a.post(f"/profiles/{u}/history", u, {"videoId": f"v{i}", "positionSeconds": 1},
                       session=requests.Session(), timeout=30)
            with lock:
                results.append((r.status_code, r.headers.get("Retry-After"),
                                r.headers.get("Content-Type", "")))
        except requests.RequestException as e:
            with lock:
                results.append((repr(e), None, ""))

    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(7301, hashtext(%s))", (u,))
        threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            with lock:
                if sum(1 for r in results if r[0] == 503) >= n - 8 - 256:
                    break
            time.sleep(0.05)
        with conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_unlock(7301, hashtext(%s))", (u,))
        for t in threads:
            t.join(timeout=40)
    finally:
        conn.close()
    statuses = [r[0] for r in results]
    busy = [r for r in results if r[0] == 503]
    assert len(results) == n
    assert set(statuses) <= {201, 503}, set(statuses)
    assert len(busy) >= n - 8 - 256
    assert all(r[1] is not None and r[2].startswith("application/problem+json") for r in busy)
    created = psql(stack, "SELECT count(*) FROM history_entries WHERE user_id = %s",
                   params=(u,))[0][0]
    assert created == statuses.count(201)
    print(f"queue full: {statuses.count(201)} x 201, {len(busy)} x 503")
    assert requests.get(a.url("/health/ready")).status_code == 200
    assert a.stop() == 0
