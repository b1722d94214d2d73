/*
 * Tests common/cache.c: key shapes, and the three Lua scripts run against a real redis-server
 * started by the test on a free loopback port.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "common/cache.h"
#include "tests/unit/support/redis_test.h"

static rt_server_t srv;
static rt_conn_t conn = {.fd = -1};

/* ---- key builders ---- */

static void test_keys_plain(void **state)
{
    char k[CACHE_KEY_MAX];
    cache_key_list(k, "u42", CACHE_LIST_WATCHLIST);
    assert_string_equal(k, "pc:{u42}:wl");
    cache_key_list(k, "u42", CACHE_LIST_HISTORY);
    assert_string_equal(k, "pc:{u42}:hist");
    cache_key_version(k, "u42");
    assert_string_equal(k, "pc:{u42}:ver");
    cache_key_ratelimit(k, "u42");
    assert_string_equal(k, "rl:{u42}");
    cache_key_auth_failure(k, "127.0.0.1");
    assert_string_equal(k, "rla:{127.0.0.1}");
    cache_key_auth_failure(k, "::1");
    assert_string_equal(k, "rla:{::1}");
}

static void test_keys_longest_id_fits(void **state)
{
    char id[65], k[CACHE_KEY_MAX];
    memset(id, 'a', 64);
    id[64] = '\0';
    cache_key_list(k, id, CACHE_LIST_HISTORY);
    assert_int_equal(strlen(k), 4 + 64 + 6);
    assert_memory_equal(k + 4, id, 64);
}

static void test_keys_unsafe_ids_are_hashed(void **state)
{
    char a[CACHE_KEY_MAX], b[CACHE_KEY_MAX], c[CACHE_KEY_MAX], longid[300];
    memset(longid, 'x', 299);
    longid[299] = '\0';
    cache_key_ratelimit(a, "evil}{x");
    assert_true(strncmp(a, "rl:{#", 5) == 0);
    assert_int_equal(strlen(a), 4 + 33 + 1);
    assert_null(strchr(a + 4, '{'));
    cache_key_ratelimit(b, "evil}{x");
    assert_string_equal(a, b); /* deterministic */
    cache_key_ratelimit(c, "evil}{y");
    assert_string_not_equal(a, c);
    cache_key_version(a, longid);
    assert_true(strlen(a) < CACHE_KEY_MAX);
    assert_string_equal(a + strlen(a) - 4, ":ver");
    cache_key_version(b, "");
    assert_true(strncmp(b, "pc:{#", 5) == 0);
    cache_key_ratelimit(c, "caf\xc3\xa9");
    assert_true(strncmp(c, "rl:{#", 5) == 0);
}

/* ---- scripts against redis-server ---- */

static int setup_server(void **state)
{
    if (rt_server_start(&srv) != 0) {
        fprintf(stderr, "cannot start redis-server\n");
        return -1;
    }
    return rt_conn_open(&conn, srv.port);
}

static int teardown_server(void **state)
{
    rt_conn_close(&conn);
    rt_server_destroy(&srv);
    return 0;
}

static int flush(void **state)
{
    rt_reply_free(RT_CMD(&conn, "FLUSHALL"));
    return 0;
}

static long long int_reply(rt_reply_t *r)
{
    assert_non_null(r);
    if (r->type == '-')
        fail_msg("redis error: %s", r->str);
    assert_int_equal(r->type, ':');
    long long v = r->integer;
    rt_reply_free(r);
    return v;
}

static long long fill(const char *uid, long long version, const char *field, const char *value,
                      int ttl)
{
    char kv[CACHE_KEY_MAX], kl[CACHE_KEY_MAX], ver[32], t[16];
    cache_key_version(kv, uid);
    cache_key_list(kl, uid, CACHE_LIST_WATCHLIST);
    snprintf(ver, sizeof(ver), "%lld", version);
    snprintf(t, sizeof(t), "%d", ttl);
    return int_reply(RT_CMD(&conn, "EVAL", cache_lua_fill, "2", kv, kl, ver, field, value, t));
}

static long long invalidate(const char *uid, long long seq)
{
    char kv[CACHE_KEY_MAX], kw[CACHE_KEY_MAX], kh[CACHE_KEY_MAX], s[32];
    cache_key_version(kv, uid);
    cache_key_list(kw, uid, CACHE_LIST_WATCHLIST);
    cache_key_list(kh, uid, CACHE_LIST_HISTORY);
    snprintf(s, sizeof(s), "%lld", seq);
    return int_reply(RT_CMD(&conn, "EVAL", cache_lua_invalidate, "3", kv, kw, kh, s, "86400"));
}

/* Returns the cached value (malloc'ed) or NULL. */
static char *hget(const char *uid, const char *field)
{
    char kl[CACHE_KEY_MAX];
    cache_key_list(kl, uid, CACHE_LIST_WATCHLIST);
    rt_reply_t *r = RT_CMD(&conn, "HGET", kl, field);
    assert_non_null(r);
    char *v = r->type == '$' && r->len >= 0 ? strdup(r->str) : NULL;
    rt_reply_free(r);
    return v;
}

static long long stored_version(const char *uid)
{
    char kv[CACHE_KEY_MAX];
    cache_key_version(kv, uid);
    rt_reply_t *r = RT_CMD(&conn, "GET", kv);
    long long v = r->type == '$' && r->len >= 0 ? atoll(r->str) : -1;
    rt_reply_free(r);
    return v;
}

static long long ttl_of(const char *key)
{
    return int_reply(RT_CMD(&conn, "TTL", key));
}

static void test_fill_on_empty_stores(void **state)
{
    char kl[CACHE_KEY_MAX], kv[CACHE_KEY_MAX];
    assert_int_equal(fill("u1", 3, "l50", "[A]", 300), 1);
    char *v = hget("u1", "l50");
    assert_string_equal(v, "[A]");
    free(v);
    assert_int_equal(stored_version("u1"), 3);
    cache_key_list(kl, "u1", CACHE_LIST_WATCHLIST);
    cache_key_version(kv, "u1");
    long long t = ttl_of(kl);
    assert_true(t > 290 && t <= 300);
    assert_true(ttl_of(kv) >= CACHE_VERSION_TTL_SECONDS - 5);
    /* a second variant at the same version joins; the hash TTL is not extended */
    assert_int_equal(fill("u1", 3, "l10", "[A10]", 900), 1);
    assert_true(ttl_of(kl) <= 300);
    v = hget("u1", "l50");
    assert_string_equal(v, "[A]");
    free(v);
}

static void test_fill_rejected_when_version_higher(void **state)
{
    assert_int_equal(invalidate("u2", 5), 1);
    assert_int_equal(fill("u2", 4, "l50", "[old]", 300), 0);
    assert_null(hget("u2", "l50"));
    assert_int_equal(stored_version("u2"), 5);
    assert_int_equal(fill("u2", 5, "l50", "[new]", 300), 1);
    char *v = hget("u2", "l50");
    assert_string_equal(v, "[new]");
    free(v);
}

static void test_invalidate_raises_and_deletes(void **state)
{
    assert_int_equal(fill("u3", 1, "l50", "[a]", 300), 1);
    assert_int_equal(invalidate("u3", 2), 1);
    assert_null(hget("u3", "l50"));
    assert_int_equal(stored_version("u3"), 2);
    /* a late (relay) invalidation with a lower sequence never lowers the version */
    assert_int_equal(fill("u3", 2, "l50", "[b]", 300), 1);
    assert_int_equal(invalidate("u3", 1), 1);
    assert_int_equal(stored_version("u3"), 2);
    assert_null(hget("u3", "l50"));
    /* a caller passing a short TTL never shortens the version's life */
    char kv[CACHE_KEY_MAX], kw[CACHE_KEY_MAX];
    cache_key_version(kv, "u3");
    cache_key_list(kw, "u3", CACHE_LIST_WATCHLIST);
    assert_int_equal(int_reply(RT_CMD(&conn, "EVAL", cache_lua_invalidate, "2", kv, kw, "3", "60")),
                     1);
    assert_int_equal(stored_version("u3"), 3);
    assert_true(ttl_of(kv) >= CACHE_VERSION_TTL_SECONDS - 5);
}

/*
 * The classic race, step by step: the reader misses and reads version 7 rows; the writer
 * commits sequence 8 and invalidates; the reader's late fill must be refused.
 */
static void test_stale_fill_race(void **state)
{
    assert_int_equal(fill("u4", 7, "l50", "[v7]", 300), 1); /* warm */
    assert_int_equal(invalidate("u4", 7), 1);               /* cold again */
    /* reader: miss, SELECT ... returns rows + version 7 (snapshot before the write) */
    /* writer: COMMIT (seq 8) then invalidate */
    assert_int_equal(invalidate("u4", 8), 1);
    /* reader: fill with what it read */
    assert_int_equal(fill("u4", 7, "l50", "[v7]", 300), 0);
    assert_null(hget("u4", "l50"));
    /* the writer's invalidation is late instead (after the reader filled): it still wins */
    assert_int_equal(fill("u4", 8, "l50", "[v8]", 300), 1);
    assert_int_equal(invalidate("u4", 9), 1);
    assert_null(hget("u4", "l50"));
}

/* A reader that saw a newer version drops fields filled at an older one. */
static void test_newer_fill_drops_older_fields(void **state)
{
    assert_int_equal(fill("u5", 1, "l50", "[v1]", 300), 1);
    /* write 2 committed, its invalidation not run yet, a reader sees version 2 */
    assert_int_equal(fill("u5", 2, "l10", "[v2]", 300), 1);
    assert_null(hget("u5", "l50"));
    char *v = hget("u5", "l10");
    assert_string_equal(v, "[v2]");
    free(v);
    assert_int_equal(fill("u5", 1, "l50", "[v1]", 300), 0);
}

/* GCRA with an explicit clock. Returns allowed and fills out[0..3]. */
static long long gcra(const char *subj, int limit, int window, long long now_us, long long out[4])
{
    char k[CACHE_KEY_MAX], l[16], w[16], n[32];
    cache_key_ratelimit(k, subj);
    snprintf(l, sizeof(l), "%d", limit);
    snprintf(w, sizeof(w), "%d", window);
    snprintf(n, sizeof(n), "%lld", now_us);
    rt_reply_t *r = RT_CMD(&conn, "EVAL", cache_lua_ratelimit, "1", k, l, w, n);
    assert_non_null(r);
    if (r->type == '-')
        fail_msg("redis error: %s", r->str);
    assert_int_equal(r->type, '*');
    assert_int_equal(r->len, 4);
    for (int i = 0; i < 4; i++)
        out[i] = r->elem[i]->integer;
    rt_reply_free(r);
    return out[0];
}

static void test_gcra_exact_limit_and_countdown(void **state)
{
    long long now = 1764000000000000LL, o[4];
    for (int i = 0; i < 200; i++) {
        assert_int_equal(gcra("alice", 200, 60, now, o), 1);
        assert_int_equal(o[1], 199 - i);
        assert_true(o[2] >= 1 && o[2] <= 60);
        assert_int_equal(o[3], 0);
    }
    assert_int_equal(o[2], 60);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(gcra("alice", 200, 60, now + 1000, o), 0);
        assert_int_equal(o[1], 0);
        assert_int_equal(o[3], 1); /* next token in 0.3 s -> 1 s */
        assert_int_equal(o[2], 60);
    }
    /* another caller is unaffected */
    assert_int_equal(gcra("bob", 200, 60, now + 1000, o), 1);
    assert_int_equal(o[1], 199);
    /* one token back every 300 ms */
    assert_int_equal(gcra("alice", 200, 60, now + 300000, o), 1);
    assert_int_equal(o[1], 0);
    assert_int_equal(gcra("alice", 200, 60, now + 300001, o), 0);
    /* after a whole window the full quota is back, and exactly that */
    int allowed = 0;
    for (int i = 0; i < 250; i++)
        allowed += (int)gcra("alice", 200, 60, now + 60300000, o);
    assert_int_equal(allowed, 200);
}

/* ARGV[4] = n decides n requests at once: the first ones that fit pass, the rest are denied. */
static void test_gcra_batch(void **state)
{
    long long now = 1764000000000000LL;
    char k[CACHE_KEY_MAX];
    cache_key_ratelimit(k, "heidi");
    rt_reply_t *r =
        RT_CMD(&conn, "EVAL", cache_lua_ratelimit, "1", k, "10", "60", "1764000000000000", "7");
    assert_non_null(r);
    assert_int_equal(r->type, '*');
    assert_int_equal(r->elem[0]->integer, 7); /* all seven pass */
    assert_int_equal(r->elem[1]->integer, 3); /* three left after the last */
    assert_int_equal(r->elem[3]->integer, 0);
    rt_reply_free(r);
    r = RT_CMD(&conn, "EVAL", cache_lua_ratelimit, "1", k, "10", "60", "1764000000000000", "5");
    assert_non_null(r);
    assert_int_equal(r->elem[0]->integer, 3); /* three of five fit */
    assert_int_equal(r->elem[1]->integer, 0);
    assert_int_equal(r->elem[3]->integer, 6); /* one token back every 6 s */
    rt_reply_free(r);
    long long o[4];
    assert_int_equal(gcra("heidi", 10, 60, now + 5999999, o), 0);
    assert_int_equal(gcra("heidi", 10, 60, now + 6000000, o), 1);
    /* a count below 1 or not a number is an error, not a silent pass */
    r = RT_CMD(&conn, "EVAL", cache_lua_ratelimit, "1", k, "10", "60", "0", "0");
    assert_non_null(r);
    assert_int_equal(r->type, '-');
    rt_reply_free(r);
    r = RT_CMD(&conn, "EVAL", cache_lua_ratelimit, "1", k, "10", "60", "0", "x");
    assert_non_null(r);
    assert_int_equal(r->type, '-');
    rt_reply_free(r);
}

/* Several callers in one call: four numbers per key, each key with its own limit; a bad
 * argument anywhere changes no key. */
static void test_gcra_several_keys(void **state)
{
    char k1[CACHE_KEY_MAX], k2[CACHE_KEY_MAX];
    cache_key_ratelimit(k1, "ivan");
    cache_key_auth_failure(k2, "10.1.1.1");
    rt_reply_t *r = RT_CMD(&conn, "EVAL", cache_lua_ratelimit, "2", k1, k2, "5", "60", "0", "2",
                           "3", "60", "0", "4");
    assert_non_null(r);
    assert_int_equal(r->type, '*');
    assert_int_equal(r->len, 8);
    assert_int_equal(r->elem[0]->integer, 2); /* ivan: 2 of 2, 3 left */
    assert_int_equal(r->elem[1]->integer, 3);
    assert_int_equal(r->elem[4]->integer, 3); /* the address: 3 of 4 */
    assert_int_equal(r->elem[5]->integer, 0);
    assert_true(r->elem[7]->integer >= 1);
    rt_reply_free(r);
    r = RT_CMD(&conn, "EVAL", cache_lua_ratelimit, "2", k1, k2, "5", "60", "0", "1", "3", "60", "0",
               "-1");
    assert_non_null(r);
    assert_int_equal(r->type, '-');
    rt_reply_free(r);
    r = RT_CMD(&conn, "EVAL", cache_lua_ratelimit, "1", k1, "5", "60", "0");
    assert_non_null(r);
    assert_int_equal(r->elem[0]->integer, 1);
    assert_int_equal(r->elem[1]->integer, 2); /* the refused call took nothing */
    rt_reply_free(r);
}

static void test_gcra_retry_after_sane(void **state)
{
    long long now = 1764000000000000LL, o[4];
    /* 2 per minute: after both, the next token comes 30 s later */
    assert_int_equal(gcra("carol", 2, 60, now, o), 1);
    assert_int_equal(o[1], 1);
    assert_int_equal(o[2], 30);
    assert_int_equal(gcra("carol", 2, 60, now, o), 1);
    assert_int_equal(o[1], 0);
    assert_int_equal(o[2], 60);
    assert_int_equal(gcra("carol", 2, 60, now + 10000000, o), 0);
    assert_int_equal(o[3], 20);
    assert_int_equal(o[2], 50);
    assert_int_equal(gcra("carol", 2, 60, now + 30000000, o), 1);
    /* a key expires once the bucket is full again */
    char k[CACHE_KEY_MAX];
    cache_key_ratelimit(k, "carol");
    long long pttl = int_reply(RT_CMD(&conn, "PTTL", k));
    assert_true(pttl > 0 && pttl <= 60002);
}

static void test_gcra_redis_clock(void **state)
{
    long long o[4];
    assert_int_equal(gcra("dave", 3, 60, 0, o), 1);
    assert_int_equal(o[1], 2);
    assert_int_equal(gcra("dave", 3, 60, 0, o), 1);
    assert_int_equal(gcra("dave", 3, 60, 0, o), 1);
    assert_int_equal(gcra("dave", 3, 60, 0, o), 0);
    assert_true(o[3] >= 19 && o[3] <= 20);
}

/* 50 connections send at the same moment when one token is left: exactly one gets it. */
static void test_gcra_concurrent_last_token(void **state)
{
    enum { N = 50 };
    long long o[4];
    char k[CACHE_KEY_MAX];
    for (int i = 0; i < 199; i++)
        assert_int_equal(gcra("erin", 200, 60, 0, o), 1);
    assert_int_equal(o[1], 1);
    cache_key_ratelimit(k, "erin");
    rt_conn_t cs[N];
    for (int i = 0; i < N; i++)
        assert_int_equal(rt_conn_open(&cs[i], srv.port), 0);
    const char *argv[] = {"EVAL", cache_lua_ratelimit, "1", k, "200", "60", "0"};
    for (int i = 0; i < N; i++)
        assert_int_equal(rt_send(&cs[i], 7, argv), 0);
    int allowed = 0;
    for (int i = 0; i < N; i++) {
        rt_reply_t *r = rt_read_reply(cs[i].in);
        assert_non_null(r);
        assert_int_equal(r->type, '*');
        allowed += (int)r->elem[0]->integer;
        rt_reply_free(r);
        rt_conn_close(&cs[i]);
    }
    assert_int_equal(allowed, 1);
}

int main(void)
{
    const struct CMUnitTest keys[] = {
        cmocka_unit_test(test_keys_plain),
        cmocka_unit_test(test_keys_longest_id_fits),
        cmocka_unit_test(test_keys_unsafe_ids_are_hashed),
    };
    const struct CMUnitTest scripts[] = {
        cmocka_unit_test_setup(test_fill_on_empty_stores, flush),
        cmocka_unit_test_setup(test_fill_rejected_when_version_higher, flush),
        cmocka_unit_test_setup(test_invalidate_raises_and_deletes, flush),
        cmocka_unit_test_setup(test_stale_fill_race, flush),
        cmocka_unit_test_setup(test_newer_fill_drops_older_fields, flush),
        cmocka_unit_test_setup(test_gcra_exact_limit_and_countdown, flush),
        cmocka_unit_test_setup(test_gcra_batch, flush),
        cmocka_unit_test_setup(test_gcra_several_keys, flush),
        cmocka_unit_test_setup(test_gcra_retry_after_sane, flush),
        cmocka_unit_test_setup(test_gcra_redis_clock, flush),
        cmocka_unit_test_setup(test_gcra_concurrent_last_token, flush),
    };
    int rc = cmocka_run_group_tests_name("cache_keys", keys, NULL, NULL);
    rc += cmocka_run_group_tests_name("cache_scripts", scripts, setup_server, teardown_server);
    return rc;
}
