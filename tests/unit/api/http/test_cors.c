/* Unit tests for api/http/cors.c: exact-origin matching, `null`, list parsing, header decisions. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>
#include "api/http/cors.h"

static bool allowed(const cors_config_t *c, const char *o)
{
    return cors_origin_allowed(c, o, strlen(o));
}

static void test_matching(void **state)
{
    char err[256];
    cors_config_t *c = cors_config_create(
        " https://app.example.com ,\thttp://localhost:3000,,null, ", err, sizeof(err));
    assert_non_null(c);
    assert_int_equal(cors_config_count(c), 2);
    assert_true(allowed(c, "https://app.example.com"));
    assert_true(allowed(c, "http://localhost:3000"));
    static const char *refused[] = {
        "null",
        "https://app.example.com.evil.com",
        "https://evil-app.example.com",
        "https://app.example.co",
        "http://app.example.com",
        "HTTPS://APP.EXAMPLE.COM",
        "https://app.example.com/",
        "https://app.example.com:443",
        " https://app.example.com",
        "http://localhost:30000",
        "http://localhost",
        "",
        "*",
    };
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); ++i) {
        if (allowed(c, refused[i]))
            fail_msg("origin \"%s\" allowed", refused[i]);
    }
    /* a NUL inside the value does not end the comparison early */
    assert_false(cors_origin_allowed(c, "http://localhost:3000\0x", 23));
    assert_false(cors_origin_allowed(c, NULL, 0));
    assert_false(cors_origin_allowed(NULL, "http://localhost:3000", 21));
    cors_config_destroy(c);
    cors_config_destroy(NULL);
}

static void test_list_parsing(void **state)
{
    char err[256];
    cors_config_t *c = cors_config_create(NULL, err, sizeof(err));
    assert_non_null(c);
    assert_int_equal(cors_config_count(c), 0);
    assert_false(allowed(c, "https://a.com"));
    cors_config_destroy(c);

    c = cors_config_create("null", err, sizeof(err));
    assert_non_null(c);
    assert_false(allowed(c, "null"));
    cors_config_destroy(c);

    static const char *bad[] = {
        "*",           "https://a.com/", "a.com",          "https://a.com/path",
        "ftp://a.com", "https://",       "https://a b.com"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); ++i) {
        err[0] = '\0';
        assert_null(cors_config_create(bad[i], err, sizeof(err)));
        assert_non_null(strstr(err, "CORS_ALLOWED_ORIGINS"));
    }
}

static void test_decide(void **state)
{
    char err[256];
    cors_headers_t h;
    cors_config_t *c = cors_config_create("https://app.example.com", err, sizeof(err));
    const char *o = "https://app.example.com";

    assert_true(cors_decide(c, o, strlen(o), false, NULL, &h));
    assert_true(h.allowed);
    assert_ptr_equal(h.allow_origin, o);
    assert_int_equal(h.allow_origin_len, strlen(o));
    assert_string_equal(h.vary, "Origin");
    assert_string_equal(h.expose_headers,
                        "ETag, Location, RateLimit, RateLimit-Policy, Retry-After");
    assert_null(h.allow_methods);
    assert_null(h.max_age);

    assert_true(cors_decide(c, o, strlen(o), true, "GET, PUT", &h));
    assert_string_equal(h.allow_methods, "GET, PUT");
    assert_string_equal(h.allow_headers, "Authorization, Content-Type, Idempotency-Key, If-Match");
    assert_string_equal(h.max_age, "600");
    assert_null(h.expose_headers);
    assert_true(cors_decide(c, o, strlen(o), true, NULL, &h));
    assert_string_equal(h.allow_methods, CORS_DEFAULT_METHODS);

    assert_false(cors_decide(c, "null", 4, true, NULL, &h));
    assert_false(h.allowed);
    assert_null(h.allow_origin);
    assert_null(h.vary);
    assert_false(cors_decide(c, NULL, 0, false, NULL, &h));
    assert_false(cors_decide(c, "https://other.com", 17, false, NULL, &h));
    assert_null(h.expose_headers);
    cors_config_destroy(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matching),
        cmocka_unit_test(test_list_parsing),
        cmocka_unit_test(test_decide),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
