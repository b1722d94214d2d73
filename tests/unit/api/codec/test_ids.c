/* Unit tests for api/codec/ids.c: the id and Idempotency-Key rules, random hex ids. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>
#include "api/codec/ids.h"

static void test_ids(void **state)
{
    assert_true(ids_valid("abc-DEF_0.9", 11));
    assert_false(ids_valid("", 0));
    assert_false(ids_valid(NULL, 0));
    assert_false(ids_valid("a b", 3));
    assert_false(ids_valid("a%2F", 4));
    assert_false(ids_valid("a\0b", 3));
    assert_false(ids_valid("\xc3\xa9", 2));
    assert_false(ids_valid("a/b", 3));
    char id[66];
    memset(id, 'a', sizeof(id));
    assert_true(ids_valid(id, IDS_MAX_LEN));
    assert_false(ids_valid(id, IDS_MAX_LEN + 1));
}

static void test_idempotency_keys(void **state)
{
    assert_true(ids_idempotency_key_valid("k", 1));
    assert_true(ids_idempotency_key_valid("a b~!", 5));
    assert_false(ids_idempotency_key_valid("", 0));
    assert_false(ids_idempotency_key_valid(NULL, 0));
    assert_false(ids_idempotency_key_valid("a\tb", 3));
    assert_false(ids_idempotency_key_valid("a\x7f", 2));
    assert_false(ids_idempotency_key_valid("\xc3\xa9", 2));
    char key[257];
    memset(key, 'k', sizeof(key));
    assert_true(ids_idempotency_key_valid(key, IDS_IDEMPOTENCY_KEY_MAX));
    assert_false(ids_idempotency_key_valid(key, IDS_IDEMPOTENCY_KEY_MAX + 1));
}

static void test_random_hex(void **state)
{
    uint64_t a = 0x9e3779b97f4a7c15ull, b = a, before = a;
    char x[33], y[33], z[33];

    ids_random_hex(&a, x, 16);
    assert_int_equal(strlen(x), 32);
    assert_int_equal(strspn(x, "0123456789abcdef"), 32);
    assert_true(a != before); /* the state moves on */
    ids_random_hex(&b, y, 16);
    assert_string_equal(x, y); /* the same state gives the same digits */
    ids_random_hex(&a, z, 16);
    assert_string_not_equal(x, z);
    /* a valid request id: X-Request-Id falls back to one of these */
    assert_true(ids_valid(x, strlen(x)));

    memset(z, 'q', sizeof(z));
    ids_random_hex(&a, z, 0);
    assert_int_equal(z[0], '\0');
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ids),
        cmocka_unit_test(test_idempotency_keys),
        cmocka_unit_test(test_random_hex),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
