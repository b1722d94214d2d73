/* Unit tests for common/log.c: one JSON object per line, level filtering, escaping. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <json-c/json.h>
#include "common/log.h"

#define LOG_MODULE "test"

static char *captured;
static size_t captured_len;
static FILE *mem;

static int setup(void **state)
{
    mem = open_memstream(&captured, &captured_len);
    log_init("unit-test", LOG_LEVEL_INFO);
    log_set_stream(mem);
    return 0;
}

static int teardown(void **state)
{
    log_set_stream(NULL);
    fclose(mem);
    free(captured);
    captured = NULL;
    return 0;
}

static json_object *only_line(void)
{
    char *nl;
    fflush(mem);
    assert_non_null(captured);
    nl = strchr(captured, '\n');
    assert_non_null(nl);
    assert_int_equal(nl - captured + 1, (long)captured_len); /* exactly one line */
    return json_tokener_parse(captured);
}

static void test_line_is_json_with_fields(void **state)
{
    json_object *o, *v;
    log_info("hello %d", 42);
    o = only_line();
    assert_non_null(o);
    assert_true(json_object_object_get_ex(o, "msg", &v));
    assert_string_equal(json_object_get_string(v), "hello 42");
    assert_true(json_object_object_get_ex(o, "level", &v));
    assert_string_equal(json_object_get_string(v), "info");
    assert_true(json_object_object_get_ex(o, "service", &v));
    assert_string_equal(json_object_get_string(v), "unit-test");
    assert_true(json_object_object_get_ex(o, "module", &v));
    assert_string_equal(json_object_get_string(v), "test");
    assert_true(json_object_object_get_ex(o, "ts", &v));
    assert_int_equal(strlen(json_object_get_string(v)), 24); /* 2026-11-25T22:29:14.123Z */
    json_object_put(o);
}

static int side_effects;

static const char *count_call(void)
{
    ++side_effects;
    return "x";
}

static void test_level_filtered_before_formatting(void **state)
{
    side_effects = 0;
    log_debug("%s", count_call());
    fflush(mem);
    assert_int_equal(captured_len, 0);
    assert_int_equal(side_effects, 0); /* arguments not even evaluated */
    log_warn("%s", count_call());
    assert_int_equal(side_effects, 1);
}

static void test_escaping_and_context(void **state)
{
    json_object *o, *v;
    log_ctx_t ctx = {.request_id = "r-1", .trace_id = "abc", .user = "u\"1"};
    log_error_ctx(&ctx, "quote \" backslash \\ newline \n ctl \x01 end");
    o = only_line();
    assert_non_null(o);
    assert_true(json_object_object_get_ex(o, "msg", &v));
    assert_string_equal(json_object_get_string(v), "quote \" backslash \\ newline \n ctl \x01 end");
    assert_true(json_object_object_get_ex(o, "request_id", &v));
    assert_string_equal(json_object_get_string(v), "r-1");
    assert_true(json_object_object_get_ex(o, "user", &v));
    assert_string_equal(json_object_get_string(v), "u\"1");
    json_object_put(o);
}

static void test_fields_line(void **state)
{
    json_object *o, *v;
    log_write_fields(LOG_LEVEL_INFO, "access", NULL, "request", "\"status\":201,\"route\":\"/x\"");
    o = only_line();
    assert_non_null(o);
    assert_true(json_object_object_get_ex(o, "status", &v));
    assert_int_equal(json_object_get_int(v), 201);
    json_object_put(o);
}

static void test_parse_level(void **state)
{
    log_level_t l;
    assert_int_equal(log_parse_level("DEBUG", &l), 0);
    assert_int_equal(l, LOG_LEVEL_DEBUG);
    assert_int_equal(log_parse_level("warn", &l), 0);
    assert_int_equal(l, LOG_LEVEL_WARN);
    assert_int_equal(log_parse_level("verbose", &l), -1);
}

static void test_long_message_truncated_not_broken(void **state)
{
    json_object *o;
    char big[20000];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    log_info("%s", big);
    o = only_line();
    assert_non_null(o);
    json_object_put(o);
}

static void test_level_file_and_runtime_change(void **state)
{
    static const struct {
        const char *content;
        int want; /* -1: refused */
    } cases[] = {
        {"debug", LOG_LEVEL_DEBUG},
        {"warn\n", LOG_LEVEL_WARN},
        {"  ERROR \n\n", LOG_LEVEL_ERROR},
        {"", -1},
        {"verbose\n", -1},
        {"debug info\n", -1},
    };
    char path[] = "/tmp/test_log_levelXXXXXX", err[256];
    int fd = mkstemp(path);
    log_level_t lvl;
    assert_true(fd >= 0);
    close(fd);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); ++i) {
        FILE *fp = fopen(path, "w");
        fputs(cases[i].content, fp);
        fclose(fp);
        lvl = LOG_LEVEL_INFO;
        int r = log_read_level_file(path, &lvl, err, sizeof(err));
        if (cases[i].want < 0) {
            assert_int_equal(r, -1);
            assert_non_null(strstr(err, path));
        } else {
            assert_int_equal(r, 0);
            assert_int_equal(lvl, cases[i].want);
        }
    }
    unlink(path);
    assert_int_equal(log_read_level_file(path, &lvl, err, sizeof(err)), -1);

    /* the threshold changes what the macros write */
    log_set_threshold(LOG_LEVEL_WARN);
    log_info("hidden");
    fflush(mem);
    assert_int_equal(captured_len, 0);
    log_set_threshold(LOG_LEVEL_DEBUG);
    assert_int_equal(log_get_threshold(), LOG_LEVEL_DEBUG);
    log_debug("shown");
    json_object *o = only_line();
    assert_non_null(o);
    json_object_put(o);
    assert_string_equal(log_level_name(LOG_LEVEL_WARN), "warn");
    log_set_threshold(LOG_LEVEL_INFO);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_line_is_json_with_fields, setup, teardown),
        cmocka_unit_test_setup_teardown(test_level_filtered_before_formatting, setup, teardown),
        cmocka_unit_test_setup_teardown(test_escaping_and_context, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fields_line, setup, teardown),
        cmocka_unit_test_setup_teardown(test_parse_level, setup, teardown),
        cmocka_unit_test_setup_teardown(test_long_message_truncated_not_broken, setup, teardown),
        cmocka_unit_test_setup_teardown(test_level_file_and_runtime_change, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
