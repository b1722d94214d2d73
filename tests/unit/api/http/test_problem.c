/* Unit tests for api/http/problem.c: shape of problem+json, escaping of hostile text. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>
#include <json.h>
#include "api/http/problem.h"

static json_object *parse(const strbuf_t *b)
{
    json_tokener *tok = json_tokener_new();
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    json_object *o = json_tokener_parse_ex(tok, b->data, (int)b->len);
    assert_int_equal(json_tokener_get_error(tok), json_tokener_success);
    json_tokener_free(tok);
    assert_non_null(o);
    return o;
}

static const char *get_str(json_object *o, const char *k)
{
    json_object *v;
    assert_true(json_object_object_get_ex(o, k, &v));
    return json_object_get_string(v);
}

static void test_shape(void **state)
{
    strbuf_t b;
    strbuf_init(&b);
    problem_render(&b, 404, "not-found", "no profile for this user", NULL, 0);
    assert_string_equal(b.data, "{\"type\":\"/problems/not-found\",\"title\":\"Not Found\","
                                "\"status\":404,\"detail\":\"no profile for this user\"}");
    strbuf_reset(&b);

    field_error_t errs[] = {{"videoId", "is required"},
                            {"preferences.language", "must be a string"}};
    problem_render(&b, 400, "validation-error", "the body is invalid", errs, 2);
    json_object *o = parse(&b);
    assert_string_equal(get_str(o, "type"), "/problems/validation-error");
    assert_string_equal(get_str(o, "title"), "Bad Request");
    json_object *st, *arr;
    assert_true(json_object_object_get_ex(o, "status", &st));
    assert_int_equal(json_object_get_int(st), 400);
    assert_true(json_object_object_get_ex(o, "errors", &arr));
    assert_int_equal(json_object_array_length(arr), 2);
    assert_string_equal(get_str(json_object_array_get_idx(arr, 1), "field"),
                        "preferences.language");
    json_object_put(o);
    strbuf_reset(&b);

    /* no detail, no slug */
    problem_render(&b, 599, NULL, NULL, NULL, 0);
    assert_string_equal(b.data, "{\"type\":\"about:blank\",\"title\":\"Error\",\"status\":599}");
    strbuf_dispose(&b);
}

static void test_titles(void **state)
{
    assert_string_equal(problem_title(400), "Bad Request");
    assert_string_equal(problem_title(401), "Unauthorized");
    assert_string_equal(problem_title(403), "Forbidden");
    assert_string_equal(problem_title(405), "Method Not Allowed");
    assert_string_equal(problem_title(409), "Conflict");
    assert_string_equal(problem_title(412), "Precondition Failed");
    assert_string_equal(problem_title(413), "Content Too Large");
    assert_string_equal(problem_title(415), "Unsupported Media Type");
    assert_string_equal(problem_title(422), "Unprocessable Content");
    assert_string_equal(problem_title(429), "Too Many Requests");
    assert_string_equal(problem_title(500), "Internal Server Error");
    assert_string_equal(problem_title(503), "Service Unavailable");
    assert_string_equal(problem_title(0), "Error");
}

static void test_escaping(void **state)
{
    static const struct {
        const char *in;
        size_t len;
        const char *out;
    } cases[] = {
        {"plain", 5, "\"plain\""},
        {"q\"b\\", 4, "\"q\\\"b\\\\\""},
        {"<script>&", 9, "\"\\u003cscript\\u003e\\u0026\""},
        {"a\nb\tc\r\x01\x7f", 8, "\"a\\nb\\tc\\r\\u0001\\u007f\""},
        {"nul\0x", 5, "\"nul\\u0000x\""},
        {"\xc3\xa9\xf0\x9f\x8e\xac", 6, "\"\xc3\xa9\xf0\x9f\x8e\xac\""},
        {"\xff\xfe", 2, "\"\\ufffd\\ufffd\""},
        {"a\xc3", 2, "\"a\\ufffd\""},
        {"\xed\xa0\x80", 3, "\"\\ufffd\\ufffd\\ufffd\""},
        {"\xc2\x85", 2, "\"\\u0085\""},
        {"\xe2\x80\xa8", 3, "\"\\u2028\""},
        {"", 0, "\"\""},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); ++i) {
        strbuf_t b;
        strbuf_init(&b);
        problem_append_json_text(&b, cases[i].in, cases[i].len);
        assert_string_equal(b.data, cases[i].out);
        strbuf_dispose(&b);
    }
}

static void test_hostile_everything(void **state)
{
    strbuf_t b;
    strbuf_init(&b);
    field_error_t errs[] = {{"\"},{\"x\":\"\xff", "</script>\x01"}};
    problem_render(&b, 400, "bad\"slug", "detail \"with\" \xc0\xaf bad bytes", errs, 1);
    json_object *o = parse(&b);
    assert_string_equal(get_str(o, "type"), "/problems/bad\"slug");
    assert_non_null(strstr(get_str(o, "detail"), "\xef\xbf\xbd"));
    assert_null(strchr(b.data, '<'));
    json_object_put(o);
    strbuf_dispose(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shape),
        cmocka_unit_test(test_titles),
        cmocka_unit_test(test_escaping),
        cmocka_unit_test(test_hostile_everything),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
