/* Unit tests for common/buf.c: growth from fixed storage, formatting, JSON escaping. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>
#include "common/buf.h"

static void test_fixed_then_heap(void **state)
{
    char mem[8];
    strbuf_t b;
    strbuf_init_fixed(&b, mem, sizeof(mem));
    strbuf_append_str(&b, "abc");
    assert_ptr_equal(b.data, mem);
    strbuf_append_str(&b, "defghijkl");
    assert_ptr_not_equal(b.data, mem);
    assert_string_equal(b.data, "abcdefghijkl");
    assert_int_equal(b.len, 12);
    strbuf_dispose(&b);
}

static void test_appendf_grows(void **state)
{
    strbuf_t b;
    strbuf_init(&b);
    for (int i = 0; i < 1000; ++i)
        strbuf_appendf(&b, "%d,", i);
    assert_int_equal(strncmp(b.data, "0,1,2,", 6), 0);
    assert_int_equal(b.data[b.len - 1], ',');
    assert_int_equal(strlen(b.data), b.len);
    strbuf_dispose(&b);
    strbuf_dispose(NULL);
}

static void test_json_string(void **state)
{
    strbuf_t b;
    strbuf_init(&b);
    strbuf_append_json_string(&b, "a\"b\\c\n\x01\x7f\xc3\xa9", 10);
    assert_string_equal(b.data, "\"a\\\"b\\\\c\\n\\u0001\x7f\xc3\xa9\""); /* as to_json */
    strbuf_reset(&b);
    strbuf_append_json_string(&b, "x\0y", 3);
    assert_string_equal(b.data, "\"x\\u0000y\"");
    strbuf_dispose(&b);
}

static void test_append_i64(void **state)
{
    char mem[64];
    strbuf_t b;
    strbuf_init_fixed(&b, mem, sizeof(mem));
    strbuf_append_i64(&b, 0);
    strbuf_append_char(&b, ' ');
    strbuf_append_i64(&b, -42);
    strbuf_append_char(&b, ' ');
    strbuf_append_i64(&b, INT64_MAX);
    strbuf_append_char(&b, ' ');
    strbuf_append_i64(&b, INT64_MIN);
    assert_string_equal(b.data, "0 -42 9223372036854775807 -9223372036854775808");
    strbuf_dispose(&b);
}

static void test_steal(void **state)
{
    char mem[4];
    strbuf_t b;
    size_t len;
    char *s;
    strbuf_init_fixed(&b, mem, sizeof(mem));
    strbuf_append_str(&b, "ab");
    s = strbuf_steal(&b, &len);
    assert_string_equal(s, "ab");
    assert_int_equal(len, 2);
    assert_ptr_not_equal(s, mem);
    free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixed_then_heap), cmocka_unit_test(test_appendf_grows),
        cmocka_unit_test(test_json_string),     cmocka_unit_test(test_append_i64),
        cmocka_unit_test(test_steal),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
