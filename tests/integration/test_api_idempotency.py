"""Idempotency-Key handling of profile-api (docs/api.md "Idempotency"): replays, 422 on another
request, 409 while the first is in flight (deterministic and under real concurrency), scope per
caller, expiry, what is and is not stored."""
import threading
import time

import psycopg2
import pytest

from api_helpers import assert_problem, new_user, start_api
from support import database_url, psql


@pytest.fixture(scope="module")
def api(stack):
    a = start_api(stack)
    yield a
    assert a.stop() == 0


def outbox_count(stack, user):
    return psql(stack, "SELECT count(*) FROM outbox WHERE user_id = %s", params=(user,))[0][0]


def test_replay_same_request(api, stack):
    u = new_user()
    path = f"/profiles/{u}/watchlist"
    h = {"Idempotency-Key": "key-1"}
    r1 = api.post(path, u, {"videoId": "v1"}, headers=h)
    assert r1.status_code == 201 and "Idempotent-Replayed" not in r1.headers
    r2 = api.post(path, u, {"videoId": "v1"}, headers=h)
    assert r2.status_code == 201, r2.text
    assert r2.headers["Idempotent-Replayed"] == "true"
    assert r2.json() == r1.json()
    assert outbox_count(stack, u) == 1
    # PUT profile: replay carries ETag and Location too
    p = f"/profiles/{u}"
    r1 = api.put(p, u, {"displayName": "A"}, headers={"Idempotency-Key": "put-1"})
    r2 = api.put(p, u, {"displayName": "A"}, headers={"Idempotency-Key": "put-1"})
    assert r1.status_code == r2.status_code == 201
    assert r2.headers["Idempotent-Replayed"] == "true"
    assert r2.headers["ETag"] == r1.headers["ETag"] == '"1"'
    assert r2.headers["Location"] == p
    assert api.get(p, u).json()["version"] == 1
    # DELETE replays 204
    d = f"/profiles/{u}/watchlist/v1"
    r1 = api.delete(d, u, headers={"Idempotency-Key": "del-1"})
    r2 = api.delete(d, u, headers={"Idempotency-Key": "del-1"})
    assert r1.status_code == r2.status_code == 204
    assert r2.headers["Idempotent-Replayed"] == "true"


def test_other_request_same_key_422(api, stack):
    u = new_user()
    h = {"Idempotency-Key": "k-422"}
    assert api.post(f"/profiles/{u}/watchlist", u, {"videoId": "v1"}, headers=h).status_code == 201
    r = api.post(f"/profiles/{u}/watchlist", u, {"videoId": "v2"}, headers=h)
    assert_problem(r, 422)
    r = api.post(f"/profiles/{u}/history", u, {"videoId": "v1", "positionSeconds": 1},
                 headers=h)
    assert_problem(r, 422)
    # same JSON meaning, other bytes: still another request
    r = api.request("POST", f"/profiles/{u}/watchlist", u, raw=b'{ "videoId": "v1" }',
                    headers={"Content-Type": "application/json", **h})
    assert_problem(r, 422)
    assert outbox_count(stack, u) == 1


def test_business_errors_are_replayed(api, stack):
    u = new_user()
    h = {"Idempotency-Key": "k-412", "If-Match": '"7"'}
    r1 = api.put(f"/profiles/{u}", u, {"displayName": "A"}, headers=h)
    assert_problem(r1, 412)
    r2 = api.put(f"/profiles/{u}", u, {"displayName": "A"}, headers=h)
    assert_problem(r2, 412)
    assert r2.headers["Idempotent-Replayed"] == "true"


def test_validation_failures_not_stored(api, stack):
    u = new_user()
    h = {"Idempotency-Key": "k-400"}
    r = api.post(f"/profiles/{u}/watchlist", u, {"videoId": "bad id"}, headers=h)
    assert_problem(r, 400)
    r = api.request("POST", f"/profiles/{u}/watchlist", u, raw=b'{"videoId":"v1"}',
                    headers={"Content-Type": "text/plain", **h})
    assert_problem(r, 415)
    r = api.post(f"/profiles/{u}/watchlist", u, {"videoId": "v1"}, headers=h)
    assert r.status_code == 201 and "Idempotent-Replayed" not in r.headers


def test_key_format(api):
    u = new_user()
    path = f"/profiles/{u}/watchlist"
    for key in ["x" * 256, "caf\u00e9".encode("utf-8"), "tab\there", ""]:
        r = api.post(path, u, {"videoId": "v1"}, headers={"Idempotency-Key": key})
        doc = assert_problem(r, 400)
    assert api.post(path, u, {"videoId": "v1"},
                    headers={"Idempotency-Key": "x" * 255}).status_code == 201
    assert api.post(path, u, {"videoId": "v2"},
                    headers={"Idempotency-Key": "~ !\"#$%&'()*+,-./"}).status_code == 201
    # ignored on GET
    assert api.get(path, u, headers={"Idempotency-Key": "x" * 300}).status_code == 200
    del doc


def test_scope_per_caller(api, stack):
    u, admin = new_user(), new_user("adm")
    path = f"/profiles/{u}/history"
    body = {"videoId": "v1", "positionSeconds": 3}
    h = {"Idempotency-Key": "shared-key"}
    r1 = api.post(path, u, body, headers=h)
    r2 = api.post(path, admin, body, roles=["admin"], headers=h)
    assert r1.status_code == r2.status_code == 201
    assert "Idempotent-Replayed" not in r2.headers
    assert r1.json()["entryId"] != r2.json()["entryId"]
    assert outbox_count(stack, u) == 2


def test_in_flight_409_deterministic(api, stack):
    """While another transaction holds the key's lock, the request is 409 and not stored."""
    u = new_user()
    key = "held-key"
    conn = psycopg2.connect(database_url(stack))
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(hashtextextended(%s || ' ' || %s, 0))",
                        (u, key))
        r = api.post(f"/profiles/{u}/watchlist", u, {"videoId": "v1"},
                     headers={"Idempotency-Key": key})
        assert_problem(r, 409)
        with conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_unlock(hashtextextended(%s || ' ' || %s, 0))",
                        (u, key))
    finally:
        conn.close()
    r = api.post(f"/profiles/{u}/watchlist", u, {"videoId": "v1"},
                 headers={"Idempotency-Key": key})
    assert r.status_code == 201 and "Idempotent-Replayed" not in r.headers


def test_concurrent_same_key_one_change(api, stack):
    """16 clients send one request with one key at once: exactly one change, the others get
    409 or the replay."""
    total_409 = 0
    for round_no in range(5):
        u = new_user()
        path = f"/profiles/{u}/history"
        body = {"videoId": "v1", "positionSeconds": 7}
        barrier = threading.Barrier(16)
        results = []
        lock = threading.Lock()

        def worker():
            import requests
            s = requests.Session()
            barrier.wait()
            r = api.post(path, u, body, headers={"Idempotency-Key": "race"}, session=s)
            with lock:
                results.append((r.status_code, r.headers.get("Idempotent-Replayed")))

        threads = [threading.Thread(target=worker) for _ in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        statuses = sorted(s for s, _ in results)
        assert set(statuses) <= {201, 409}, statuses
        fresh = [r for r in results if r[0] == 201 and r[1] is None]
        assert len(fresh) == 1, results
        assert outbox_count(stack, u) == 1
        assert psql(stack, "SELECT count(*) FROM history_entries WHERE user_id = %s",
                    params=(u,))[0][0] == 1
        total_409 += statuses.count(409)
    print(f"409 answers over 5 rounds of 16: {total_409}")


def test_expiry(stack):
    a = start_api(stack, IDEMPOTENCY_TTL_SECONDS=1)
    try:
        u = new_user()
        path = f"/profiles/{u}/watchlist"
        h = {"Idempotency-Key": "short"}
        assert a.post(path, u, {"videoId": "v1"}, headers=h).status_code == 201
        r = a.post(path, u, {"videoId": "v2"}, headers=h)
        assert_problem(r, 422)
        time.sleep(2.2)
        r = a.post(path, u, {"videoId": "v2"}, headers=h)
        assert r.status_code == 201 and "Idempotent-Replayed" not in r.headers
    finally:
        assert a.stop() == 0
