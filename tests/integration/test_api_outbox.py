"""Every acknowledged write of profile-api leaves exactly the outbox rows it should, with
per-user sequences 1..N without gaps, also when 16 clients write to one user at once."""
import json
import re
import threading

import pytest
import requests

from api_helpers import new_user, start_api
from support import psql

TRACEPARENT_RE = re.compile(r"^00-[0-9a-f]{32}-[0-9a-f]{16}-01$")


@pytest.fixture(scope="module")
def api(stack):
    a = start_api(stack, PG_POOL_MAX=8)
    yield a
    assert a.stop() == 0


def rows(stack, user):
    out = psql(stack, "SELECT seq, event_type, payload::text, traceparent FROM outbox "
                      "WHERE user_id = %s ORDER BY seq", params=(user,))
    return [(s, t, json.loads(p), tp) for s, t, p, tp in out]


def test_each_write_emits_its_event(api, stack):
    u = new_user()
    incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    h = {"traceparent": incoming}
    assert api.put(f"/profiles/{u}", u, {"displayName": "A"}, headers=h).status_code == 201
    assert api.put(f"/profiles/{u}", u, {"displayName": "B"}).status_code == 200
    assert api.post(f"/profiles/{u}/watchlist", u, {"videoId": "v1"}).status_code == 201
    assert api.post(f"/profiles/{u}/watchlist", u, {"videoId": "v1"}).status_code == 200
    assert api.delete(f"/profiles/{u}/watchlist/v1", u).status_code == 204
    assert api.delete(f"/profiles/{u}/watchlist/v1", u).status_code == 204
    assert api.post(f"/profiles/{u}/history", u,
                    {"videoId": "v2", "positionSeconds": 30, "durationSeconds": 60,
                     "watchedAt": "2026-03-01T12:00:00.000Z"}).status_code == 201
    assert api.post(f"/profiles/{u}/ratings", u,
                    {"videoId": "v3", "rating": 5, "review": "wow"}).status_code == 201
    assert api.post(f"/profiles/{u}/ratings", u, {"videoId": "v3", "rating": 2}).status_code == 200
    # failures emit nothing
    assert api.put(f"/profiles/{u}", u, {"displayName": "C"},
                   headers={"If-Match": '"99"'}).status_code == 412
    assert api.post(f"/profiles/{u}/ratings", u, {"videoId": "v3", "rating": 9}).status_code == 400

    got = rows(stack, u)
    assert [s for s, _, _, _ in got] == list(range(1, 8))
    assert [(t, p) for _, t, p, _ in got] == [
        ("ProfileUpdated", {"userId": u, "version": 1}),
        ("ProfileUpdated", {"userId": u, "version": 2}),
        ("WatchlistUpdated", {"userId": u, "videoId": "v1", "action": "added"}),
        ("WatchlistUpdated", {"userId": u, "videoId": "v1", "action": "removed"}),
        ("HistoryUpdated", {"userId": u, "videoId": "v2", "positionSeconds": 30,
                            "durationSeconds": 60, "watchedAt": "2026-03-01T12:00:00.000Z"}),
        ("VideoRated", {"userId": u, "videoId": "v3", "rating": 5, "review": "wow"}),
        ("VideoRated", {"userId": u, "videoId": "v3", "rating": 2, "review": None}),
    ]
    for _, _, _, tp in got:
        assert TRACEPARENT_RE.match(tp), tp
    # the first write continued the caller's trace with a new server span
    assert got[0][3].split("-")[1] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert got[0][3].split("-")[2] != "00f067aa0ba902b7"
    # the others started their own traces
    assert got[1][3].split("-")[1] != "4bf92f3577b34da6a3ce929d0e0e4736"
    # an invalid traceparent starts a new trace
    api.post(f"/profiles/{u}/watchlist", u, {"videoId": "v9"},
             headers={"traceparent": "00-00000000000000000000000000000000-00f067aa0ba902b7-01"})
    tp = rows(stack, u)[-1][3]
    assert TRACEPARENT_RE.match(tp) and tp.split("-")[1] != "0" * 32


def test_ce_time_monotonic(api, stack):
    u = new_user()
    for i in range(10):
        assert api.post(f"/profiles/{u}/watchlist", u, {"videoId": f"v{i}"}).status_code == 201
    times = [t for (t,) in psql(stack, "SELECT created_at FROM outbox WHERE user_id = %s "
                                       "ORDER BY seq", params=(u,))]
    assert times == sorted(times)


def test_16_concurrent_writers_same_user(api, stack):
    u = new_user()
    per_client = 10
    barrier = threading.Barrier(16)
    acked = []
    failures = []
    lock = threading.Lock()

    def client(n):
        s = requests.Session()
        barrier.wait()
        for i in range(per_client):
            if i % 3 == 0:
                r = api.post(f"/profiles/{u}/watchlist", u, {"videoId": f"c{n}-{i}"}, session=s)
            elif i % 3 == 1:
                r = api.post(f"/profiles/{u}/history", u,
                             {"videoId": f"c{n}", "positionSeconds": i}, session=s)
            else:
                r = api.post(f"/profiles/{u}/ratings", u,
                             {"videoId": f"c{n}-{i}", "rating": 1 + i % 5}, session=s)
            with lock:
                if r.status_code == 201:
                    acked.append((n, i))
                else:
                    failures.append((r.status_code, r.text))

    threads = [threading.Thread(target=client, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    assert len(acked) == 16 * per_client
    seqs = [s for (s,) in psql(stack, "SELECT seq FROM outbox WHERE user_id = %s ORDER BY seq",
                               params=(u,))]
    assert seqs == list(range(1, 16 * per_client + 1))
    last = psql(stack, "SELECT last_seq FROM user_event_seq WHERE user_id = %s", params=(u,))
    assert last == [(16 * per_client,)]
