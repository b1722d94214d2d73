/*
 * Tests api/data/listcache.c against a real redis-server: hit/miss/fill/invalidate, the stale-fill
 * race made deterministic by the fill-delay test hook, and invalidations replayed after an
 * outage (redis SIGSTOPped, so its data survives) with the cache bypassed meanwhile. Every test
 * runs twice: without local copies of pages and with them (api/data/localcache.h), where the same
 * outcomes must hold; one more test covers what only the local copies do.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "api/data/listcache.h"
#include "tests/unit/support/redis_test.h"

static rt_server_t srv;
static h2o_evloop_t *loop;
static redis_client_t *client;
static listcache_t *lc;
static bool local_copies; /* the group running */

typedef struct st_got_t {
    int done;
    bool hit;
    char value[256];
} got_t;

static void on_get(const char *value, size_t len, void *ud)
{
    got_t *g = ud;
    g->done++;
    g->hit = value != NULL;
    if (value != NULL)
        snprintf(g->value, sizeof(g->value), "%.*s", (int)len, value);
}

static void run_for(int ms)
{
    uint64_t end = h2o_now(loop) + (uint64_t)ms;
    while (h2o_now(loop) < end)
        h2o_evloop_run(loop, 5);
}

/* Returns the cached value ("" + hit=false for a miss). */
static got_t get(const char *user, const char *field)
{
    got_t g = {0};
    if (listcache_get(lc, user, CACHE_LIST_WATCHLIST, field, on_get, &g) == LISTCACHE_PENDING) {
        uint64_t end = h2o_now(loop) + 2000;
        while (g.done == 0 && h2o_now(loop) < end)
            h2o_evloop_run(loop, 5);
        assert_int_equal(g.done, 1);
    }
    return g;
}

static void settle(void)
{
    run_for(30); /* fire-and-forget fills and invalidations reach Redis */
}

static bool wait_up(int ms)
{
    uint64_t end = h2o_now(loop) + (uint64_t)ms;
    while (!redis_client_is_up(client) && h2o_now(loop) < end)
        h2o_evloop_run(loop, 10);
    return redis_client_is_up(client);
}

static int open_cache(unsigned fill_delay_ms)
{
    char url[128], err[128];
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d/0", srv.port);
    redis_client_config_t cfg = {
        .url = url, .command_timeout_ms = 200, .backoff_min_ms = 20, .backoff_max_ms = 100};
    client = redis_client_create(loop, &cfg, err, sizeof(err));
    assert_int_equal(listcache_set_fill_delay_ms(fill_delay_ms), 0);
    lc = listcache_create(client);
    return wait_up(2000) ? 0 : -1;
}

static void close_cache(void)
{
    redis_client_destroy(client);
    listcache_destroy(lc);
    client = NULL;
    lc = NULL;
}

static int setup(void **state)
{
    loop = h2o_evloop_create();
    listcache_global_init(300, local_copies ? 1u << 20 : 0);
    return rt_server_start(&srv);
}

static int teardown(void **state)
{
    h2o_evloop_destroy(loop);
    rt_server_destroy(&srv);
    listcache_global_dispose();
    return 0;
}

static void redis_do(const char *cmd, const char *a, const char *b, const char *c)
{
    rt_conn_t conn;
    assert_int_equal(rt_conn_open(&conn, srv.port), 0);
    rt_reply_t *r = c != NULL   ? RT_CMD(&conn, cmd, a, b, c)
                    : b != NULL ? RT_CMD(&conn, cmd, a, b)
                    : a != NULL ? RT_CMD(&conn, cmd, a)
                                : RT_CMD(&conn, cmd);
    assert_non_null(r);
    rt_reply_free(r);
    rt_conn_close(&conn);
}

static int each_setup(void **state)
{
    rt_conn_t c;
    if (rt_conn_open(&c, srv.port) != 0)
        return -1;
    rt_reply_free(RT_CMD(&c, "FLUSHALL"));
    rt_conn_close(&c);
    return open_cache(0);
}

static int each_teardown(void **state)
{
    kill(srv.pid, SIGCONT); /* a test that failed while Redis was stopped */
    close_cache();
    return 0;
}

static void test_field(void **state)
{
    char f[64];
    assert_int_equal(listcache_field(f, sizeof(f), 50, NULL, NULL), 10);
    assert_string_equal(f, "l=50|v=|c=");
    listcache_field(f, sizeof(f), 10, "continue", "abc");
    assert_string_equal(f, "l=10|v=continue|c=abc");
    assert_int_equal(listcache_field(f, 8, 10, "continue", "abc"), 0);
}

static void test_miss_fill_hit_invalidate(void **state)
{
    got_t g = get("u1", "l=50|v=|c=");
    assert_false(g.hit);
    listcache_fill(lc, "u1", CACHE_LIST_WATCHLIST, "l=50|v=|c=", "{\"items\":[1]}", 13, 4);
    settle();
    g = get("u1", "l=50|v=|c=");
    assert_true(g.hit);
    assert_string_equal(g.value, "{\"items\":[1]}");
    assert_false(get("u1", "l=10|v=|c=").hit); /* another variant */
    got_t done = {0};
    assert_int_equal(listcache_invalidate(lc, "u1", 5, NULL, NULL), LISTCACHE_PENDING);
    (void)done;
    settle();
    assert_false(get("u1", "l=50|v=|c=").hit);
    /* a fill read before the write is refused */
    listcache_fill(lc, "u1", CACHE_LIST_WATCHLIST, "l=50|v=|c=", "{\"items\":[1]}", 13, 4);
    settle();
    assert_false(get("u1", "l=50|v=|c=").hit);
    const listcache_stats_t *st = listcache_stats(lc);
    assert_int_equal(st->hits, 1);
    assert_int_equal(st->misses, 4);
    assert_int_equal(st->fills, 1);
    assert_int_equal(st->fill_rejections, 1);
    assert_int_equal(st->invalidations, 1);
    assert_int_equal(st->errors, 0);
}

/*
 * The race with the test hook: the reader's fill (rows at version 1) is held 300 ms; the
 * writer commits version 2 and invalidates meanwhile; the held fill is then refused.
 */
static void test_race_with_fill_delay_hook(void **state)
{
    close_cache();
    assert_int_equal(open_cache(300), 0);
    listcache_fill(lc, "u2", CACHE_LIST_HISTORY, "l=50|v=|c=", "[old]", 5, 1);
    run_for(50);
    assert_int_equal(listcache_stats(lc)->fills, 0); /* still held */
    assert_int_equal(listcache_invalidate(lc, "u2", 2, NULL, NULL), LISTCACHE_PENDING);
    run_for(400);
    assert_int_equal(listcache_stats(lc)->fill_rejections, 1);
    assert_int_equal(listcache_stats(lc)->fills, 0);
    got_t g = {0};
    assert_int_equal(listcache_get(lc, "u2", CACHE_LIST_HISTORY, "l=50|v=|c=", on_get, &g),
                     LISTCACHE_PENDING);
    run_for(30);
    assert_int_equal(g.done, 1);
    assert_false(g.hit);
    close_cache();
    assert_int_equal(open_cache(0), 0);
}

static void test_invalidation_replayed_after_outage(void **state)
{
    listcache_fill(lc, "u3", CACHE_LIST_WATCHLIST, "f", "[v1]", 4, 1);
    settle();
    assert_true(get("u3", "f").hit);
    kill(srv.pid, SIGSTOP);    /* the data stays: like a network partition */
    got_t g1 = get("u3", "f"); /* times out: a miss, no error for the client */
    assert_false(g1.hit);
    assert_false(redis_client_is_up(client));
    /* a write commits version 2 while Redis is unreachable */
    assert_int_equal(listcache_invalidate(lc, "u3", 2, NULL, NULL), LISTCACHE_DONE);
    assert_int_equal(listcache_pending_invalidations(), 1);
    kill(srv.pid, SIGCONT);
    assert_true(wait_up(3000));
    /* the stale [v1] is still in Redis, but this process bypasses the cache until replayed */
    got_t g2 = get("u3", "f");
    assert_false(g2.hit);
    settle();
    assert_int_equal(listcache_pending_invalidations(), 0);
    got_t g3 = get("u3", "f");
    assert_false(g3.hit); /* deleted by the replay, not served stale */
    listcache_fill(lc, "u3", CACHE_LIST_WATCHLIST, "f", "[v2]", 4, 2);
    settle();
    got_t g4 = get("u3", "f");
    assert_true(g4.hit);
    assert_string_equal(g4.value, "[v2]");
    assert_true(listcache_stats(lc)->bypassed >= 1);
}

/*
 * One user's invalidation that Redis refuses (its version key made a hash: WRONGTYPE in the
 * script) is queued for that user only: another user's pages are still served from the cache,
 * while the first user's are bypassed until the replay succeeds.
 */
static void test_pending_invalidation_is_per_user(void **state)
{
    listcache_fill(lc, "u5", CACHE_LIST_WATCHLIST, "f", "[a1]", 4, 1);
    listcache_fill(lc, "u6", CACHE_LIST_WATCHLIST, "f", "[b1]", 4, 1);
    settle();
    assert_true(get("u5", "f").hit);
    redis_do("DEL", "pc:{u5}:ver", NULL, NULL);
    redis_do("HSET", "pc:{u5}:ver", "x", "y");
    assert_int_equal(listcache_invalidate(lc, "u5", 2, NULL, NULL), LISTCACHE_PENDING);
    settle();
    assert_int_equal(listcache_pending_invalidations(), 1);
    uint64_t bypassed = listcache_stats(lc)->bypassed;
    got_t other = get("u6", "f");
    assert_true(other.hit); /* not bypassed: u5's trouble is u5's */
    assert_string_equal(other.value, "[b1]");
    assert_false(get("u5", "f").hit); /* bypassed, although "[a1]" is still in Redis */
    assert_int_equal(listcache_stats(lc)->bypassed, bypassed + 1);
    redis_do("DEL", "pc:{u5}:ver", NULL, NULL);
    uint64_t end = h2o_now(loop) + 3000; /* the replay is retried, and now succeeds */
    while (listcache_pending_invalidations() != 0 && h2o_now(loop) < end) {
        (void)get("u6", "f"); /* any call replays */
        run_for(50);
    }
    assert_int_equal(listcache_pending_invalidations(), 0);
    assert_false(get("u5", "f").hit); /* dropped by the replay, not served stale */
    listcache_fill(lc, "u5", CACHE_LIST_WATCHLIST, "f", "[a2]", 4, 2);
    settle();
    got_t g = get("u5", "f");
    assert_true(g.hit);
    assert_string_equal(g.value, "[a2]");
}

/*
 * A page held locally is served only after Redis confirms its version: a newer version filled
 * by another process replaces it, and with the version gone (Redis restarted empty) it is not
 * served at all.
 */
static void test_local_copy_follows_redis_version(void **state)
{
    char kv[CACHE_KEY_MAX], kl[CACHE_KEY_MAX];
    cache_key_version(kv, "u4");
    cache_key_list(kl, "u4", CACHE_LIST_WATCHLIST);
    listcache_fill(lc, "u4", CACHE_LIST_WATCHLIST, "f", "[four]", 6, 4);
    settle();
    got_t g = get("u4", "f");
    assert_true(g.hit);
    assert_string_equal(g.value, "[four]");
    assert_int_equal(listcache_stats(lc)->local_hits, local_copies ? 1 : 0);
    /* another process wrote (version 7) and filled the page */
    redis_do("SET", kv, "7", NULL);
    redis_do("DEL", kl, NULL, NULL);
    redis_do("HSET", kl, "f", "[seven]");
    g = get("u4", "f");
    assert_true(g.hit);
    assert_string_equal(g.value, "[seven]");
    assert_int_equal(listcache_stats(lc)->local_hits, local_copies ? 1 : 0);
    g = get("u4", "f"); /* now held locally at version 7 */
    assert_true(g.hit);
    assert_string_equal(g.value, "[seven]");
    assert_int_equal(listcache_stats(lc)->local_hits, local_copies ? 2 : 0);
    /* Redis lost everything: no version, no page; the local copy must not answer */
    redis_do("FLUSHALL", NULL, NULL, NULL);
    assert_false(get("u4", "f").hit);
    /* a version written back by a later fill at 7 makes the copy good again: same state */
    listcache_fill(lc, "u4", CACHE_LIST_WATCHLIST, "f", "[seven]", 7, 7);
    settle();
    g = get("u4", "f");
    assert_true(g.hit);
    assert_string_equal(g.value, "[seven]");
    assert_int_equal(listcache_stats(lc)->errors, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_field),
        cmocka_unit_test_setup_teardown(test_miss_fill_hit_invalidate, each_setup, each_teardown),
        cmocka_unit_test_setup_teardown(test_race_with_fill_delay_hook, each_setup, each_teardown),
        cmocka_unit_test_setup_teardown(test_invalidation_replayed_after_outage, each_setup,
                                        each_teardown),
        cmocka_unit_test_setup_teardown(test_pending_invalidation_is_per_user, each_setup,
                                        each_teardown),
        cmocka_unit_test_setup_teardown(test_local_copy_follows_redis_version, each_setup,
                                        each_teardown),
    };
    signal(SIGPIPE, SIG_IGN);
    int failed = cmocka_run_group_tests_name("listcache", tests, setup, teardown);
    local_copies = true;
    srv = (rt_server_t){0}; /* a new server, in a new directory */
    failed += cmocka_run_group_tests_name("listcache with local copies", tests, setup, teardown);
    return failed;
}
