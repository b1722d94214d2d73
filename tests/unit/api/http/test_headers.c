/* Unit tests for api/http/headers.c: header lookup and the application/json Content-Type rule. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>
#include "api/http/headers.h"

static void test_find(void **state)
{
    h2o_mem_pool_t pool;
    h2o_req_t req;
    const h2o_iovec_t *v;

    h2o_mem_init_pool(&pool);
    memset(&req, 0, sizeof(req));
    assert_null(headers_find(&req, H2O_STRLIT("x-request-id")));

    h2o_add_header_by_str(&pool, &req.headers, H2O_STRLIT("content-type"), 1, NULL,
                          H2O_STRLIT("application/json"));
    h2o_add_header_by_str(&pool, &req.headers, H2O_STRLIT("idempotency-key"), 0, NULL,
                          H2O_STRLIT("first"));
    h2o_add_header_by_str(&pool, &req.headers, H2O_STRLIT("idempotency-key"), 0, NULL,
                          H2O_STRLIT("second"));

    v = headers_find(&req, H2O_STRLIT("content-type")); /* an h2o token */
    assert_non_null(v);
    assert_int_equal(v->len, strlen("application/json"));
    assert_memory_equal(v->base, "application/json", v->len);
    v = headers_find(&req, H2O_STRLIT("idempotency-key")); /* the first of two */
    assert_non_null(v);
    assert_int_equal(v->len, 5);
    assert_memory_equal(v->base, "first", 5);
    assert_null(headers_find(&req, H2O_STRLIT("if-match")));
    assert_null(headers_find(&req, H2O_STRLIT("idempotency"))); /* no prefix match */

    h2o_mem_clear_pool(&pool);
}

static void test_json_content_type(void **state)
{
    static const struct {
        const char *s;
        bool ok;
    } cases[] = {
        {"application/json", true},
        {"Application/JSON", true},
        {"application/json; charset=utf-8", true},
        {"application/json;charset=UTF-8", true},
        {"  application/json  ", true},
        {"application/json ; charset=utf-8", true},
        {"application/json-patch+json", false},
        {"application/jsonx", false},
        {"application/json x", false},
        {"application/problem+json", false},
        {"text/json", false},
        {"text/plain", false},
        {"application/", false},
        {"", false},
        {"multipart/form-data; boundary=application/json", false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); ++i) {
        if (headers_is_json(cases[i].s, strlen(cases[i].s)) != cases[i].ok)
            fail_msg("content type \"%s\"", cases[i].s);
    }
    assert_false(headers_is_json(NULL, 0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_find),
        cmocka_unit_test(test_json_content_type),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
