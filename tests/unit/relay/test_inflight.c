/* Unit tests for relay/inflight.c: counts per user, deletion inside probe runs, growth. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>
#include "relay/inflight.h"

static void test_counts(void **state)
{
    inflight_t *t = inflight_create();
    assert_int_equal(inflight_count(t, "a"), 0);
    inflight_inc(t, "a");
    inflight_inc(t, "a");
    inflight_inc(t, "b");
    assert_int_equal(inflight_count(t, "a"), 2);
    assert_int_equal(inflight_users(t), 2);
    assert_int_equal(inflight_total(t), 3);
    assert_int_equal(inflight_dec(t, "a"), 1);
    assert_int_equal(inflight_dec(t, "a"), 0);
    assert_int_equal(inflight_dec(t, "a"), -1);
    assert_int_equal(inflight_users(t), 1);
    assert_int_equal(inflight_total(t), 1);
    const char *list[4];
    assert_int_equal(inflight_list(t, list, 4), 1);
    assert_string_equal(list[0], "b");
    inflight_destroy(t);
    inflight_destroy(NULL);
}

/* Many keys force collisions and growth; deleting every other key must keep the rest findable. */
static void test_many(void **state)
{
    inflight_t *t = inflight_create();
    char key[32];
    for (int i = 0; i < 20000; ++i) {
        snprintf(key, sizeof(key), "user-%d", i);
        inflight_inc(t, key);
        if (i % 3 == 0)
            inflight_inc(t, key);
    }
    assert_int_equal(inflight_users(t), 20000);
    for (int i = 0; i < 20000; i += 2) {
        snprintf(key, sizeof(key), "user-%d", i);
        while (inflight_dec(t, key) > 0) {
        }
    }
    assert_int_equal(inflight_users(t), 10000);
    for (int i = 0; i < 20000; ++i) {
        snprintf(key, sizeof(key), "user-%d", i);
        int want = i % 2 == 0 ? 0 : (i % 3 == 0 ? 2 : 1);
        assert_int_equal(inflight_count(t, key), want);
    }
    inflight_destroy(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counts),
        cmocka_unit_test(test_many),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
