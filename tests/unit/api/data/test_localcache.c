/*
 * Tests api/data/localcache.c: versions and pins, replacement while pinned, outdated entries
 * leaving, the byte budget with least-recently-used eviction, the TTL, and threads sharing it.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "api/data/localcache.h"

static void put_str(const char *key, int64_t version, const char *value)
{
    localcache_put(key, strlen(key), version, value, strlen(value));
}

/* The value of `key` at whatever version ("" when absent); *version gets it (-1: absent). */
static const char *get_str(const char *key, int64_t *version)
{
    static char out[256];
    localcache_entry_t *e = localcache_pin(key, strlen(key));
    out[0] = '\0';
    *version = -1;
    if (e != NULL) {
        size_t len;
        const char *v = localcache_entry_value(e, &len);
        snprintf(out, sizeof(out), "%.*s", (int)len, v);
        *version = localcache_entry_version(e);
        localcache_unpin(e, false);
    }
    return out;
}

static int teardown(void **state)
{
    localcache_shutdown();
    return 0;
}

static void test_disabled(void **state)
{
    int64_t v;
    localcache_init(0, 300);
    assert_false(localcache_enabled());
    put_str("k", 1, "x");
    assert_string_equal(get_str("k", &v), "");
    assert_int_equal(v, -1);
}

static void test_put_pin_replace(void **state)
{
    int64_t v;
    localcache_init(1 << 20, 300);
    assert_true(localcache_enabled());
    put_str("pc:{u1}:wl", 3, "[three]");
    assert_string_equal(get_str("pc:{u1}:wl", &v), "[three]");
    assert_int_equal(v, 3);
    assert_string_equal(get_str("pc:{u2}:wl", &v), "");

    /* keys with an embedded NUL are distinct by their full length */
    localcache_put("a\0b", 3, 1, "AB", 2);
    localcache_put("a\0c", 3, 1, "AC", 2);
    localcache_entry_t *e = localcache_pin("a\0c", 3);
    assert_non_null(e);
    size_t len;
    assert_memory_equal(localcache_entry_value(e, &len), "AC", 2);
    localcache_unpin(e, false);

    /* replaced while pinned: the pin keeps reading the old page */
    e = localcache_pin("pc:{u1}:wl", 10);
    assert_non_null(e);
    put_str("pc:{u1}:wl", 4, "[four]");
    assert_int_equal(localcache_entry_version(e), 3);
    assert_memory_equal(localcache_entry_value(e, &len), "[three]", 7);
    localcache_unpin(e, true); /* outdated, but no longer the cached one: the new one stays */
    assert_string_equal(get_str("pc:{u1}:wl", &v), "[four]");
    assert_int_equal(v, 4);

    /* outdated: it leaves */
    e = localcache_pin("pc:{u1}:wl", 10);
    localcache_unpin(e, true);
    assert_string_equal(get_str("pc:{u1}:wl", &v), "");

    localcache_stats_t st;
    localcache_stats(&st);
    assert_int_equal(st.entries, 2);
    assert_int_equal(st.evictions, 0);
}

static void test_budget_and_lru(void **state)
{
    enum { BUDGET = 256 * 1024, N = 2000 }; /* 16 KiB per shard: about 15 pages each */
    char key[32], value[1000];
    int64_t v;
    localcache_init(BUDGET, 300);
    memset(value, 'x', sizeof(value));
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        localcache_put(key, strlen(key), i, value, sizeof(value));
        /* k0 is used all along: never the least recently used of its shard for long */
        localcache_entry_t *e = localcache_pin("k0", 2);
        assert_non_null(e);
        localcache_unpin(e, false);
    }
    localcache_stats_t st;
    localcache_stats(&st);
    assert_true(st.bytes <= BUDGET);
    assert_true(st.entries > 0 && st.entries < N);
    assert_int_equal(st.evictions, N - st.entries);
    get_str("k0", &v);
    assert_int_equal(v, 0);
    snprintf(key, sizeof(key), "k%d", N - 1);
    get_str(key, &v);
    assert_int_equal(v, N - 1);
    get_str("k1", &v); /* long evicted */
    assert_int_equal(v, -1);

    /* a page larger than a quarter of a shard's part is not kept */
    static char big[BUDGET / 16];
    localcache_put("big", 3, 1, big, sizeof(big));
    get_str("big", &v);
    assert_int_equal(v, -1);
}

static void test_ttl(void **state)
{
    int64_t v;
    localcache_init(1 << 20, 1);
    put_str("t", 1, "x");
    assert_string_equal(get_str("t", &v), "x");
    sleep(3); /* the coarse monotonic clock: whole seconds */
    assert_string_equal(get_str("t", &v), "");
    localcache_stats_t st;
    localcache_stats(&st);
    assert_int_equal(st.entries, 0);
    assert_int_equal(st.bytes, 0);
}

/* Threads put, pin and drop the same few keys: every pinned value matches its version. */
static void *hammer(void *arg)
{
    unsigned seed = (unsigned)(uintptr_t)arg;
    char key[16], value[64];
    long bad = 0;
    for (int i = 0; i < 20000; i++) {
        seed = seed * 1103515245u + 12345u;
        int k = (int)(seed >> 16) % 8, version = (int)(seed >> 8) % 1000;
        snprintf(key, sizeof(key), "h%d", k);
        if (i % 3 == 0) {
            int n = snprintf(value, sizeof(value), "%s@%d", key, version);
            localcache_put(key, strlen(key), version, value, (size_t)n);
            continue;
        }
        localcache_entry_t *e = localcache_pin(key, strlen(key));
        if (e == NULL)
            continue;
        size_t len;
        const char *got = localcache_entry_value(e, &len);
        int n =
            snprintf(value, sizeof(value), "%s@%lld", key, (long long)localcache_entry_version(e));
        if ((size_t)n != len || memcmp(got, value, len) != 0)
            bad++;
        localcache_unpin(e, i % 5 == 0);
    }
    return (void *)bad;
}

static void test_threads(void **state)
{
    pthread_t t[4];
    localcache_init(1 << 20, 300);
    for (uintptr_t i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&t[i], NULL, hammer, (void *)(i + 1)), 0);
    for (int i = 0; i < 4; i++) {
        void *bad;
        pthread_join(t[i], &bad);
        assert_int_equal((long)bad, 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_disabled, teardown),
        cmocka_unit_test_teardown(test_put_pin_replace, teardown),
        cmocka_unit_test_teardown(test_budget_and_lru, teardown),
        cmocka_unit_test_teardown(test_ttl, teardown),
        cmocka_unit_test_teardown(test_threads, teardown),
    };
    return cmocka_run_group_tests_name("localcache", tests, NULL, NULL);
}
