"""profile-api's read-through list cache against the stack's real redis-server (docs/cache.md):
hits after misses, every page variant invalidated by every write (read-your-writes), the
stale-fill race made deterministic with TEST_CACHE_FILL_DELAY_MS, a randomized
writers-and-readers run that must leave only fresh pages in Redis, and Redis killed and
restarted under load (no 5xx, writes succeed, caching resumes, nothing stale).
"""
import random
import subprocess
import threading
import time
import urllib.parse

import pytest
import redis
import requests

import openapi_check
import support
from api_helpers import metrics, new_user, start_api, token

JSON = "application/json; charset=utf-8"
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


# ---------------------------------------------------------------- helpers

@pytest.fixture(scope="module", params=support.REDIS_MODES)
def stack(request, stack):
    """Every test of this module runs against a standalone Redis and against a Redis Cluster
    (REDIS_MODE=cluster, REDIS_URL the cluster's seed nodes)."""
    return support.stack_for_redis_mode(stack, request.param)


def rds(stack):
    return support.redis_client(stack, socket_timeout=5)


def pause_redis(stack, ms):
    """CLIENT PAUSE on the Redis (every master in cluster mode)."""
    for r in _every_node(stack):
        r.execute_command("CLIENT", "PAUSE", str(ms), "ALL")


def unpause_redis(stack):
    for r in _every_node(stack):
        try:
            r.execute_command("CLIENT", "UNPAUSE")
        except redis.RedisError:
            pass


def _every_node(stack):
    if stack.get("REDIS_MODE") != "cluster":
        return [redis.Redis.from_url(stack["REDIS_URL"], socket_timeout=5)]
    return [redis.Redis(host="127.0.0.1", port=int(p), socket_timeout=5)
            for p in stack["REDIS_CLUSTER_PORTS"].split(",")]


def wl_key(user):
    return f"pc:{{{user}}}:wl"


def hist_key(user):
    return f"pc:{{{user}}}:hist"


def ver_key(user):
    return f"pc:{{{user}}}:ver"


def wait_for(pred, timeout=10, interval=0.05, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)


def field(limit=50, view="", cursor=""):
    return f"l={limit}|v={view}|c={cursor}"


def query_of(f):
    """Inverse of field(): the query string that reads the page variant named by a field."""
    parts = dict(p.split("=", 1) for p in f.split("|"))
    q = {"limit": parts["l"]}
    if parts["v"]:
        q["view"] = parts["v"]
    if parts["c"]:
        q["cursor"] = parts["c"]
    return "?" + urllib.parse.urlencode(q)


def add_watch(api, user, video):
    r = api.post(f"/profiles/{user}/watchlist", user, {"videoId": video})
    assert r.status_code in (200, 201), r.text
    return r


def add_history(api, user, video, pos, dur=100):
    r = api.post(f"/profiles/{user}/history", user,
                 {"videoId": video, "positionSeconds": pos, "durationSeconds": dur})
    assert r.status_code == 201, r.text
    return r


def video_ids(resp):
    assert resp.status_code == 200, resp.text
    return [i["videoId"] for i in resp.json()["items"]]


def warm(api, stack, user, path, key, f):
    """GETs path until Redis holds page variant f of key (the fill lands after the answer)."""
    r = rds(stack)

    def filled():
        api.get(path, user)
        return r.hexists(key, f)
    wait_for(filled, 10, 0.1, f"cache fill of {key} {f}")


@pytest.fixture(scope="module")
def api(stack):
    a = start_api(stack, RATE_LIMIT_PER_MINUTE=0)
    yield a
    assert a.stop() == 0, a.proc.output()[-3000:]


@pytest.fixture(scope="module")
def uncached(stack):
    """An API process whose Redis is unreachable: every read goes to PostgreSQL."""
    a = start_api(stack, RATE_LIMIT_PER_MINUTE=0, REDIS_URL="redis://127.0.0.1:1/0")
    yield a
    assert a.stop() == 0, a.proc.output()[-3000:]


# ---------------------------------------------------------------- hits and misses

def test_hit_after_miss_serves_the_cached_body(api, stack):
    user = new_user("c")
    for v in ("v1", "v2", "v3"):
        add_watch(api, user, v)
    r = rds(stack)
    path = f"/profiles/{user}/watchlist"
    before = metrics(api)
    first = api.get(path, user)
    assert video_ids(first) == ["v3", "v2", "v1"]
    wait_for(lambda: r.hexists(wl_key(user), field()), what="fill")
    assert int(r.get(ver_key(user))) == 3  # the version PostgreSQL returned with the rows
    second = api.get(path, user)
    after = metrics(api)
    assert second.content == first.content
    assert after["profile_api_cache_hits_total"] >= before["profile_api_cache_hits_total"] + 1
    assert after["profile_api_cache_misses_total"] >= before["profile_api_cache_misses_total"] + 1
    wait_for(lambda: metrics(api)["profile_api_cache_fills_total"]
             >= before["profile_api_cache_fills_total"] + 1, what="fills counter")
    # same headers as the uncached answer
    for h in ("Content-Type", "Cache-Control", "X-Content-Type-Options"):
        assert second.headers[h] == first.headers[h], h
    assert second.headers["Cache-Control"] == "no-store"
    assert second.headers["Content-Type"] == JSON
    # proof that answers come from Redis: another process filled a newer version (4) with a
    # marker body; the page this process holds at version 3 must give way to it
    r.set(ver_key(user), 4)
    r.delete(wl_key(user))
    r.hset(wl_key(user), field(), b'{"items":[],"nextCursor":null,"marker":1}')
    with openapi_check.unchecked():  # the planted body is not one the spec allows, on purpose
        assert api.get(path, user).json().get("marker") == 1
    # and that the copy now held locally at version 4 answers without the body from Redis
    local = metrics(api)["profile_api_cache_local_hits_total"]
    with openapi_check.unchecked():
        assert api.get(path, user).json().get("marker") == 1
    assert metrics(api)["profile_api_cache_local_hits_total"] == local + 1
    r.delete(wl_key(user))


def test_every_variant_is_cached_separately_and_dropped_together(api, stack):
    user = new_user("c")
    for i in range(5):
        add_watch(api, user, f"v{i}")
        add_history(api, user, f"v{i}", 10 * i + 1)
    r = rds(stack)
    p1 = api.get(f"/profiles/{user}/watchlist?limit=2", user).json()
    cur = p1["nextCursor"]
    assert cur
    variants = [
        (f"/profiles/{user}/watchlist", wl_key(user), field()),
        (f"/profiles/{user}/watchlist?limit=2", wl_key(user), field(2)),
        (f"/profiles/{user}/watchlist?limit=2&cursor={cur}", wl_key(user), field(2, "", cur)),
        (f"/profiles/{user}/history", hist_key(user), field()),
        (f"/profiles/{user}/history?view=continue&limit=3", hist_key(user), field(3, "continue")),
    ]
    for path, key, f in variants:
        warm(api, stack, user, path, key, f)
    assert r.hlen(wl_key(user)) == 3 and r.hlen(hist_key(user)) == 2
    bodies = {path: api.get(path, user).content for path, _, _ in variants}
    add_watch(api, user, "v-new")  # one write drops both lists, every variant
    assert not r.exists(wl_key(user)) and not r.exists(hist_key(user))
    assert video_ids(api.get(f"/profiles/{user}/watchlist?limit=2", user)) == ["v-new", "v4"]
    assert bodies[variants[3][0]] == api.get(variants[3][0], user).content  # history unchanged


# ---------------------------------------------------------------- read-your-writes

def _warm_lists(api, stack, user):
    for path, key in ((f"/profiles/{user}/watchlist", wl_key(user)),
                      (f"/profiles/{user}/history", hist_key(user)),
                      (f"/profiles/{user}/history?view=continue", hist_key(user))):
        f = field(view="continue") if "view" in path else field()
        warm(api, stack, user, path, key, f)


def test_read_your_writes_after_every_write_type(api, stack):
    user = new_user("c")
    r = rds(stack)
    add_watch(api, user, "a")
    add_history(api, user, "a", 5)
    wl, hist, cont = (f"/profiles/{user}/watchlist", f"/profiles/{user}/history",
                      f"/profiles/{user}/history?view=continue")

    _warm_lists(api, stack, user)
    add_watch(api, user, "b")  # POST watchlist
    assert video_ids(api.get(wl, user)) == ["b", "a"]

    _warm_lists(api, stack, user)
    resp = api.delete(f"/profiles/{user}/watchlist/a", user)  # DELETE watchlist
    assert resp.status_code == 204
    assert video_ids(api.get(wl, user)) == ["b"]

    _warm_lists(api, stack, user)
    add_history(api, user, "c", 7)  # POST history
    assert video_ids(api.get(hist, user)) == ["c", "a"]
    assert video_ids(api.get(cont, user)) == ["c", "a"]

    _warm_lists(api, stack, user)
    add_history(api, user, "a", 100, 100)  # finished: leaves view=continue
    assert video_ids(api.get(cont, user)) == ["c"]

    seq_before = int(r.get(ver_key(user)))
    _warm_lists(api, stack, user)
    resp = api.post(f"/profiles/{user}/ratings", user, {"videoId": "a", "rating": 4})
    assert resp.status_code == 201  # POST ratings: an event, so the version moves on
    assert int(r.get(ver_key(user))) == seq_before + 1
    assert not r.exists(wl_key(user)) and not r.exists(hist_key(user))

    _warm_lists(api, stack, user)
    resp = api.put(f"/profiles/{user}", user, {"displayName": "Ann"})  # PUT profile
    assert resp.status_code == 201
    assert int(r.get(ver_key(user))) == seq_before + 2
    assert not r.exists(wl_key(user)) and not r.exists(hist_key(user))

    # a no-op write (no event) keeps the cache
    _warm_lists(api, stack, user)
    resp = api.post(wl, user, {"videoId": "b"})
    assert resp.status_code == 200
    assert r.exists(wl_key(user))
    assert video_ids(api.get(wl, user)) == ["b"]


def test_read_your_writes_across_processes(api, stack):
    """The write's invalidation reaches Redis before the answer: a read on another replica
    right after it cannot see the old page."""
    other = start_api(stack, RATE_LIMIT_PER_MINUTE=0)
    try:
        user = new_user("c")
        add_watch(api, user, "a")
        for i in range(5):
            warm(other, stack, user, f"/profiles/{user}/watchlist", wl_key(user), field())
            add_watch(api, user, f"n{i}")
            assert video_ids(other.get(f"/profiles/{user}/watchlist", user))[0] == f"n{i}"
    finally:
        assert other.stop() == 0


# ---------------------------------------------------------------- the stale-fill race

def test_late_stale_fill_is_rejected(stack):
    """reader misses and reads the old rows; a writer commits and invalidates during the fill
    delay; the late fill must be refused: Redis ends with the new data or nothing."""
    delayed = start_api(stack, RATE_LIMIT_PER_MINUTE=0, TEST_CACHE_FILL_DELAY_MS=1500)
    try:
        r = rds(stack)
        user = new_user("race")
        add_watch(delayed, user, "old")
        path = f"/profiles/{user}/watchlist"
        before = metrics(delayed)
        t0 = time.monotonic()
        reader = delayed.get(path, user)  # miss: old rows at version 1, fill held 1.5 s
        assert video_ids(reader) == ["old"]
        assert not r.hexists(wl_key(user), field())  # the fill is still held
        add_watch(delayed, user, "new")  # commits seq 2 and invalidates, inside the window
        assert time.monotonic() - t0 < 1.2, "the write did not land inside the fill delay"
        assert int(r.get(ver_key(user))) == 2
        wait_for(lambda: metrics(delayed)["profile_api_cache_fill_rejections_total"]
                 >= before["profile_api_cache_fill_rejections_total"] + 1, 10,
                 what="the stale fill to be refused")
        cached = r.hget(wl_key(user), field())
        assert cached is None or b'"new"' in cached, cached
        # the next read fills at version 2 (after the delay) and that fill is accepted
        assert video_ids(delayed.get(path, user)) == ["new", "old"]
        wait_for(lambda: r.hexists(wl_key(user), field()), 10, what="fresh fill")
        assert b'"new"' in r.hget(wl_key(user), field())
    finally:
        assert delayed.stop() == 0


def test_fill_after_a_newer_fill_is_rejected(stack):
    """Two readers at versions 1 and 2 fill in the wrong order: the older one is refused."""
    slow = start_api(stack, RATE_LIMIT_PER_MINUTE=0, TEST_CACHE_FILL_DELAY_MS=1500)
    fast = start_api(stack, RATE_LIMIT_PER_MINUTE=0)
    try:
        r = rds(stack)
        user = new_user("race")
        add_watch(fast, user, "old")
        path = f"/profiles/{user}/watchlist"
        assert video_ids(slow.get(path, user)) == ["old"]  # version 1, fill held
        # a write from outside the API (as if its invalidation were lost), then a fresh read
        support.psql(stack, "SELECT * FROM api_watchlist_add(%s, NULL, NULL, 60, %s, %s, %s)",
                     params=(user, TRACEPARENT, user, "new"))
        assert video_ids(fast.get(path, user)) == ["new", "old"]
        wait_for(lambda: r.hexists(wl_key(user), field()), what="fresh fill")
        assert int(r.get(ver_key(user))) == 2
        time.sleep(1.8)  # the held fill at version 1 has run by now
        assert b'"new"' in r.hget(wl_key(user), field())
    finally:
        assert slow.stop() == 0
        assert fast.stop() == 0


# ---------------------------------------------------------------- randomized

def _check_cache_matches(stack, users, uncached):
    """Every page variant in Redis equals an uncached read of the same variant."""
    r = rds(stack)
    checked = 0
    for user in users:
        for key, path in ((wl_key(user), f"/profiles/{user}/watchlist"),
                          (hist_key(user), f"/profiles/{user}/history")):
            for f, cached in r.hgetall(key).items():
                f = f.decode()
                fresh = uncached.get(path + query_of(f), user)
                assert fresh.status_code == 200, fresh.text
                assert cached == fresh.content, (user, key, f, cached[:300], fresh.text[:300])
                checked += 1
    return checked


def test_randomized_writers_and_readers_leave_only_fresh_pages(stack, uncached):
    # two replicas sharing Redis; one holds its fills 40 ms to widen every race window
    a = start_api(stack, RATE_LIMIT_PER_MINUTE=0, HTTP_THREADS=2)
    b = start_api(stack, RATE_LIMIT_PER_MINUTE=0, HTTP_THREADS=2, TEST_CACHE_FILL_DELAY_MS=40)
    users = [new_user("rnd") for _ in range(3)]
    stop = threading.Event()
    errors = []
    counts = {"reads": 0, "writes": 0}
    lock = threading.Lock()

    def writer(seed):
        rng = random.Random(seed)
        s = requests.Session()
        while not stop.is_set():
            api = rng.choice((a, b))
            user = rng.choice(users)
            video = f"v{rng.randrange(12)}"
            op = rng.random()
            try:
                if op < 0.4:
                    resp = api.post(f"/profiles/{user}/watchlist", user, {"videoId": video},
                                    session=s)
                elif op < 0.6:
                    resp = api.delete(f"/profiles/{user}/watchlist/{video}", user, session=s)
                else:
                    dur = 100
                    resp = api.post(f"/profiles/{user}/history", user,
                                    {"videoId": video, "positionSeconds": rng.choice([5, 50, 100]),
                                     "durationSeconds": dur}, session=s)
                if resp.status_code >= 300:
                    errors.append(("write", resp.status_code, resp.text[:200]))
            except requests.RequestException as e:
                errors.append(("write", repr(e)))
            with lock:
                counts["writes"] += 1

    def reader(seed):
        rng = random.Random(seed)
        s = requests.Session()
        cursors = {}
        while not stop.is_set():
            api = rng.choice((a, b))
            user = rng.choice(users)
            lst = rng.choice(("watchlist", "history"))
            q = {"limit": rng.choice([1, 2, 5, 50])}
            if lst == "history" and rng.random() < 0.4:
                q["view"] = "continue"
            ck = (user, lst, q.get("view"), q["limit"])
            if ck in cursors and rng.random() < 0.5:
                q["cursor"] = cursors[ck]
            try:
                resp = api.get(f"/profiles/{user}/{lst}?" + urllib.parse.urlencode(q), user,
                               session=s)
                if resp.status_code != 200:
                    errors.append(("read", resp.status_code, resp.text[:200]))
                elif resp.json()["nextCursor"] and "cursor" not in q:
                    cursors[ck] = resp.json()["nextCursor"]
            except requests.RequestException as e:
                errors.append(("read", repr(e)))
            with lock:
                counts["reads"] += 1

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(3)]
    threads += [threading.Thread(target=reader, args=(100 + i,)) for i in range(5)]
    try:
        for t in threads:
            t.start()
        time.sleep(5)
        stop.set()
        for t in threads:
            t.join(30)
        assert not errors, errors[:5]
        time.sleep(0.5)  # held fills land
        checked = _check_cache_matches(stack, users, uncached)
        # quiet now: fill many variants through both replicas, then check them all again
        for user in users:
            for api in (a, b):
                for q in ("", "?limit=1", "?limit=2"):
                    api.get(f"/profiles/{user}/watchlist{q}", user)
                    api.get(f"/profiles/{user}/history{q}", user)
                api.get(f"/profiles/{user}/history?view=continue", user)
        time.sleep(0.5)
        checked += _check_cache_matches(stack, users, uncached)
        # and a read through each replica now equals the uncached read (pages each replica
        # holds locally included: those answer after the version check alone)
        for user in users:
            for path in [f"/profiles/{user}/{lst}{q}" for lst in ("watchlist", "history")
                         for q in ("", "?limit=1", "?limit=2")] + [
                             f"/profiles/{user}/history?view=continue",
                             f"/profiles/{user}/history?view=continue&limit=2"]:
                want = uncached.get(path, user).content
                assert a.get(path, user).content == want
                assert b.get(path, user).content == want
        ma, mb = metrics(a), metrics(b)
        print(f"randomized: {counts}, {checked} cached variants checked, hits "
              f"{ma['profile_api_cache_hits_total'] + mb['profile_api_cache_hits_total']:.0f}, "
              f"fill rejections {ma['profile_api_cache_fill_rejections_total'] + mb['profile_api_cache_fill_rejections_total']:.0f}")
        assert counts["writes"] > 20 and counts["reads"] > 50
        assert ma["profile_api_cache_hits_total"] + mb["profile_api_cache_hits_total"] > 0
        assert ma["profile_api_cache_local_hits_total"] > 0
        assert mb["profile_api_cache_local_hits_total"] > 0
    finally:
        stop.set()
        assert a.stop() == 0
        assert b.stop() == 0


# ---------------------------------------------------------------- Redis down and back

def redis_ctl(stack, cmd):
    subprocess.run([str(support.REPO / "tools" / "stack.sh"), cmd, stack["STACK_DIR"]],
                   check=True, capture_output=True, timeout=60)


def test_redis_killed_and_restarted_under_load(stack, uncached):
    if stack["REDIS_MODE"] == "cluster":
        pytest.skip("cluster mode: test_api_redis_cluster.py kills a master instead")
    a = start_api(stack, RATE_LIMIT_PER_MINUTE=100000)
    users = [new_user("rk") for _ in range(3)]
    stop = threading.Event()
    statuses = {"read": [], "write": []}
    lock = threading.Lock()

    def load(seed):
        rng = random.Random(seed)
        s = requests.Session()
        while not stop.is_set():
            user = rng.choice(users)
            try:
                if rng.random() < 0.35:
                    resp = a.post(f"/profiles/{user}/watchlist", user,
                                  {"videoId": f"v{rng.randrange(50)}"}, session=s)
                    kind = "write"
                else:
                    lst = rng.choice(("watchlist", "history"))
                    resp = a.get(f"/profiles/{user}/{lst}?limit={rng.choice([2, 50])}", user,
                                 session=s)
                    kind = "read"
                with lock:
                    statuses[kind].append(resp.status_code)
            except requests.RequestException as e:
                with lock:
                    statuses["read"].append(repr(e))

    threads = [threading.Thread(target=load, args=(i,)) for i in range(6)]
    redis_stopped = False
    try:
        for t in threads:
            t.start()
        time.sleep(1.0)
        with lock:
            n_at_stop = len(statuses["write"])
        redis_ctl(stack, "redis-stop")
        redis_stopped = True
        t_down = time.monotonic()
        wait_for(lambda: metrics(a)["profile_api_redis_up"] == 0, 5, what="redis down")
        health = requests.get(a.url("/health"), timeout=5)
        assert health.status_code == 200
        assert health.json()["checks"]["redis"]["status"] == "down"
        assert requests.get(a.url("/health/ready"), timeout=5).status_code == 200
        time.sleep(max(0.0, 2.0 - (time.monotonic() - t_down)))
        with lock:
            n_down = len(statuses["write"])
        redis_ctl(stack, "redis-start")
        redis_stopped = False
        wait_for(lambda: metrics(a)["profile_api_redis_up"] == 1, 15, 0.1, what="redis back")
        time.sleep(1.0)
        stop.set()
        for t in threads:
            t.join(30)
        m = metrics(a)
        reads, writes = statuses["read"], statuses["write"]
        bad = [s for s in reads + writes if not isinstance(s, int) or s >= 500]
        assert not bad, bad[:5]
        assert all(s in (200, 201) for s in writes), set(writes)
        assert n_down > n_at_stop  # writes were made while Redis was down
        assert m["profile_api_redis_outages_total"] >= 1
        assert m["profile_api_cache_invalidation_failures_total"] >= 1
        # the first cache operations after Redis is back replay the queued invalidations
        wait_for(lambda: a.get(f"/profiles/{users[0]}/history", users[0]).status_code == 200
                 and metrics(a)["profile_api_cache_pending_invalidations"] == 0, 10,
                 what="replayed invalidations")
        # caching resumes: a miss fills, the next read hits (a page variant the load never
        # read, so that no copy of it is held locally from before)
        r = rds(stack)
        user = users[0]
        warm(a, stack, user, f"/profiles/{user}/watchlist?limit=7", wl_key(user), field(7))
        hits = metrics(a)["profile_api_cache_hits_total"]
        a.get(f"/profiles/{user}/watchlist?limit=7", user)
        assert metrics(a)["profile_api_cache_hits_total"] > hits
        assert r.exists(ver_key(user))
        # no stale reads: every list equals the uncached read
        for u in users:
            for path in (f"/profiles/{u}/watchlist", f"/profiles/{u}/watchlist?limit=2",
                         f"/profiles/{u}/history"):
                assert a.get(path, u).content == uncached.get(path, u).content
        _check_cache_matches(stack, users, uncached)
        out = a.proc.output()
        assert out.count("redis unreachable") == 1, out[-3000:]
    finally:
        stop.set()
        if redis_stopped:
            redis_ctl(stack, "redis-start")
        assert a.stop() == 0


def test_redis_paused_invalidations_are_replayed(stack, uncached):
    """Redis alive but not answering (CLIENT PAUSE longer than the command timeout): a write's
    invalidation times out; the write still succeeds and nothing stale is served afterwards,
    even though Redis kept the old page."""
    a = start_api(stack, RATE_LIMIT_PER_MINUTE=0)
    try:
        r = rds(stack)
        user = new_user("pause")
        add_watch(a, user, "old")
        path = f"/profiles/{user}/watchlist"
        warm(a, stack, user, path, wl_key(user), field())
        pause_redis(stack, 1500)
        t0 = time.monotonic()
        resp = a.post(path, user, {"videoId": "new"})
        assert resp.status_code == 201
        assert time.monotonic() - t0 < 1.4  # the command timeout, not the pause, bounds it
        assert video_ids(a.get(path, user)) == ["new", "old"]  # bypassing the cache
        time.sleep(1.7)  # pause over

        def replayed():
            # the next cache operation once Redis is back replays the queued invalidation
            assert video_ids(a.get(path, user)) == ["new", "old"]
            m = metrics(a)
            return m["profile_api_cache_pending_invalidations"] == 0 and m["profile_api_redis_up"] == 1
        wait_for(replayed, 15, 0.1, what="replay")
        assert video_ids(a.get(path, user)) == ["new", "old"]
        cached = r.hget(wl_key(user), field())
        assert cached is None or b'"new"' in cached
        assert _check_cache_matches(stack, [user], uncached) >= 0
    finally:
        unpause_redis(stack)
        assert a.stop() == 0


def test_client_gone_while_a_redis_step_is_pending(stack):
    """Requests whose client disconnects while their rate-limit check, cache lookup or
    invalidation waits on a paused Redis: the late callbacks find the request gone (the wait
    is detached), nothing crashes (run it under ASan) and the server keeps serving."""
    import socket
    a = start_api(stack, RATE_LIMIT_PER_MINUTE=100000)
    try:
        user = new_user("gone")
        add_watch(a, user, "v1")
        tok = token(user)
        r = rds(stack)
        pause_redis(stack, 600)
        socks = []
        for i in range(20):
            s = socket.create_connection(("127.0.0.1", a.port), timeout=5)
            if i % 2 == 0:
                req = (f"GET /profiles/{user}/watchlist HTTP/1.1\r\nHost: x\r\n"
                       f"Authorization: Bearer {tok}\r\n\r\n")
            else:
                body = '{"videoId":"v%d"}' % i
                req = (f"POST /profiles/{user}/watchlist HTTP/1.1\r\nHost: x\r\n"
                       f"Authorization: Bearer {tok}\r\nContent-Type: application/json\r\n"
                       f"Content-Length: {len(body)}\r\n\r\n{body}")
            s.sendall(req.encode())
            socks.append(s)
        time.sleep(0.1)
        for s in socks:
            s.close()
        time.sleep(1.2)
        resp = a.get(f"/profiles/{user}/watchlist", user)
        assert resp.status_code == 200
        assert a.proc.proc.poll() is None
    finally:
        unpause_redis(stack)
        assert a.stop() == 0, a.proc.output()[-3000:]
