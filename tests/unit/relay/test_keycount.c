/* Unit tests for relay/keycount.c: counts per user, deletion inside probe runs, growth. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>
#include "relay/keycount.h"

static void test_counts(void **state)
{
    keycount_t *t = keycount_create();
    assert_int_equal(keycount_count(t, "a"), 0);
    keycount_inc(t, "a");
    keycount_inc(t, "a");
    keycount_inc(t, "b");
    assert_int_equal(keycount_count(t, "a"), 2);
    assert_int_equal(keycount_keys(t), 2);
    assert_int_equal(keycount_total(t), 3);
    assert_int_equal(keycount_dec(t, "a"), 1);
    assert_int_equal(keycount_dec(t, "a"), 0);
    assert_int_equal(keycount_dec(t, "a"), -1);
    assert_int_equal(keycount_keys(t), 1);
    assert_int_equal(keycount_total(t), 1);
    const char *list[4];
    assert_int_equal(keycount_list(t, list, 4), 1);
    assert_string_equal(list[0], "b");
    keycount_destroy(t);
    keycount_destroy(NULL);
}

/* Many keys force collisions and growth; deleting every other key must keep the rest findable. */
static void test_many(void **state)
{
    keycount_t *t = keycount_create();
    char key[32];
    for (int i = 0; i < 20000; ++i) {
        snprintf(key, sizeof(key), "user-%d", i);
        keycount_inc(t, key);
        if (i % 3 == 0)
            keycount_inc(t, key);
    }
    assert_int_equal(keycount_keys(t), 20000);
    for (int i = 0; i < 20000; i += 2) {
        snprintf(key, sizeof(key), "user-%d", i);
        while (keycount_dec(t, key) > 0) {
        }
    }
    assert_int_equal(keycount_keys(t), 10000);
    for (int i = 0; i < 20000; ++i) {
        snprintf(key, sizeof(key), "user-%d", i);
        int want = i % 2 == 0 ? 0 : (i % 3 == 0 ? 2 : 1);
        assert_int_equal(keycount_count(t, key), want);
    }
    keycount_destroy(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counts),
        cmocka_unit_test(test_many),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
