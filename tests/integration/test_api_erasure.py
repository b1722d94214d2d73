"""Erasure, export and conditional GET (docs/api.md "Erasure and export"): DELETE
/profiles/{userId} against the real profile-api, PostgreSQL and Redis; the relay's removal of an
erased user's outbox rows and dead letters through kafka-mock; GET .../export streamed with flat
memory for a large user and equal to paging through every list; If-None-Match → 304.
"""
import json
import time

import pytest
import redis
import requests

import support
from api_helpers import assert_problem, new_user, start_api, token
from support import run_sql
from test_relay_e2e import Collector, Relay, cleanup, emit, fresh_db, uid, wait_for

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.fixture(scope="module")
def api(stack):
    a = start_api(stack)
    yield a
    a.stop()


def fill_user(api, user):
    assert api.put(f"/profiles/{user}", user, {"displayName": "Eve"}).status_code == 201
    assert api.post(f"/profiles/{user}/watchlist", user, {"videoId": "v1"}).status_code == 201
    assert api.post(f"/profiles/{user}/history", user,
                    {"videoId": "v1", "positionSeconds": 5, "durationSeconds": 50}
                    ).status_code == 201
    assert api.post(f"/profiles/{user}/ratings", user,
                    {"videoId": "v1", "rating": 4, "review": "private words"}).status_code == 201


def lists(api, user, sub=None):
    sub = sub or user
    out = {}
    for path in ("watchlist", "history", "history?view=continue", "ratings"):
        r = api.get(f"/profiles/{user}/{path}", sub)
        assert r.status_code == 200, r.text
        out[path] = r.json()["items"]
    return out


def outbox(stack, user):
    return support.psql(stack, "SELECT seq, event_type, payload::text FROM outbox "
                        "WHERE user_id = %s ORDER BY seq", params=[user])


def test_delete_erases_everything_and_emits_profile_deleted(api, stack):
    user = new_user("er")
    fill_user(api, user)
    warm = lists(api, user)  # pages now cached in Redis
    assert all(len(v) == 1 for v in warm.values()), warm

    assert_problem(api.delete(f"/profiles/{user}", user, roles=("support",)), 403)
    assert_problem(api.delete(f"/profiles/{user}", new_user("other")), 403)
    assert_problem(api.delete("/profiles/bad%20id", "x", roles=("admin",)), 400)
    r = api.delete(f"/profiles/{user}", user, headers={"traceparent": TRACEPARENT})
    assert r.status_code == 204, r.text
    assert r.content == b"" and "Content-Type" not in r.headers
    assert "RateLimit" in r.headers

    assert_problem(api.get(f"/profiles/{user}", user), 404)
    assert all(v == [] for v in lists(api, user).values()), "a cached page of the user was served"
    rows = outbox(stack, user)
    assert [(s, t) for s, t, _ in rows] == [(1, "ProfileUpdated"), (2, "WatchlistUpdated"),
                                            (3, "HistoryUpdated"), (4, "VideoRated"),
                                            (5, "ProfileDeleted")]
    assert json.loads(rows[-1][2]) == {"userId": user}
    for table in ("profiles", "watchlist_items", "history_entries", "resume_points", "ratings"):
        assert support.psql(stack, f"SELECT count(*) FROM {table} WHERE user_id = %s",
                            params=[user]) == [(0,)], table

    # repeat: 204, nothing emitted
    assert api.delete(f"/profiles/{user}", user).status_code == 204
    assert len(outbox(stack, user)) == 5
    # a later write continues the sequence
    assert api.post(f"/profiles/{user}/watchlist", user, {"videoId": "v2"}).status_code == 201
    assert outbox(stack, user)[-1][:2] == (6, "WatchlistUpdated")


def test_delete_by_admin_with_idempotency_key(api, stack):
    user, admin = new_user("era"), new_user("admin")
    fill_user(api, user)
    h = {"Idempotency-Key": "erase-" + user}
    r1 = api.delete(f"/profiles/{user}", admin, roles=("admin",), headers=h)
    assert r1.status_code == 204 and "Idempotent-Replayed" not in r1.headers
    r2 = api.delete(f"/profiles/{user}", admin, roles=("admin",), headers=h)
    assert r2.status_code == 204 and r2.headers.get("Idempotent-Replayed") == "true"
    assert [t for _, t, _ in outbox(stack, user)].count("ProfileDeleted") == 1
    assert_problem(api.delete(f"/profiles/{user}/watchlist/v1", admin, roles=("admin",),
                              headers=h), 422)


def test_user_idempotency_outcomes_are_erased(api, stack):
    user = new_user("eri")
    r = api.post(f"/profiles/{user}/ratings", user, {"videoId": "v1", "rating": 2,
                                                     "review": "kept in the outcome"},
                 headers={"Idempotency-Key": "k1"})
    assert r.status_code == 201
    assert support.psql(stack, "SELECT count(*) FROM idempotency_keys WHERE caller = %s",
                        params=[user]) == [(1,)]
    assert api.delete(f"/profiles/{user}", user).status_code == 204
    assert support.psql(stack, "SELECT count(*) FROM idempotency_keys WHERE caller = %s "
                        "AND response_body LIKE '%%kept%%'", params=[user]) == [(0,)]


def test_delete_cors_preflight_allows_delete(api):
    r = requests.options(api.url("/profiles/u1"), headers={
        "Origin": "https://app.example.com", "Access-Control-Request-Method": "DELETE"},
        timeout=5)
    assert r.status_code == 204
    assert "DELETE" in r.headers.get("Allow", "")


def test_if_none_match_gives_304(api):
    user = new_user("inm")
    assert api.put(f"/profiles/{user}", user, {"displayName": "N"}).status_code == 201
    assert api.put(f"/profiles/{user}", user, {"displayName": "N2"}).status_code == 200
    for value in ('"2"', 'W/"2"', '"1", "2"', '*', '"7" , W/"2"'):
        r = api.get(f"/profiles/{user}", user, headers={"If-None-Match": value})
        assert r.status_code == 304, (value, r.status_code)
        assert r.content == b"" and r.headers["ETag"] == '"2"', value
    for value in ('"1"', '"2', 'W/"1"', '2'):
        r = api.get(f"/profiles/{user}", user, headers={"If-None-Match": value})
        assert r.status_code == 200 and r.json()["version"] == 2, value
    assert_problem(api.get(f"/profiles/{new_user('none')}", user, roles=("admin",),
                           headers={"If-None-Match": "*"}), 404)


# ---------------------------------------------------------------- relay


def test_relay_removes_erased_users_rows_and_dead_letters(stack, cleanup):
    topic = f"erasure-{uid()}"
    url = fresh_db(stack, "erase")
    col = Collector(stack, topic)
    cleanup.append(col)
    relay = Relay(stack, url, topic)
    cleanup.append(relay)
    user, other = uid("gone"), uid("keep")
    emit(url, user, 1)
    emit(url, user, 1, pad=1_100_000)  # never publishable: dead-lettered, holds the user back
    emit(url, user, 2)
    emit(url, other, 3)
    wait_for(lambda: run_sql(url, "SELECT count(*) FROM outbox_dead_letters")[0][0] == 1, 20,
             "the dead letter")
    col.wait_users({user: 1, other: 3}, timeout=20)
    # t_emit wrote events only: give the erasure a row to remove, so it emits ProfileDeleted
    run_sql(url, "INSERT INTO watchlist_items (user_id, video_id) VALUES (%s, 'v1')", [user])
    run_sql(url, "SELECT api_erase_profile(%s, NULL, NULL, 60, NULL, %s)", [user, user])
    col.wait_users({user: 5}, timeout=20)
    wait_for(lambda: run_sql(url, "SELECT count(*) FROM outbox WHERE user_id = %s",
                             [user])[0][0] == 0, 10, "the erased user's rows to go")
    seqs = [(int(e["headers"]["ce_sequence"]), e["headers"]["ce_type"])
            for e in col.snapshot() if e["key"] == user]
    assert sorted(set(seqs)) == [(1, "WatchlistUpdated"), (3, "WatchlistUpdated"),
                                 (4, "WatchlistUpdated"), (5, "ProfileDeleted")], seqs
    pd = [e for e in col.snapshot() if e["headers"]["ce_type"] == "ProfileDeleted"][0]
    assert json.loads(pd["value"]) == {"userId": user}
    assert pd["headers"]["ce_dataschema"] == "urn:profile-service:schema:ProfileDeleted:1"
    assert run_sql(url, "SELECT count(*) FROM outbox_dead_letters")[0][0] == 0
    assert run_sql(url, "SELECT count(*) FROM outbox WHERE user_id = %s", [other])[0][0] == 3
    wait_for(lambda: relay.metric("profile_relay_erased_dead_letters_total") == 1, 10,
             "the erased dead letter counted")
    # the cache version key was raised to the ProfileDeleted sequence by the relay
    r = redis.Redis.from_url(stack["REDIS_URL"], socket_timeout=5)
    wait_for(lambda: int(r.get(f"pc:{{{user}}}:ver") or 0) >= 5, 10, "relay invalidation")
    # writes after the erasure are published and stay
    emit(url, user, 1)
    col.wait_users({user: 6}, timeout=20)
    wait_for(lambda: run_sql(url, "SELECT count(*) FROM outbox WHERE user_id = %s AND "
                             "published_at IS NOT NULL", [user])[0][0] == 1, 10, "seq 6 marked")
    # An erasure whose removal did not run when its ProfileDeleted was published (a relay that
    # died between the mark and the removal): the housekeeping sweep removes the rows.
    sw = uid("sweep")
    emit(url, sw, 2)
    col.wait_users({sw: 2}, timeout=20)
    wait_for(lambda: run_sql(url, "SELECT count(*) FROM outbox WHERE user_id = %s AND "
                             "published_at IS NOT NULL", [sw])[0][0] == 2, 10, "sweep rows marked")
    run_sql(url, "UPDATE user_event_seq SET last_seq = 3 WHERE user_id = %s", [sw])
    run_sql(url, "INSERT INTO outbox (user_id, seq, event_type, payload, created_at, published_at)"
            " VALUES (%s, 3, 'ProfileDeleted', json_build_object('userId', %s::text), now(), now())",
            [sw, sw])
    wait_for(lambda: run_sql(url, "SELECT count(*) FROM outbox WHERE user_id = %s",
                             [sw])[0][0] == 0, 30, "the sweep to remove the rows")
    assert relay.metric("profile_relay_erased_users_total") >= 2
    assert relay.stop() == 0


# ---------------------------------------------------------------- export


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def page_all(api, user, path, sub):
    items, cursor = [], None
    while True:
        q = f"?limit=100" + (f"&cursor={cursor}" if cursor else "")
        r = api.get(f"/profiles/{user}/{path}{q}", sub, roles=("admin",))
        assert r.status_code == 200, r.text
        doc = r.json()
        items += doc["items"]
        cursor = doc["nextCursor"]
        if cursor is None:
            return items


def test_export_small_user_and_roles(api, stack):
    user = new_user("exs")
    fill_user(api, user)
    r = api.get(f"/profiles/{user}/export", user)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Disposition"] == f'attachment; filename="profile-{user}.json"'
    assert r.headers["Content-Type"] == "application/json; charset=utf-8"
    doc = r.json()
    assert list(doc) == ["userId", "exportedAt", "profile", "watchlist", "history", "ratings"]
    assert doc["userId"] == user and doc["profile"]["displayName"] == "Eve"
    assert [w["videoId"] for w in doc["watchlist"]] == ["v1"]
    assert doc["ratings"][0]["review"] == "private words"
    assert api.get(f"/profiles/{user}/export", new_user("sup"), roles=("support",)).status_code \
        == 200
    assert_problem(api.get(f"/profiles/{user}/export", new_user("x")), 403)
    assert_problem(api.get(f"/profiles/{user}/export", None, auth=False), 401)
    nobody = new_user("exn")
    doc = api.get(f"/profiles/{nobody}/export", nobody).json()
    assert (doc["profile"], doc["watchlist"], doc["history"], doc["ratings"]) == (None, [], [], [])


def sanitized(binary):
    """True when the binary was built with AddressSanitizer (make asan)."""
    with open(binary, "rb") as f:
        return b"__asan_init" in f.read()


def test_export_large_user_streams_with_flat_memory(stack):
    user = new_user("big")
    support.psql(stack, """
        INSERT INTO watchlist_items (user_id, video_id, added_at)
             SELECT %(u)s, 'w' || g, now() - g * interval '1 second'
               FROM generate_series(1, 1000) g;
        INSERT INTO history_entries (user_id, video_id, position_seconds, duration_seconds,
                                     watched_at)
             SELECT %(u)s, 'h' || (g %% 700), g %% 3600, 3600,
                    now() - (g / 3) * interval '1 millisecond'
               FROM generate_series(1, 50000) g;
        INSERT INTO ratings (user_id, video_id, rating, review, created_at, updated_at)
             SELECT %(u)s, 'r' || g, 1 + g %% 5, repeat('review text ', 10), now(),
                    now() - g * interval '1 millisecond'
               FROM generate_series(1, 5000) g;
        INSERT INTO profiles (user_id, display_name) VALUES (%(u)s, 'Big');
    """, params={"u": user})
    api = start_api(stack, HTTP_THREADS=1)
    try:
        api.get(f"/profiles/{user}", user)  # warm the pool and the thread
        before = rss_kb(api.proc.pid)
        peak, size = before, 0
        buf = []
        with requests.get(api.url(f"/profiles/{user}/export"), stream=True, timeout=60,
                          headers={"Authorization": "Bearer " + token(user)}) as r:
            assert r.status_code == 200
            for chunk in r.iter_content(chunk_size=64 * 1024):
                buf.append(chunk)
                size += len(chunk)
                peak = max(peak, rss_kb(api.proc.pid))
                time.sleep(0.002)  # a slow reader: the server must not run ahead
        time.sleep(0.5)
        after = rss_kb(api.proc.pid)
        doc = json.loads(b"".join(buf))
        print(f"\nexport: {size} bytes; profile-api RSS before {before} kB, peak during "
              f"{peak} kB, after {after} kB")
        # The document is ~10 MB; buffering it whole would raise RSS by at least that much.
        assert size > 8_000_000
        # Under AddressSanitizer freed memory sits in its quarantine (RSS grows with everything
        # allocated and freed), so the bound is only meaningful on the ordinary build.
        if not sanitized(support.bin_path("profile-api")):
            assert peak - before < size / 1024 / 4, (before, peak, size)
        assert (len(doc["watchlist"]), len(doc["history"]), len(doc["ratings"])) == \
            (1000, 50000, 5000)
        assert doc["profile"]["displayName"] == "Big"
        assert doc["watchlist"] == page_all(api, user, "watchlist", user)
        assert doc["ratings"] == page_all(api, user, "ratings", user)
        assert doc["history"] == page_all(api, user, "history", user)
        # a client that goes away mid-stream: the export stops, the server carries on
        for _ in range(3):
            with requests.get(api.url(f"/profiles/{user}/export"), stream=True, timeout=60,
                              headers={"Authorization": "Bearer " + token(user)}) as r:
                assert r.status_code == 200
                next(r.iter_content(chunk_size=64 * 1024))
        assert api.get(f"/profiles/{user}", user).status_code == 200
        assert len(api.get(f"/profiles/{user}/export", user).json()["history"]) == 50000
    finally:
        api.stop()


# ---------------------------------------------------------------- races


class _Msg:
    """A Collector record in the shape examples/consumer's Folder reads (confluent_kafka)."""

    def __init__(self, ev):
        self.ev = ev

    def key(self):
        return self.ev["key"].encode()

    def headers(self):
        return [(k, v.encode() if v is not None else None) for k, v in self.ev["headers"].items()]

    def value(self):
        return self.ev["value"]

    def partition(self):
        return self.ev["partition"]

    def offset(self):
        return self.ev["offset"]


def _load_consumer():
    import importlib.util
    path = support.REPO / "examples" / "consumer" / "consumer.py"
    spec = importlib.util.spec_from_file_location("example_consumer", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _db_state(url, user):
    """The user's state in PostgreSQL in the consumer's UserState.to_json shape."""
    last = run_sql(url, "SELECT last_seq FROM user_event_seq WHERE user_id = %s", [user])
    ver = run_sql(url, "SELECT version FROM profiles WHERE user_id = %s", [user])
    wl = run_sql(url, "SELECT video_id FROM watchlist_items WHERE user_id = %s ORDER BY 1",
                 [user])
    rt = run_sql(url, "SELECT video_id, rating, review FROM ratings WHERE user_id = %s", [user])
    rp = run_sql(url, "SELECT video_id, position_seconds, duration_seconds, to_char(watched_at "
                 "AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') FROM resume_points "
                 "WHERE user_id = %s", [user])
    return {"lastSequence": last[0][0] if last else 0,
            "profileVersion": ver[0][0] if ver else None,
            "watchlist": [v for (v,) in wl],
            "ratings": {v: {"rating": r, "review": t} for v, r, t in rt},
            "resumePoints": {v: {"positionSeconds": p, "durationSeconds": d, "watchedAt": w}
                             for v, p, d, w in rp}}


def test_randomized_writes_deletes_and_reads_agree(stack, cleanup):
    """Writers, deleters and readers on three users through two API replicas (one holding its
    cache fills 40 ms), a relay and kafka-mock. Once quiet: the database, every cached page and
    the folded events agree for every user, and no erased user has a row left in the outbox."""
    import random
    import threading
    import urllib.parse

    topic = f"erasure-race-{uid()}"
    url = fresh_db(stack, "race")
    col = Collector(stack, topic)
    cleanup.append(col)
    relay = Relay(stack, url, topic)
    cleanup.append(relay)
    a = start_api(stack, DATABASE_URL=url, RATE_LIMIT_PER_MINUTE=0)
    cleanup.append(a)
    b = start_api(stack, DATABASE_URL=url, RATE_LIMIT_PER_MINUTE=0, TEST_CACHE_FILL_DELAY_MS=40)
    cleanup.append(b)
    uncached = start_api(stack, DATABASE_URL=url, RATE_LIMIT_PER_MINUTE=0,
                         REDIS_URL="redis://127.0.0.1:1/0")
    cleanup.append(uncached)
    users = [uid("race") for _ in range(3)]
    stop = threading.Event()
    errors, counts, lock = [], {"writes": 0, "deletes": 0, "reads": 0}, threading.Lock()

    def count(what):
        with lock:
            counts[what] += 1

    def writer(seed):
        rng, s = random.Random(seed), requests.Session()
        while not stop.is_set():
            api, user, video = rng.choice((a, b)), rng.choice(users), f"v{rng.randrange(8)}"
            op = rng.random()
            try:
                if op < 0.3:
                    r = api.post(f"/profiles/{user}/watchlist", user, {"videoId": video}, session=s)
                elif op < 0.45:
                    r = api.delete(f"/profiles/{user}/watchlist/{video}", user, session=s)
                elif op < 0.7:
                    r = api.post(f"/profiles/{user}/history", user,
                                 {"videoId": video, "positionSeconds": rng.choice([5, 50, 100]),
                                  "durationSeconds": 100}, session=s)
                elif op < 0.9:
                    r = api.post(f"/profiles/{user}/ratings", user,
                                 {"videoId": video, "rating": rng.randint(1, 5),
                                  "review": f"r{rng.randrange(1000)}"}, session=s)
                else:
                    r = api.put(f"/profiles/{user}", user, {"displayName": "R"}, session=s)
                if r.status_code >= 300:
                    errors.append(("write", r.status_code, r.text[:200]))
            except requests.RequestException as e:
                errors.append(("write", repr(e)))
            count("writes")

    def deleter(seed):
        rng, s = random.Random(seed), requests.Session()
        while not stop.is_set():
            user = rng.choice(users)
            try:
                r = rng.choice((a, b)).delete(f"/profiles/{user}", user, session=s)
                if r.status_code != 204:
                    errors.append(("delete", r.status_code, r.text[:200]))
            except requests.RequestException as e:
                errors.append(("delete", repr(e)))
            count("deletes")
            time.sleep(rng.uniform(0.05, 0.3))

    def reader(seed):
        rng, s = random.Random(seed), requests.Session()
        while not stop.is_set():
            user = rng.choice(users)
            lst = rng.choice(("watchlist", "history", "ratings", "history?view=continue"))
            sep = "&" if "?" in lst else "?"
            q = urllib.parse.urlencode({"limit": rng.choice([1, 3, 50])})
            try:
                r = rng.choice((a, b)).get(f"/profiles/{user}/{lst}{sep}{q}", user, session=s)
                if r.status_code != 200:
                    errors.append(("read", r.status_code, r.text[:200]))
            except requests.RequestException as e:
                errors.append(("read", repr(e)))
            count("reads")

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(3)]
    threads += [threading.Thread(target=deleter, args=(50 + i,)) for i in range(2)]
    threads += [threading.Thread(target=reader, args=(100 + i,)) for i in range(3)]
    try:
        for t in threads:
            t.start()
        time.sleep(12)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert not errors, errors[:5]
    assert counts["writes"] > 50 and counts["deletes"] > 10, counts

    # quiet: every event published and consumed
    last = {u: run_sql(url, "SELECT coalesce(max(last_seq), 0) FROM user_event_seq "
                       "WHERE user_id = %s", [u])[0][0] for u in users}
    col.wait_users({u: n for u, n in last.items() if n > 0}, timeout=60)
    wait_for(lambda: run_sql(url, "SELECT count(*) FROM outbox WHERE published_at IS NULL")[0][0]
             == 0, 30, "outbox drained")

    consumer = _load_consumer()
    folder = consumer.Folder(consumer.load_schemas(consumer.DEFAULT_SCHEMAS))
    for ev in col.snapshot():
        folder.handle(_Msg(ev))
    assert folder.gaps == [] and folder.invalid == [], (folder.gaps[:5], folder.invalid[:5])
    for u in users:
        got = folder.users[u].to_json() if u in folder.users else _db_state(url, "-none-")
        got["watchlist"] = sorted(got["watchlist"])
        assert got == _db_state(url, u), u

    # every page through either replica (cached or not) equals an uncached read
    for u in users:
        for path in ("watchlist", "history", "ratings", "history?view=continue",
                     "watchlist?limit=1", "history?limit=3"):
            for _ in range(2):  # the second read may come from the cache the first filled
                want = uncached.get(f"/profiles/{u}/{path}", u).content
                assert a.get(f"/profiles/{u}/{path}", u).content == want, (u, path)
                assert b.get(f"/profiles/{u}/{path}", u).content == want, (u, path)
            time.sleep(0.05)
    # an erased user whose ProfileDeleted is the last event has no outbox row left
    for u in users:
        types = [e["headers"]["ce_type"] for e in col.snapshot() if e["key"] == u]
        if types and types[-1] == "ProfileDeleted":
            wait_for(lambda: run_sql(url, "SELECT count(*) FROM outbox WHERE user_id = %s",
                                     [u])[0][0] == 0, 10, f"{u}'s outbox rows to go")
    deleted = sum(1 for ev in col.snapshot() if ev["headers"]["ce_type"] == "ProfileDeleted")
    print(f"\nrace: {counts}, {len(col.snapshot())} events, {deleted} ProfileDeleted")
    assert deleted > 0
