/* Unit tests of api/http/routes.c: matching, 404/405 with Allow, id decoding. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>
#include "api/http/routes.h"

static route_match_status_t match(const char *method, const char *path, route_match_t *m)
{
    return route_match(method, strlen(method), path, strlen(path), m);
}

static void test_profile_routes(void **state)
{
    route_match_t m;
    assert_int_equal(match("GET", "/profiles/u1", &m), ROUTE_MATCH_OK);
    assert_int_equal(m.route, ROUTE_PROFILE);
    assert_int_equal(m.method, ROUTE_METHOD_GET);
    assert_string_equal(m.user_id.value, "u1");
    assert_int_equal(m.user_id.len, 2);
    assert_false(m.user_id.bad);
    assert_int_equal(match("PUT", "/profiles/u1", &m), ROUTE_MATCH_OK);
    assert_int_equal(match("GET", "/profiles/u1/watchlist", &m), ROUTE_MATCH_OK);
    assert_int_equal(m.route, ROUTE_WATCHLIST);
    assert_int_equal(match("POST", "/profiles/u1/watchlist", &m), ROUTE_MATCH_OK);
    assert_int_equal(match("DELETE", "/profiles/u1/watchlist/v9", &m), ROUTE_MATCH_OK);
    assert_int_equal(m.route, ROUTE_WATCHLIST_ITEM);
    assert_string_equal(m.video_id.value, "v9");
    assert_int_equal(match("GET", "/profiles/u1/history", &m), ROUTE_MATCH_OK);
    assert_int_equal(m.route, ROUTE_HISTORY);
    assert_int_equal(match("POST", "/profiles/u1/ratings", &m), ROUTE_MATCH_OK);
    assert_int_equal(m.route, ROUTE_RATINGS);
    assert_true(route_needs_auth(m.route));
}

static void test_health_routes(void **state)
{
    route_match_t m;
    assert_int_equal(match("GET", "/health/live", &m), ROUTE_MATCH_OK);
    assert_int_equal(m.route, ROUTE_HEALTH_LIVE);
    assert_int_equal(match("GET", "/health/ready", &m), ROUTE_MATCH_OK);
    assert_int_equal(m.route, ROUTE_HEALTH_READY);
    assert_int_equal(match("GET", "/health", &m), ROUTE_MATCH_OK);
    assert_int_equal(m.route, ROUTE_HEALTH);
    assert_int_equal(match("GET", "/metrics", &m), ROUTE_MATCH_OK);
    assert_int_equal(m.route, ROUTE_METRICS);
    assert_false(route_needs_auth(m.route));
    assert_string_equal(route_template(ROUTE_METRICS), "/metrics");
}

static void test_not_found(void **state)
{
    route_match_t m;
    const char *paths[] = {"",
                           "/",
                           "profiles/u1",
                           "/profiles",
                           "/profiles/",
                           "/profiles/u1/",
                           "/profiles//watchlist",
                           "/profiles/u1/watchlist/",
                           "/profiles/u1/watchlist/v1/x",
                           "/profiles/u1/history/h1",
                           "/profiles/u1/unknown",
                           "/Profiles/u1",
                           "/health/",
                           "/health/other",
                           "/metrics/x",
                           "/profiles/u1//history",
                           "/x"};
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        assert_int_equal(match("GET", paths[i], &m), ROUTE_MATCH_NOT_FOUND);
        assert_int_equal(m.route, ROUTE_NONE);
    }
    assert_string_equal(route_template(ROUTE_NONE), "unmatched");
}

static void test_method_not_allowed(void **state)
{
    route_match_t m;
    assert_int_equal(match("POST", "/profiles/u1", &m), ROUTE_MATCH_METHOD_NOT_ALLOWED);
    assert_string_equal(m.allow, "GET, PUT, DELETE");
    assert_int_equal(match("DELETE", "/profiles/u1", &m), ROUTE_MATCH_OK);
    assert_int_equal(m.route, ROUTE_PROFILE);
    assert_int_equal(match("PATCH", "/profiles/u1", &m), ROUTE_MATCH_METHOD_NOT_ALLOWED);
    assert_string_equal(m.allow, "GET, PUT, DELETE");
    assert_int_equal(match("GET", "/profiles/u1/export", &m), ROUTE_MATCH_OK);
    assert_int_equal(m.route, ROUTE_EXPORT);
    assert_true(route_needs_auth(ROUTE_EXPORT));
    assert_int_equal(match("DELETE", "/profiles/u1/export", &m), ROUTE_MATCH_METHOD_NOT_ALLOWED);
    assert_string_equal(m.allow, "GET");
    assert_int_equal(match("PUT", "/profiles/u1/watchlist", &m), ROUTE_MATCH_METHOD_NOT_ALLOWED);
    assert_string_equal(m.allow, "GET, POST");
    assert_int_equal(match("GET", "/profiles/u1/watchlist/v1", &m), ROUTE_MATCH_METHOD_NOT_ALLOWED);
    assert_string_equal(m.allow, "DELETE");
    assert_int_equal(match("DELETE", "/profiles/u1/history", &m), ROUTE_MATCH_METHOD_NOT_ALLOWED);
    assert_int_equal(match("POST", "/health/live", &m), ROUTE_MATCH_METHOD_NOT_ALLOWED);
    assert_string_equal(m.allow, "GET");
    assert_int_equal(match("get", "/metrics", &m), ROUTE_MATCH_METHOD_NOT_ALLOWED);
    /* OPTIONS matches every route (CORS preflight) */
    assert_int_equal(match("OPTIONS", "/profiles/u1/watchlist/v1", &m), ROUTE_MATCH_OK);
    assert_int_equal(m.method, ROUTE_METHOD_OPTIONS);
    assert_string_equal(m.allow, "DELETE");
    assert_int_equal(match("OPTIONS", "/nope", &m), ROUTE_MATCH_NOT_FOUND);
}

static void test_ids_decoded(void **state)
{
    route_match_t m;
    /* percent-encoded ids are decoded; validation (400) happens later on the decoded bytes */
    assert_int_equal(match("GET", "/profiles/u%31", &m), ROUTE_MATCH_OK);
    assert_string_equal(m.user_id.value, "u1");
    assert_int_equal(match("GET", "/profiles/a%20b", &m), ROUTE_MATCH_OK);
    assert_string_equal(m.user_id.value, "a b");
    assert_false(m.user_id.bad);
    assert_int_equal(match("GET", "/profiles/a%2Fb/history", &m), ROUTE_MATCH_OK);
    assert_int_equal(m.route, ROUTE_HISTORY);
    assert_string_equal(m.user_id.value, "a/b");
    assert_int_equal(match("DELETE", "/profiles/u.1-_x/watchlist/V.9_-", &m), ROUTE_MATCH_OK);
    assert_string_equal(m.user_id.value, "u.1-_x");
    assert_string_equal(m.video_id.value, "V.9_-");
    assert_int_equal(match("GET", "/profiles/%e2%9c%93", &m), ROUTE_MATCH_OK);
    assert_int_equal(m.user_id.len, 3);
    /* NUL stays a byte: len says 3, validation rejects it */
    assert_int_equal(match("GET", "/profiles/a%00b", &m), ROUTE_MATCH_OK);
    assert_int_equal(m.user_id.len, 3);
}

static void test_bad_escapes(void **state)
{
    route_match_t m;
    char longpath[600];
    assert_int_equal(match("GET", "/profiles/%zz", &m), ROUTE_MATCH_OK);
    assert_true(m.user_id.bad);
    assert_int_equal(match("GET", "/profiles/abc%2", &m), ROUTE_MATCH_OK);
    assert_true(m.user_id.bad);
    assert_int_equal(match("GET", "/profiles/abc%", &m), ROUTE_MATCH_OK);
    assert_true(m.user_id.bad);
    assert_int_equal(match("DELETE", "/profiles/u1/watchlist/%g1", &m), ROUTE_MATCH_OK);
    assert_false(m.user_id.bad);
    assert_true(m.video_id.bad);
    strcpy(longpath, "/profiles/");
    memset(longpath + 10, 'a', 400);
    longpath[410] = '\0';
    assert_int_equal(match("GET", longpath, &m), ROUTE_MATCH_OK);
    assert_true(m.user_id.bad);
}

static void test_method_names(void **state)
{
    assert_int_equal(route_parse_method("GET", 3), ROUTE_METHOD_GET);
    assert_int_equal(route_parse_method("GETX", 4), ROUTE_METHOD_OTHER);
    assert_int_equal(route_parse_method("", 0), ROUTE_METHOD_OTHER);
    assert_string_equal(route_method_name(ROUTE_METHOD_DELETE), "DELETE");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_profile_routes), cmocka_unit_test(test_health_routes),
        cmocka_unit_test(test_not_found),      cmocka_unit_test(test_method_not_allowed),
        cmocka_unit_test(test_ids_decoded),    cmocka_unit_test(test_bad_escapes),
        cmocka_unit_test(test_method_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
