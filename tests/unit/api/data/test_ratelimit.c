/*
 * Tests api/data/ratelimit.c: header formatting, local GCRA, and checks through a real redis-server
 * (budget, countdown, other callers, auth failures, fail open with the local stand-in).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <setjmp.h>
#include <cmocka.h>

#include "api/data/ratelimit.h"
#include "tests/unit/support/redis_test.h"

static rt_server_t srv;
static h2o_evloop_t *loop;
static redis_client_t *client;
static ratelimit_t *rl;

typedef struct st_got_t {
    int done;
    ratelimit_result_t res;
} got_t;

static void on_result(const ratelimit_result_t *res, void *ud)
{
    got_t *g = ud;
    g->done++;
    g->res = *res;
}

/* Runs one check to completion, whichever way it answers. */
static ratelimit_result_t check(const char *subject, bool auth)
{
    got_t g = {0};
    ratelimit_status_t st = auth ? ratelimit_auth_failure(rl, subject, &g.res, on_result, &g)
                                 : ratelimit_check(rl, subject, &g.res, on_result, &g);
    if (st == RATELIMIT_PENDING) {
        assert_int_equal(g.done, 0);
        uint64_t end = h2o_now(loop) + 2000;
        while (g.done == 0 && h2o_now(loop) < end)
            h2o_evloop_run(loop, 10);
        assert_int_equal(g.done, 1);
    }
    return g.res;
}

static bool wait_up(int ms)
{
    uint64_t end = h2o_now(loop) + (uint64_t)ms;
    while (!redis_client_is_up(client) && h2o_now(loop) < end)
        h2o_evloop_run(loop, 10);
    return redis_client_is_up(client);
}

static int setup(void **state)
{
    char url[128], err[128];
    loop = h2o_evloop_create();
    if (rt_server_start(&srv) != 0)
        return -1;
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d/0", srv.port);
    redis_client_config_t cfg = {
        .url = url, .command_timeout_ms = 200, .backoff_min_ms = 20, .backoff_max_ms = 100};
    client = redis_client_create(loop, &cfg, err, sizeof(err));
    ratelimit_config_t rc = {.limit_per_minute = 5, .auth_failure_limit_per_minute = 3};
    ratelimit_global_init(&rc);
    rl = ratelimit_create(client);
    return client != NULL && wait_up(2000) ? 0 : -1;
}

static int teardown(void **state)
{
    redis_client_destroy(client);
    ratelimit_destroy(rl);
    ratelimit_global_dispose();
    h2o_evloop_destroy(loop);
    rt_server_destroy(&srv);
    return 0;
}

static void test_headers(void **state)
{
    char buf[64];
    assert_int_equal(ratelimit_format_policy(buf, sizeof(buf), 200), 17);
    assert_string_equal(buf, "\"user\";q=200;w=60");
    ratelimit_result_t r = {.remaining = 17, .reset_seconds = 5};
    ratelimit_format_header(buf, sizeof(buf), &r);
    assert_string_equal(buf, "\"user\";r=17;t=5");
    assert_int_equal(ratelimit_format_header(buf, 5, &r), 0);
    assert_string_equal(buf, "");
}

static void test_local_gcra(void **state)
{
    double tat = 0, now = 1e12;
    ratelimit_result_t r;
    for (int i = 0; i < 200; i++) {
        ratelimit_gcra(&tat, now, 200, 60, &r);
        assert_true(r.allowed);
        assert_int_equal(r.remaining, 199 - i);
    }
    ratelimit_gcra(&tat, now, 200, 60, &r);
    assert_false(r.allowed);
    assert_int_equal(r.retry_after_seconds, 1);
    assert_int_equal(r.reset_seconds, 60);
    ratelimit_gcra(&tat, now + 300000, 200, 60, &r);
    assert_true(r.allowed);
}

static void test_budget_countdown_and_isolation(void **state)
{
    for (int i = 0; i < 5; i++) {
        ratelimit_result_t r = check("alice", false);
        assert_true(r.allowed);
        assert_false(r.degraded);
        assert_int_equal(r.limit, 5);
        assert_int_equal(r.remaining, 4 - i);
    }
    ratelimit_result_t r = check("alice", false);
    assert_false(r.allowed);
    assert_int_equal(r.retry_after_seconds, 12);
    assert_int_equal(r.remaining, 0);
    r = check("bob", false);
    assert_true(r.allowed);
    assert_int_equal(r.remaining, 4);
    const ratelimit_stats_t *st = ratelimit_stats(rl);
    assert_int_equal(st->checks, 7);
    assert_int_equal(st->denied, 1);
    assert_int_equal(st->degraded, 0);
}

/* Checks issued in the same loop iteration go to Redis as ONE script call (every caller of
 * the iteration in it) and still get one exact decision each, in arrival order. */
static void test_same_iteration_checks_share_one_call(void **state)
{
    enum { N = 8 };
    got_t g[N];
    redis_client_stats_t before, after;
    redis_client_get_stats(client, &before);
    memset(g, 0, sizeof(g));
    for (int i = 0; i < N; i++)
        assert_int_equal(ratelimit_check(rl, "frank", &g[i].res, on_result, &g[i]),
                         RATELIMIT_PENDING);
    got_t other = {0};
    assert_int_equal(ratelimit_check(rl, "grace", &other.res, on_result, &other),
                     RATELIMIT_PENDING);
    uint64_t end = h2o_now(loop) + 2000;
    while ((g[N - 1].done == 0 || other.done == 0) && h2o_now(loop) < end)
        h2o_evloop_run(loop, 10);
    for (int i = 0; i < N; i++) {
        assert_int_equal(g[i].done, 1);
        assert_false(g[i].res.degraded);
        if (i < 5) { /* limit 5: the first five pass, counting down */
            assert_true(g[i].res.allowed);
            assert_int_equal(g[i].res.remaining, 4 - i);
            assert_int_equal(g[i].res.retry_after_seconds, 0);
        } else {
            assert_false(g[i].res.allowed);
            assert_int_equal(g[i].res.remaining, 0);
            assert_int_equal(g[i].res.retry_after_seconds, 12);
        }
    }
    assert_true(other.res.allowed);
    assert_int_equal(other.res.remaining, 4);
    redis_client_get_stats(client, &after);
    assert_int_equal(after.commands - before.commands, 1); /* both callers in one call */
    /* the next iteration's check sees the budget the batch used */
    ratelimit_result_t r = check("frank", false);
    assert_false(r.allowed);
}

static void test_auth_failures_per_address(void **state)
{
    for (int i = 0; i < 3; i++)
        assert_true(check("10.0.0.1", true).allowed);
    ratelimit_result_t r = check("10.0.0.1", true);
    assert_false(r.allowed);
    assert_int_equal(r.retry_after_seconds, 20);
    assert_true(check("10.0.0.2", true).allowed);
    /* separate from the callers' budget even for the same string */
    assert_true(check("10.0.0.1", false).allowed);
    assert_int_equal(ratelimit_stats(rl)->auth_failures_denied, 1);
}

static void test_fail_open_with_local_standin(void **state)
{
    kill(srv.pid, SIGSTOP);
    /* the first check waits for the command timeout, then decides locally */
    ratelimit_result_t r = check("carol", false);
    assert_true(r.allowed);
    assert_true(r.degraded);
    assert_false(redis_client_is_up(client));
    /* now answered at once, by the per-process stand-in with the same budget */
    int allowed = 1;
    for (int i = 0; i < 10; i++) {
        got_t g = {0};
        assert_int_equal(ratelimit_check(rl, "carol", &g.res, on_result, &g), RATELIMIT_DONE);
        assert_true(g.res.degraded);
        allowed += g.res.allowed;
    }
    assert_int_equal(allowed, 5);
    assert_true(ratelimit_stats(rl)->local_denied >= 6);
    kill(srv.pid, SIGCONT);
    assert_true(wait_up(3000));
    r = check("dave", false);
    assert_true(r.allowed);
    assert_false(r.degraded);
}

static void test_off(void **state)
{
    ratelimit_config_t rc = {.limit_per_minute = 0, .auth_failure_limit_per_minute = 0};
    ratelimit_global_init(&rc);
    got_t g = {0};
    assert_int_equal(ratelimit_check(rl, "erin", &g.res, on_result, &g), RATELIMIT_DONE);
    assert_true(g.res.allowed);
    assert_false(ratelimit_enabled());
    assert_int_equal(ratelimit_auth_failure(rl, "1.2.3.4", &g.res, on_result, &g), RATELIMIT_DONE);
    assert_true(g.res.allowed);
    assert_int_equal(g.done, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_headers),
        cmocka_unit_test(test_local_gcra),
        cmocka_unit_test(test_budget_countdown_and_isolation),
        cmocka_unit_test(test_same_iteration_checks_share_one_call),
        cmocka_unit_test(test_auth_failures_per_address),
        cmocka_unit_test(test_fail_open_with_local_standin),
        cmocka_unit_test(test_off),
    };
    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests_name("ratelimit", tests, setup, teardown);
}
