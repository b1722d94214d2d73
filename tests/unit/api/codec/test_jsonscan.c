/* tests/unit/api/resources/test_jsonscan.c: api/codec/jsonscan.c, the strict JSON scanner.
 * The body rules' tests (test_validate.c) also reach it through every body parser. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <json.h>
#include "api/codec/jsonscan.h"

static void test_parse_object_uninitialised_errors(void **state)
{
    /* regression (fuzz_auth): the parser must not trust a caller's uninitialised errors */
    field_errors_t e;
    memset(&e, 0xff, sizeof(e));
    assert_null(jsonscan_parse_object("{\"a\":", 5, &e));
    assert_int_equal(e.count, 1);
    memset(&e, 0xff, sizeof(e));
    json_object *o = jsonscan_parse_object("{\"a\":[1]}", 9, &e);
    assert_non_null(o);
    assert_int_equal(e.count, 0);
    json_object_put(o);
}

/* Nested arrays `depth` deep inside the top-level object: {"a":[[...]]}. */
static json_object *parse_depth(int depth, field_errors_t *e)
{
    char buf[256];
    size_t n = 0;
    json_object *o;

    n += (size_t)snprintf(buf + n, sizeof(buf) - n, "{\"a\":");
    for (int i = 1; i < depth; i++)
        buf[n++] = '[';
    buf[n++] = '1';
    for (int i = 1; i < depth; i++)
        buf[n++] = ']';
    buf[n++] = '}';
    o = jsonscan_parse_object(buf, n, e);
    return o;
}

static void test_limits(void **state)
{
    field_errors_t e;
    json_object *o = parse_depth(VALIDATE_MAX_DEPTH, &e);
    assert_non_null(o);
    json_object_put(o);
    assert_null(parse_depth(VALIDATE_MAX_DEPTH + 1, &e));
    assert_int_equal(e.count, 1);
    assert_string_equal(e.items[0].field, "");

    /* integers of up to 18 digits; 19 are refused */
    const char *n18 = "{\"n\":123456789012345678}", *n19 = "{\"n\":1234567890123456789}";
    o = jsonscan_parse_object(n18, strlen(n18), &e);
    assert_non_null(o);
    json_object_put(o);
    assert_null(jsonscan_parse_object(n19, strlen(n19), &e));
}

static void test_duplicates_and_shape(void **state)
{
    field_errors_t e;
    const char *dup = "{\"a\":{\"b\":1,\"b\":2}}";

    assert_null(jsonscan_parse_object(dup, strlen(dup), &e));
    assert_int_equal(e.count, 1);
    assert_string_equal(e.items[0].field, "a.b");
    assert_null(jsonscan_parse_object("[1]", 3, &e)); /* an object, nothing else */
    assert_null(jsonscan_parse_object("{\"a\":1} x", 9, &e));
    assert_null(jsonscan_parse_object("{\"a\":\"\\ud800\"}", 14, &e)); /* lone surrogate */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_object_uninitialised_errors),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_duplicates_and_shape),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
