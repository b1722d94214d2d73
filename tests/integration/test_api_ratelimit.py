"""profile-api's per-caller rate limit (docs/api.md "Rate limit", docs/cache.md) against the
stack's real redis-server: exactly the limit passes, headers count down on every authenticated
response (errors included), 429 problem+json with Retry-After, callers are independent, replicas
share one budget, 50 concurrent requests at the last token let exactly one through, and
RATE_LIMIT_PER_MINUTE=0 turns it all off. Small limits keep it fast: with 5 per minute a token
comes back every 12 s, far longer than each test's burst.
"""
import re
import threading

import pytest
import requests

import support
from api_helpers import assert_problem, metrics, new_user, start_api, token

LIMIT = 5


@pytest.fixture(scope="module", params=support.REDIS_MODES)
def stack(request, stack):
    """Every test of this module runs against a standalone Redis and a Redis Cluster."""
    return support.stack_for_redis_mode(stack, request.param)


def rl_headers(resp):
    """(q, w, r, t) from RateLimit-Policy and RateLimit, or None when absent."""
    pol, cur = resp.headers.get("RateLimit-Policy"), resp.headers.get("RateLimit")
    if pol is None and cur is None:
        return None
    mp = re.fullmatch(r'"user";q=(\d+);w=(\d+)', pol)
    mc = re.fullmatch(r'"user";r=(\d+);t=(\d+)', cur)
    assert mp and mc, (pol, cur)
    return int(mp[1]), int(mp[2]), int(mc[1]), int(mc[2])


@pytest.fixture(scope="module")
def api(stack):
    a = start_api(stack, RATE_LIMIT_PER_MINUTE=LIMIT)
    yield a
    assert a.stop() == 0, a.proc.output()[-3000:]


def test_exactly_the_limit_passes_and_headers_count_down(api):
    user = new_user("rl")
    path = f"/profiles/{user}/watchlist"
    seen = []
    for i in range(LIMIT):
        r = api.get(path, user)
        assert r.status_code == 200, r.text
        q, w, rem, reset = rl_headers(r)
        assert (q, w) == (LIMIT, 60)
        assert 1 <= reset <= 60
        seen.append(rem)
    assert seen == [LIMIT - 1 - i for i in range(LIMIT)]
    r = api.get(path, user)
    assert_problem(r, 429)
    assert 1 <= int(r.headers["Retry-After"]) <= 12
    q, w, rem, reset = rl_headers(r)
    assert (q, w, rem) == (LIMIT, 60, 0)
    # writes count too, and are refused before anything is changed
    r = api.post(path, user, {"videoId": "v1"})
    assert_problem(r, 429)
    other = new_user("other")
    assert api.get(f"/profiles/{other}/watchlist", other).status_code == 200


def test_another_user_is_unaffected(api):
    a, b = new_user("rl"), new_user("rl")
    for _ in range(LIMIT + 2):
        api.get(f"/profiles/{a}/watchlist", a)
    assert api.get(f"/profiles/{a}/watchlist", a).status_code == 429
    r = api.get(f"/profiles/{b}/watchlist", b)
    assert r.status_code == 200
    assert rl_headers(r)[2] == LIMIT - 1


def test_headers_on_error_responses_of_an_authenticated_caller(api):
    user = new_user("rl")
    expected = LIMIT - 1
    for status, resp in (
        (403, lambda: api.get(f"/profiles/{new_user('x')}/watchlist", user)),  # not theirs
        (404, lambda: api.get(f"/profiles/{user}", user)),  # profile never created
        (400, lambda: api.get(f"/profiles/{user}/watchlist?limit=0", user)),
        (415, lambda: api.request("POST", f"/profiles/{user}/watchlist", user, raw=b"{}",
                                  headers={"Content-Type": "text/plain"})),
    ):
        r = resp()
        assert_problem(r, status)
        h = rl_headers(r)
        assert h is not None, (status, dict(r.headers))
        assert h[:3] == (LIMIT, 60, expected), (status, h)
        expected -= 1
    r = api.get(f"/profiles/{user}/watchlist?limit=abc", user)
    assert_problem(r, 400)
    assert rl_headers(r)[2] == 0
    r = api.get(f"/profiles/{user}/watchlist", user)
    assert_problem(r, 429)
    assert rl_headers(r)[2] == 0
    # a failed authentication is not a caller: no RateLimit headers on 401
    r = requests.get(api.url(f"/profiles/{user}/watchlist"),
                     headers={"Authorization": "Bearer nope"}, timeout=5)
    assert r.status_code == 401
    assert rl_headers(r) is None


def test_two_processes_share_one_budget(stack, api):
    other = start_api(stack, RATE_LIMIT_PER_MINUTE=LIMIT)
    try:
        user = new_user("rl")
        path = f"/profiles/{user}/watchlist"
        statuses = [(api if i % 2 == 0 else other).get(path, user).status_code
                    for i in range(LIMIT + 3)]
        assert statuses == [200] * LIMIT + [429] * 3
    finally:
        assert other.stop() == 0


def burst(api, path, tok, n):
    """n requests of one caller released together (each connects first, then all wait at a
    barrier, so the requests leave as close together as possible); their responses."""
    barrier = threading.Barrier(n)
    results = []
    lock = threading.Lock()

    def one():
        s = requests.Session()
        s.get(api.url("/health/live"), timeout=10)
        barrier.wait(timeout=30)
        r = s.get(api.url(path), headers={"Authorization": "Bearer " + tok}, timeout=30)
        with lock:
            results.append(r)

    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(results) == n
    return results


def test_fifty_concurrent_requests_at_the_last_token_let_exactly_one_through(api):
    user = new_user("rl")
    path = f"/profiles/{user}/watchlist"
    for _ in range(LIMIT - 1):
        assert api.get(path, user).status_code == 200
    results = burst(api, path, token(user), 50)
    codes = sorted(r.status_code for r in results)
    assert codes.count(200) == 1 and codes.count(429) == 49, codes
    assert all(int(r.headers["Retry-After"]) >= 1 for r in results if r.status_code == 429)


def test_concurrent_burst_gets_the_budget_once_with_distinct_remaining_counts(api):
    """Requests of one caller arriving together are decided together (one script call per
    event-loop iteration, api/data/ratelimit.c): still exactly LIMIT pass, each with its own
    RateLimit remaining value, and the cache read sent ahead of the decision never answers
    a denied request."""
    user = new_user("rl")
    results = burst(api, f"/profiles/{user}/watchlist", token(user), 30)
    ok = sorted(rl_headers(r)[2] for r in results if r.status_code == 200)
    assert ok == list(range(LIMIT)), [(r.status_code, rl_headers(r)) for r in results]
    denied = [r for r in results if r.status_code != 200]
    assert len(denied) == 30 - LIMIT
    assert all(r.status_code == 429 and rl_headers(r)[2] == 0 and
               r.headers["Content-Type"].startswith("application/problem+json") for r in denied)


def test_limiter_off_sends_no_headers(stack):
    off = start_api(stack, RATE_LIMIT_PER_MINUTE=0)
    try:
        user = new_user("rl")
        for _ in range(LIMIT * 3):
            r = off.get(f"/profiles/{user}/watchlist", user)
            assert r.status_code == 200
            assert "RateLimit" not in r.headers and "RateLimit-Policy" not in r.headers
        r = off.get(f"/profiles/{user}", user)
        assert r.status_code == 404 and "RateLimit" not in r.headers
    finally:
        assert off.stop() == 0


def test_auth_failures_limited_per_address_then_429(stack):
    r0 = support.redis_client(stack)
    r0.delete("rla:{127.0.0.1}")  # this address's budget is shared with other tests
    a = start_api(stack, AUTH_FAILURE_LIMIT_PER_MINUTE=3, RATE_LIMIT_PER_MINUTE=LIMIT)
    try:
        url = a.url("/profiles/u1/watchlist")
        codes = [requests.get(url, headers={"Authorization": "Bearer bad"}, timeout=5).status_code
                 for _ in range(5)]
        assert codes == [401, 401, 401, 429, 429]
        r = requests.get(url, timeout=5)  # no token at all counts as well
        assert_problem(r, 429)
        assert int(r.headers["Retry-After"]) >= 1
        assert "WWW-Authenticate" not in r.headers
        # a valid token from the same address is not affected
        user = new_user("rl")
        assert a.get(f"/profiles/{user}/watchlist", user).status_code == 200
    finally:
        r0.delete("rla:{127.0.0.1}")
        assert a.stop() == 0


def test_many_callers_at_once_are_decided_by_redis(stack):
    """Concurrent requests of many callers are batched into script calls per loop iteration;
    on a Redis Cluster a call carries the callers of one slot only (no CROSSSLOT), so every
    decision comes from Redis: none degraded, no error reply."""
    a = start_api(stack, RATE_LIMIT_PER_MINUTE=LIMIT)
    try:
        users = [new_user("rlm") for _ in range(40)]
        codes = []
        lock = threading.Lock()

        def burst(chunk):
            s = requests.Session()
            for u in chunk:
                for _ in range(3):
                    c = a.get(f"/profiles/{u}/watchlist", u, session=s).status_code
                    with lock:
                        codes.append(c)
        threads = [threading.Thread(target=burst, args=(users[i::20],)) for i in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert codes.count(200) == 120, sorted(set(codes))
        m = metrics(a)
        assert m["profile_api_ratelimit_checks_total"] >= 120
        assert m["profile_api_ratelimit_degraded_total"] == 0
        assert m["profile_api_ratelimit_errors_total"] == 0
        assert m["profile_api_redis_error_replies_total"] == 0
        assert "CROSSSLOT" not in a.proc.output()
    finally:
        assert a.stop() == 0
