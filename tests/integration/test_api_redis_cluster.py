"""profile-api with REDIS_MODE=cluster against the stack's Redis Cluster (3 masters and 3
replicas from redis-server, tools/stack.sh with STACK_REDIS_CLUSTER=1; docs/cache.md,
docs/operations.md): users spread over every master are cached and rate limited through Redis,
and a master killed under load (SIGKILL; its replica is promoted by the cluster after
cluster-node-timeout, 2 s here) costs no 5xx, leaves no stale page, and once the cluster has
healed the limiter is shared again between two API processes. The recovery time is printed.
"""
import os
import random
import signal
import subprocess
import threading
import time

import pytest
import redis
import requests

import support
from api_helpers import metrics, new_user, start_api

# per minute: high enough that the load (about 20 requests/s per user) never exhausts a user's
# budget during the test, low enough that two processes counting on their own (2 x LIMIT) and
# sharing (LIMIT plus 10 tokens/s given back) are far apart in the limiter check
LIMIT = 600


def wait_for(pred, timeout, interval=0.1, what="condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def cstack(stack):
    return support.stack_for_redis_mode(stack, "cluster")


@pytest.fixture(scope="module")
def uncached(stack):
    """An API whose Redis is unreachable: every read comes from PostgreSQL."""
    a = start_api(stack, RATE_LIMIT_PER_MINUTE=0, REDIS_URL="redis://127.0.0.1:1/0")
    yield a
    assert a.stop() == 0


def ver_key(user):
    return f"pc:{{{user}}}:ver"


def users_on_every_master(rc, n_per_master):
    """Users whose keys lie on each master: {master port: [user, ...]}."""
    by = {}
    while len(by) < 3 or min(len(v) for v in by.values()) < n_per_master:
        u = new_user("cl")
        port = rc.get_node_from_key(ver_key(u)).port
        if len(by.get(port, [])) < n_per_master:
            by.setdefault(port, []).append(u)
    return by


def cluster_ok(ports):
    for p in ports:
        try:
            info = redis.Redis(host="127.0.0.1", port=int(p), socket_timeout=1).cluster("info")
        except redis.RedisError:
            continue
        if info.get("cluster_state") != "ok":
            return False
    return True


def test_cache_and_limiter_on_every_master(cstack):
    rc = support.redis_client(cstack)
    by = users_on_every_master(rc, 4)
    a = start_api(cstack, RATE_LIMIT_PER_MINUTE=LIMIT)
    try:
        for users in by.values():
            for u in users:
                assert a.post(f"/profiles/{u}/watchlist", u, {"videoId": "v1"}).status_code == 201
                for _ in range(3):
                    assert a.get(f"/profiles/{u}/watchlist", u).status_code == 200
        m = metrics(a)
        assert m["profile_api_cache_fills_total"] >= 12
        assert m["profile_api_cache_hits_total"] >= 24
        assert m["profile_api_cache_errors_total"] == 0
        assert m["profile_api_cache_pending_invalidations"] == 0
        assert m["profile_api_ratelimit_degraded_total"] == 0
        assert m["profile_api_redis_error_replies_total"] == 0
        for users in by.values():
            for u in users:
                assert rc.exists(ver_key(u))
        # concurrent reads of many users: the version checks of pages held locally leave as
        # one MGET per slot (never CROSSSLOT) and are served from the local copies
        everyone = [u for us in by.values() for u in us]
        codes, lock = [], threading.Lock()

        def reader(chunk):
            s = requests.Session()
            for _ in range(5):
                for u in chunk:
                    c = a.get(f"/profiles/{u}/watchlist", u, session=s).status_code
                    with lock:
                        codes.append(c)
        threads = [threading.Thread(target=reader, args=(everyone[i::6],)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert codes.count(200) == len(codes) == 5 * len(everyone)
        m2 = metrics(a)
        assert m2["profile_api_cache_local_hits_total"] > m["profile_api_cache_local_hits_total"]
        assert m2["profile_api_cache_errors_total"] == 0
        assert m2["profile_api_redis_error_replies_total"] == 0
        out = a.proc.output()
        assert "MOVED" not in out and "CROSSSLOT" not in out
    finally:
        assert a.stop() == 0


def kill_node(cstack, port):
    """SIGKILL to the redis-server of our stack's cluster node on `port` (its pid file)."""
    pid = int(open(os.path.join(cstack["STACK_DIR"], "redis-cluster", f"{port}.pid")).read())
    with open(f"/proc/{pid}/comm") as f:
        assert f.read().strip() == "redis-server"
    os.kill(pid, signal.SIGKILL)


def restart_node(cstack, port):
    subprocess.run([str(support.REPO / "tools" / "stack.sh"), "redis-cluster-node-start",
                    cstack["STACK_DIR"], str(port)], check=True, capture_output=True, timeout=60)


def limiter_allowed(a, b, user, n):
    """n requests of `user` alternating between two API processes: how many passed."""
    ok = 0
    for i in range(n):
        api = a if i % 2 == 0 else b
        code = api.get(f"/profiles/{user}/watchlist", user).status_code
        assert code in (200, 429), code
        ok += code == 200
    return ok


def all_nodes_running(cstack):
    """Starts again any node of our cluster that a failed earlier run left stopped."""
    ports = cstack["REDIS_CLUSTER_PORTS"].split(",")
    for p in ports:
        try:
            redis.Redis(host="127.0.0.1", port=int(p), socket_timeout=1).ping()
        except redis.RedisError:
            restart_node(cstack, p)
    wait_for(lambda: cluster_ok(ports), 30, what="cluster ok")


def master_with_replica(rc, masters):
    """One of `masters` (ports) that has a replica in sync, so that it can fail over."""
    for port in sorted(masters):
        info = redis.Redis(host="127.0.0.1", port=port, socket_timeout=2).info("replication")
        if any(k.startswith("slave") and isinstance(v, dict) and v.get("state") == "online"
               for k, v in info.items()):
            return port
    raise AssertionError("no master has a replica in sync")


def test_master_killed_under_load(cstack, uncached, capsys):
    all_nodes_running(cstack)
    rc = support.redis_client(cstack)
    by = users_on_every_master(rc, 4)
    victim = master_with_replica(rc, by)
    users = [u for us in by.values() for u in us]
    ports = cstack["REDIS_CLUSTER_PORTS"].split(",")
    a = start_api(cstack, RATE_LIMIT_PER_MINUTE=LIMIT)
    b = start_api(cstack, RATE_LIMIT_PER_MINUTE=LIMIT)
    for u in users:
        assert a.post(f"/profiles/{u}/watchlist", u, {"videoId": "v0"}).status_code == 201
    stop = threading.Event()
    statuses = []
    lock = threading.Lock()

    def load(seed):
        rng = random.Random(seed)
        s = requests.Session()
        while not stop.is_set():
            u = rng.choice(users)
            api = rng.choice((a, b))
            try:
                if rng.random() < 0.3:
                    resp = api.post(f"/profiles/{u}/watchlist", u,
                                    {"videoId": f"v{rng.randrange(40)}"}, session=s)
                else:
                    resp = api.get(f"/profiles/{u}/watchlist?limit={rng.choice([5, 50])}", u,
                                   session=s)
                code = resp.status_code
            except requests.RequestException as e:
                code = repr(e)
            with lock:
                statuses.append(code)
            time.sleep(0.005)

    threads = [threading.Thread(target=load, args=(i,)) for i in range(4)]
    killed = False
    try:
        for t in threads:
            t.start()
        time.sleep(1.0)
        kill_node(cstack, victim)
        killed = True
        t_kill = time.monotonic()
        wait_for(lambda: metrics(a)["profile_api_redis_up"] == 0, 10, what="master seen down")
        # healed: the replica took the slots over and both processes route to it
        wait_for(lambda: metrics(a)["profile_api_redis_up"] == 1
                 and metrics(b)["profile_api_redis_up"] == 1, 30, what="failover")
        recovery = time.monotonic() - t_kill
        time.sleep(1.0)  # load on the healed cluster
        stop.set()
        for t in threads:
            t.join(30)
        with capsys.disabled():
            print(f"\n[redis cluster] master :{victim} killed under load; the API routed to the "
                  f"promoted replica after {recovery:.1f} s ({len(statuses)} requests)")
        bad = [s for s in statuses if not isinstance(s, int) or s >= 500]
        assert not bad, bad[:5]
        assert statuses.count(200) + statuses.count(201) > 0
        # queued invalidations of the victim's users are replayed on the new master
        for api in (a, b):
            wait_for(lambda: api.get(f"/profiles/{users[0]}/watchlist", users[0]).status_code
                     == 200 and metrics(api)["profile_api_cache_pending_invalidations"] == 0,
                     15, what="replayed invalidations")
        # no stale page: each process's (cached) answer equals PostgreSQL's
        for u in users:
            for path in (f"/profiles/{u}/watchlist", f"/profiles/{u}/watchlist?limit=5"):
                want = uncached.get(path, u).content
                for api in (a, b):
                    assert api.get(path, u).content == want, (u, path)
        # caching works again for the victim's users: a second read hits
        u = by[victim][0]
        hits = metrics(a)["profile_api_cache_hits_total"]
        a.get(f"/profiles/{u}/watchlist?limit=3", u)
        a.get(f"/profiles/{u}/watchlist?limit=3", u)
        assert metrics(a)["profile_api_cache_hits_total"] > hits
        # the limiter is shared again: a fresh user on the promoted master, requests alternating
        # between the two processes, passes the limit once (plus what GCRA gives back meanwhile),
        # not once per process
        rc = support.redis_client(cstack)
        fresh = new_user("clrl")
        while rc.get_node_from_key(f"rl:{{{fresh}}}").port == victim or \
                rc.get_node_from_key(f"rl:{{{fresh}}}").port not in \
                [n.port for n in rc.get_primaries()]:
            fresh = new_user("clrl")
        degraded = metrics(a)["profile_api_ratelimit_degraded_total"] + \
            metrics(b)["profile_api_ratelimit_degraded_total"]
        t0 = time.monotonic()
        allowed = limiter_allowed(a, b, fresh, 2 * LIMIT)
        refill = (time.monotonic() - t0) * LIMIT / 60.0
        assert LIMIT <= allowed <= LIMIT + refill + 1, (allowed, refill)
        assert metrics(a)["profile_api_ratelimit_degraded_total"] + \
            metrics(b)["profile_api_ratelimit_degraded_total"] == degraded
        # errors counted; logged once per kind, not per failed command
        lost = [metrics(api) for api in (a, b)]
        assert sum(m["profile_api_redis_disconnects_total"] for m in lost) >= 2  # both processes
        # meanwhile the victim's users were served without Redis: invalidations queued for
        # replay, limiter decisions taken locally
        assert sum(m["profile_api_cache_invalidation_failures_total"] for m in lost) > 0
        assert sum(m["profile_api_ratelimit_degraded_total"] for m in lost) > 0
        for api in (a, b):
            warns = [ln for ln in api.proc.output().splitlines()
                     if '"level":"warn"' in ln and '"module":"redis"' in ln]
            with capsys.disabled():
                print(f"[redis cluster] :{api.port} logged {len(warns)} redis warnings")
            assert len(warns) <= 4, warns
    finally:
        stop.set()
        if killed:
            restart_node(cstack, victim)  # rejoins as a replica of the promoted master
            wait_for(lambda: cluster_ok(ports), 30, what="cluster ok again")
        for api in (a, b):
            assert api.stop() == 0, api.proc.output()[-3000:]
