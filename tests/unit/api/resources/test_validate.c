/* Unit tests for api/resources/validate.c: strict JSON, body fields, UTF-8, RFC 3339, errors. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <json.h>
#include "api/resources/validate.h"
#include "api/codec/jsonscan.h"
#include "common/buf.h"

typedef struct {
    const char *body;
    int ok;            /* expected: 1 accepted, 0 rejected */
    const char *field; /* when rejected: a field that must be among the errors (NULL: any) */
} body_case_t;

static bool has_field(const field_errors_t *e, const char *field)
{
    for (size_t i = 0; i < e->count; ++i) {
        if (strcmp(e->items[i].field, field) == 0)
            return true;
    }
    return false;
}

static void dump_errors(const char *body, const field_errors_t *e)
{
    fprintf(stderr, "body: %s\n", body);
    for (size_t i = 0; i < e->count; ++i)
        fprintf(stderr, "  field=\"%s\" message=\"%s\"\n", e->items[i].field, e->items[i].message);
}

static void check_case(const body_case_t *c, int rc, const field_errors_t *e)
{
    if ((rc == 0) != (c->ok == 1)) {
        dump_errors(c->body, e);
        fail_msg("expected %s for %s", c->ok ? "accept" : "reject", c->body);
    }
    if (!c->ok) {
        assert_true(e->count >= 1);
        if (c->field != NULL && !has_field(e, c->field)) {
            dump_errors(c->body, e);
            fail_msg("expected an error on field \"%s\"", c->field);
        }
    } else {
        assert_int_equal(e->count, 0);
    }
}

/* ------------------------------------------------------------------ generic JSON rules */

static const body_case_t json_cases[] = {
    {"", 0, ""},
    {"   ", 0, ""},
    {"[]", 0, ""},
    {"\"x\"", 0, ""},
    {"null", 0, ""},
    {"{", 0, ""},
    {"{\"videoId\":\"a\"", 0, ""},
    {"{\"videoId\":\"a\",}", 0, ""},
    {"{\"videoId\":'a'}", 0, ""},
    {"{videoId:\"a\"}", 0, ""},
    {"{\"videoId\":\"a\"} x", 0, ""},
    {"{\"videoId\":\"a\"}{}", 0, ""},
    {"{\"videoId\":\"a\"/*c*/}", 0, ""},
    {"{\"videoId\":\"a\\x\"}", 0, ""},
    {"{\"videoId\":\"a\tb\"}", 0, ""},
    {"{\"videoId\":\"\\ud800\"}", 0, ""},
    {"{\"videoId\":\"\\udc00x\"}", 0, ""},
    {"{\"videoId\":\"\xc3\x28\"}", 0, ""},
    {"{\"videoId\":\"\xed\xa0\x80\"}", 0, ""},
    {"{\"videoId\":\"\xc0\xaf\"}", 0, ""},
    {"{\"videoId\":\"a\",\"videoId\":\"b\"}", 0, "videoId"},
    {"{\"videoId\":\"a\",\"vide\\u006fId\":\"b\"}", 0, "videoId"},
    {"{\"video\\u0000Id\":\"a\"}", 0, ""},
    {"{\"videoId\":NaN}", 0, ""},
    {"{\"videoId\":01}", 0, ""},
    {"{\"videoId\":1.}", 0, ""},
    {"{\"videoId\":.5}", 0, ""},
    {"{\"videoId\":+1}", 0, ""},
    {"{\"videoId\":1e}", 0, ""},
    {"{\"videoId\":tru}", 0, ""},
    {"{\"videoId\":\"a\"}", 1, NULL},
    {" \r\n\t{ \"videoId\" : \"a\" } \n", 1, NULL},
    {"{\"videoId\":\"\\u0061\"}", 1, NULL},
    {"{\"videoId\":\"a\",\"x\":1}", 0, "x"},
    {"{\"videoId\":\"a\",\"\":1}", 0, ""},
    {"{\"videoId\":\"a b\"}", 0, "videoId"},
    {"{\"videoId\":\"..\"}", 1, NULL}, /* dots are in the pattern */
    {"{\"videoId\":\"../etc\"}", 0, "videoId"},
    {"{\"videoId\":\"a/b\"}", 0, "videoId"},
    {"{\"videoId\":\"a\\u0000\"}", 0, "videoId"},
    {"{\"videoId\":\"\"}", 0, "videoId"},
    {"{\"videoId\":\"0123456789012345678901234567890123456789012345678901234567890123\"}", 1, NULL},
    {"{\"videoId\":\"01234567890123456789012345678901234567890123456789012345678901234\"}", 0,
     "videoId"},
    {"{\"videoId\":1}", 0, "videoId"},
    {"{\"videoId\":null}", 0, "videoId"},
    {"{}", 0, "videoId"},
};

static void test_json_rules(void **state)
{
    for (size_t i = 0; i < sizeof(json_cases) / sizeof(json_cases[0]); ++i) {
        field_errors_t e;
        watchlist_input_t w;
        int rc = validate_watchlist_body(json_cases[i].body, strlen(json_cases[i].body), &w, &e);
        check_case(&json_cases[i], rc, &e);
        if (rc == 0)
            assert_true(strlen(w.video_id) >= 1);
    }
}

static void test_embedded_nul_byte(void **state)
{
    static const char body[] = "{\"videoId\":\"a\"}\0garbage";
    field_errors_t e;
    watchlist_input_t w;
    assert_int_equal(validate_watchlist_body(body, sizeof(body) - 1, &w, &e), -1);
    assert_int_equal(e.count, 1);
    assert_string_equal(e.items[0].field, "");
}

static void test_depth_and_elements(void **state)
{
    char buf[4096];
    field_errors_t e;
    profile_input_t p;
    size_t n = 0;

    /* depth 32 in total (top-level object + preferences + 30 arrays) is accepted */
    n += (size_t)snprintf(buf + n, sizeof(buf) - n,
                          "{\"displayName\":\"a\",\"preferences\":{\"x\":");
    for (int i = 0; i < 30; ++i)
        buf[n++] = '[';
    for (int i = 0; i < 30; ++i)
        buf[n++] = ']';
    n += (size_t)snprintf(buf + n, sizeof(buf) - n, "}}");
    assert_int_equal(validate_profile_body(buf, n, &p, &e), 0);
    validate_profile_input_dispose(&p);

    n = 0;
    n += (size_t)snprintf(buf + n, sizeof(buf) - n,
                          "{\"displayName\":\"a\",\"preferences\":{\"x\":");
    for (int i = 0; i < 31; ++i)
        buf[n++] = '[';
    for (int i = 0; i < 31; ++i)
        buf[n++] = ']';
    n += (size_t)snprintf(buf + n, sizeof(buf) - n, "}}");
    assert_int_equal(validate_profile_body(buf, n, &p, &e), -1);
    assert_non_null(strstr(e.items[0].message, "deep"));

    /* 100000 nested arrays must not blow the stack */
    size_t big = 200000;
    char *deep = malloc(big);
    deep[0] = '{';
    memcpy(deep + 1, "\"a\":", 4);
    memset(deep + 5, '[', big - 5);
    assert_int_equal(validate_profile_body(deep, big, &p, &e), -1);
    free(deep);

    /* element count */
    strbuf_t sb;
    strbuf_init(&sb);
    strbuf_append_str(&sb, "{\"displayName\":\"a\",\"preferences\":{\"x\":[");
    for (int i = 0; i < VALIDATE_MAX_ELEMENTS + 1; ++i)
        strbuf_append_str(&sb, i ? ",0" : "0");
    strbuf_append_str(&sb, "]}}");
    assert_int_equal(validate_profile_body(sb.data, sb.len, &p, &e), -1);
    assert_non_null(strstr(e.items[0].message, "too many"));
    strbuf_dispose(&sb);
}

static void test_duplicate_nested_path(void **state)
{
    static const char body[] =
        "{\"displayName\":\"a\",\"preferences\":{\"language\":\"en\",\"language\":\"de\"}}";
    field_errors_t e;
    profile_input_t p;
    assert_int_equal(validate_profile_body(body, strlen(body), &p, &e), -1);
    assert_int_equal(e.count, 1);
    assert_string_equal(e.items[0].field, "preferences.language");

    /* same names in sibling objects are fine */
    static const char ok[] =
        "{\"displayName\":\"a\",\"preferences\":{\"a\":{\"k\":1},\"b\":{\"k\":2},\"k\":3}}";
    assert_int_equal(validate_profile_body(ok, strlen(ok), &p, &e), 0);
    validate_profile_input_dispose(&p);

    /* duplicates inside an array element */
    static const char arr[] =
        "{\"displayName\":\"a\",\"preferences\":{\"l\":[{},{\"q\":1,\"q\":2}]}}";
    assert_int_equal(validate_profile_body(arr, strlen(arr), &p, &e), -1);
    assert_string_equal(e.items[0].field, "preferences.l[1].q");
}

/* ------------------------------------------------------------------ profile */

static const body_case_t profile_cases[] = {
    {"{\"displayName\":\"Ann\"}", 1, NULL},
    /* NUL cannot be stored by PostgreSQL: refused anywhere, also deep in preferences */
    {"{\"displayName\":\"Ann\",\"preferences\":{\"x\":[\"a\\u0000b\"]}}", 0, "preferences"},
    {"{\"displayName\":\"A\\u0000\"}", 0, "displayName"},
    {"{\"displayName\":\"Ann\",\"avatarUrl\":null,\"preferences\":{}}", 1, NULL},
    {"{\"displayName\":\"Ann\",\"avatarUrl\":\"https://cdn.example.com/a.png?x=1#f\"}", 1, NULL},
    {"{\"displayName\":\"Ann\",\"avatarUrl\":\"https://[::1]:8443/a\"}", 1, NULL},
    {"{\"displayName\":\"Ann\",\"avatarUrl\":\"http://cdn.example.com/a.png\"}", 0, "avatarUrl"},
    {"{\"displayName\":\"Ann\",\"avatarUrl\":\"javascript:alert(1)\"}", 0, "avatarUrl"},
    {"{\"displayName\":\"Ann\",\"avatarUrl\":\"https://\"}", 0, "avatarUrl"},
    {"{\"displayName\":\"Ann\",\"avatarUrl\":\"https:///path\"}", 0, "avatarUrl"},
    {"{\"displayName\":\"Ann\",\"avatarUrl\":\"https://a b.com/\"}", 0, "avatarUrl"},
    {"{\"displayName\":\"Ann\",\"avatarUrl\":\"https://a.com/\\n\"}", 0, "avatarUrl"},
    {"{\"displayName\":\"Ann\",\"avatarUrl\":\"https://user:pw@a.com/\"}", 0, "avatarUrl"},
    {"{\"displayName\":\"Ann\",\"avatarUrl\":\"https://a.com:99999/\"}", 0, "avatarUrl"},
    {"{\"displayName\":\"Ann\",\"avatarUrl\":\"https://a.com/<script>\"}", 0, "avatarUrl"},
    {"{\"displayName\":\"Ann\",\"avatarUrl\":5}", 0, "avatarUrl"},
    {"{\"displayName\":\"Ann\",\"avatarUrl\":\"https://caf\xc3\xa9.com/\"}", 0, "avatarUrl"},
    {"{\"avatarUrl\":null}", 0, "displayName"},
    {"{\"displayName\":\"\"}", 0, "displayName"},
    {"{\"displayName\":null}", 0, "displayName"},
    {"{\"displayName\":42}", 0, "displayName"},
    {"{\"displayName\":[\"a\"]}", 0, "displayName"},
    {"{\"displayName\":\"a\\u0007b\"}", 0, "displayName"},
    {"{\"displayName\":\"a\\nb\"}", 0, "displayName"},
    {"{\"displayName\":\"a\\u0085b\"}", 0, "displayName"},
    {"{\"displayName\":\"a\\u007fb\"}", 0, "displayName"},
    {"{\"displayName\":\"Zo\xc3\xab \xe6\x9d\xb1\xe4\xba\xac \xf0\x9f\x8e\xac\"}", 1, NULL},
    {"{\"displayName\":\"Ann\",\"preferences\":null}", 0, "preferences"},
    {"{\"displayName\":\"Ann\",\"preferences\":[]}", 0, "preferences"},
    {"{\"displayName\":\"Ann\",\"preferences\":\"{}\"}", 0, "preferences"},
    {"{\"displayName\":\"Ann\",\"preferences\":{\"language\":\"en\",\"subtitles\":true,"
     "\"autoplay\":false,\"maturityRating\":\"PG-13\",\"custom\":{\"a\":[1,2.5,null]}}}",
     1, NULL},
    {"{\"displayName\":\"Ann\",\"preferences\":{\"language\":42}}", 0, "preferences.language"},
    {"{\"displayName\":\"Ann\",\"preferences\":{\"language\":\"e\"}}", 0, "preferences.language"},
    {"{\"displayName\":\"Ann\",\"preferences\":{\"autoplay\":\"yes\"}}", 0, "preferences.autoplay"},
    {"{\"displayName\":\"Ann\",\"preferences\":{\"subtitles\":\"en\"}}", 1, NULL},
    {"{\"displayName\":\"Ann\",\"preferences\":{\"subtitles\":null}}", 1, NULL},
    {"{\"displayName\":\"Ann\",\"preferences\":{\"subtitles\":1}}", 0, "preferences.subtitles"},
    {"{\"displayName\":\"Ann\",\"preferences\":{\"maturityRating\":18}}", 1, NULL},
    {"{\"displayName\":\"Ann\",\"preferences\":{\"maturityRating\":[]}}", 0,
     "preferences.maturityRating"},
    {"{\"displayName\":\"Ann\",\"preferences\":{\"n\":1e400}}", 0, ""},
    {"{\"displayName\":\"Ann\",\"preferences\":{\"n\":12345678901234567890}}", 0, ""},
    {"{\"displayName\":\"Ann\",\"userId\":\"other\",\"version\":7,\"createdAt\":\"x\","
     "\"updatedAt\":null}",
     1, NULL},
    {"{\"displayName\":\"Ann\",\"email\":\"a@b.c\"}", 0, "email"},
    {"{\"displayName\":\"Ann\",\"DisplayName\":\"b\"}", 0, "DisplayName"},
};

static void test_profile_cases(void **state)
{
    for (size_t i = 0; i < sizeof(profile_cases) / sizeof(profile_cases[0]); ++i) {
        field_errors_t e;
        profile_input_t p;
        int rc =
            validate_profile_body(profile_cases[i].body, strlen(profile_cases[i].body), &p, &e);
        check_case(&profile_cases[i], rc, &e);
        if (rc == 0) {
            assert_non_null(p.display_name);
            assert_non_null(p.preferences_json);
        } else {
            assert_null(p.display_name);
            assert_null(p.preferences_json);
        }
        validate_profile_input_dispose(&p);
    }
}

static void test_profile_values(void **state)
{
    static const char body[] = "{\"preferences\":{ \"b\" : [1, 2.50, \"\\u00e9\\/\"], \"a\":true },"
                               "\"displayName\":\"Ann\"}";
    field_errors_t e;
    profile_input_t p;
    assert_int_equal(validate_profile_body(body, strlen(body), &p, &e), 0);
    assert_string_equal(p.display_name, "Ann");
    assert_null(p.avatar_url);
    assert_string_equal(p.preferences_json, "{\"b\":[1,2.50,\"\xc3\xa9/\"],\"a\":true}");
    validate_profile_input_dispose(&p);
    validate_profile_input_dispose(&p); /* idempotent */
    validate_profile_input_dispose(NULL);

    static const char dflt[] = "{\"displayName\":\"B\"}";
    assert_int_equal(validate_profile_body(dflt, strlen(dflt), &p, &e), 0);
    assert_string_equal(p.preferences_json, "{}");
    validate_profile_input_dispose(&p);
}

static void test_profile_lengths(void **state)
{
    char buf[12000];
    field_errors_t e;
    profile_input_t p;
    int n;

    /* 100 emoji (4 bytes each) are a valid displayName; 101 are not */
    for (int count = 100; count <= 101; ++count) {
        n = snprintf(buf, sizeof(buf), "{\"displayName\":\"");
        for (int i = 0; i < count; ++i)
            n += snprintf(buf + n, sizeof(buf) - (size_t)n, "\xf0\x9f\x98\x80");
        n += snprintf(buf + n, sizeof(buf) - (size_t)n, "\"}");
        assert_int_equal(validate_profile_body(buf, (size_t)n, &p, &e), count == 100 ? 0 : -1);
        validate_profile_input_dispose(&p);
    }
    /* avatarUrl of exactly 2048 bytes is fine, 2049 not */
    for (int len = 2048; len <= 2049; ++len) {
        n = snprintf(buf, sizeof(buf), "{\"displayName\":\"a\",\"avatarUrl\":\"https://a.com/");
        int prefix = (int)strlen("https://a.com/");
        for (int i = prefix; i < len; ++i)
            buf[n++] = 'x';
        n += snprintf(buf + n, sizeof(buf) - (size_t)n, "\"}");
        assert_int_equal(validate_profile_body(buf, (size_t)n, &p, &e), len == 2048 ? 0 : -1);
        if (len == 2048)
            assert_int_equal(strlen(p.avatar_url), 2048);
        validate_profile_input_dispose(&p);
    }
    /* preferences: canonical encoding of exactly 8192 bytes is fine, 8193 not */
    for (int len = 8192; len <= 8193; ++len) {
        /* {"k":"xxx"} is 8 bytes + the string */
        n = snprintf(buf, sizeof(buf), "{\"displayName\":\"a\",\"preferences\":{ \"k\" : \"");
        for (int i = 0; i < len - 8; ++i)
            buf[n++] = 'x';
        n += snprintf(buf + n, sizeof(buf) - (size_t)n, "\"}}");
        int rc = validate_profile_body(buf, (size_t)n, &p, &e);
        assert_int_equal(rc, len == 8192 ? 0 : -1);
        if (rc == 0)
            assert_int_equal(strlen(p.preferences_json), 8192);
        else
            assert_true(has_field(&e, "preferences"));
        validate_profile_input_dispose(&p);
    }
}

static void test_profile_many_errors(void **state)
{
    static const char body[] = "{\"a\":1,\"b\":2,\"displayName\":3,\"avatarUrl\":\"ftp://x\"}";
    field_errors_t e;
    profile_input_t p;
    assert_int_equal(validate_profile_body(body, strlen(body), &p, &e), -1);
    assert_int_equal(e.count, 4);
    assert_true(has_field(&e, "a"));
    assert_true(has_field(&e, "b"));
    assert_true(has_field(&e, "displayName"));
    assert_true(has_field(&e, "avatarUrl"));

    /* many unknown members: errors are capped, storage never overflows */
    strbuf_t sb;
    strbuf_init(&sb);
    strbuf_append_char(&sb, '{');
    for (int i = 0; i < 200; ++i)
        strbuf_appendf(&sb, "%s\"%0100d\":1", i ? "," : "", i);
    strbuf_append_char(&sb, '}');
    assert_int_equal(validate_profile_body(sb.data, sb.len, &p, &e), -1);
    assert_true(e.count <= FIELD_ERRORS_MAX);
    assert_true(e.used <= sizeof(e.storage));
    for (size_t i = 0; i < e.count; ++i)
        assert_true(strlen(e.items[i].field) <= 64);
    strbuf_dispose(&sb);
}

/* ------------------------------------------------------------------ history */

static const body_case_t history_cases[] = {
    {"{\"videoId\":\"v1\",\"positionSeconds\":0}", 1, NULL},
    {"{\"videoId\":\"v1\",\"positionSeconds\":86400,\"durationSeconds\":86400}", 1, NULL},
    {"{\"videoId\":\"v1\",\"positionSeconds\":10,\"durationSeconds\":null,\"watchedAt\":null}", 1,
     NULL},
    {"{\"videoId\":\"v1\",\"positionSeconds\":-0}", 1, NULL},
    {"{\"videoId\":\"v1\",\"positionSeconds\":86401}", 0, "positionSeconds"},
    {"{\"videoId\":\"v1\",\"positionSeconds\":-1}", 0, "positionSeconds"},
    {"{\"videoId\":\"v1\",\"positionSeconds\":3.0}", 0, "positionSeconds"},
    {"{\"videoId\":\"v1\",\"positionSeconds\":1e2}", 0, "positionSeconds"},
    {"{\"videoId\":\"v1\",\"positionSeconds\":\"10\"}", 0, "positionSeconds"},
    {"{\"videoId\":\"v1\",\"positionSeconds\":true}", 0, "positionSeconds"},
    {"{\"videoId\":\"v1\",\"positionSeconds\":null}", 0, "positionSeconds"},
    {"{\"videoId\":\"v1\",\"positionSeconds\":999999999999999999}", 0, "positionSeconds"},
    {"{\"videoId\":\"v1\",\"positionSeconds\":9999999999999999999}", 0, ""},
    {"{\"videoId\":\"v1\"}", 0, "positionSeconds"},
    {"{\"videoId\":\"v1\",\"positionSeconds\":11,\"durationSeconds\":10}", 0, "positionSeconds"},
    {"{\"videoId\":\"v1\",\"positionSeconds\":10,\"durationSeconds\":10}", 1, NULL},
    {"{\"videoId\":\"v1\",\"positionSeconds\":1,\"durationSeconds\":86401}", 0, "durationSeconds"},
    {"{\"videoId\":\"v1\",\"positionSeconds\":1,\"durationSeconds\":\"5\"}", 0, "durationSeconds"},
    {"{\"videoId\":\"v1\",\"positionSeconds\":1,\"watchedAt\":\"2024-02-29T12:00:00Z\"}", 1, NULL},
    {"{\"videoId\":\"v1\",\"positionSeconds\":1,\"watchedAt\":\"2024-02-29T12:00:00.123Z\"}", 1,
     NULL},
    {"{\"videoId\":\"v1\",\"positionSeconds\":1,\"watchedAt\":\"2024-02-29T12:00:00.123456789+05:"
     "30\"}",
     1, NULL},
    {"{\"videoId\":\"v1\",\"positionSeconds\":1,\"watchedAt\":\"2024-02-29t12:00:00z\"}", 1, NULL},
    {"{\"videoId\":\"v1\",\"positionSeconds\":1,\"watchedAt\":\"2023-02-29T12:00:00Z\"}", 0,
     "watchedAt"},
    {"{\"videoId\":\"v1\",\"positionSeconds\":1,\"watchedAt\":\"2024-02-29 12:00:00Z\"}", 0,
     "watchedAt"},
    {"{\"videoId\":\"v1\",\"positionSeconds\":1,\"watchedAt\":\"2024-02-29T12:00:00\"}", 0,
     "watchedAt"},
    {"{\"videoId\":\"v1\",\"positionSeconds\":1,\"watchedAt\":\"2024-02-29T24:00:00Z\"}", 0,
     "watchedAt"},
    {"{\"videoId\":\"v1\",\"positionSeconds\":1,\"watchedAt\":\"2024-13-01T00:00:00Z\"}", 0,
     "watchedAt"},
    {"{\"videoId\":\"v1\",\"positionSeconds\":1,\"watchedAt\":\"2024-01-01T00:00:00+5:30\"}", 0,
     "watchedAt"},
    {"{\"videoId\":\"v1\",\"positionSeconds\":1,\"watchedAt\":\"2024-01-01T00:00:00.Z\"}", 0,
     "watchedAt"},
    {"{\"videoId\":\"v1\",\"positionSeconds\":1,\"watchedAt\":\"2024-01-01T00:00:00.1234567890Z\"}",
     0, "watchedAt"},
    {"{\"videoId\":\"v1\",\"positionSeconds\":1,\"watchedAt\":\"0001-01-01T00:00:00Z\"}", 0,
     "watchedAt"},
    {"{\"videoId\":\"v1\",\"positionSeconds\":1,\"watchedAt\":1700000000}", 0, "watchedAt"},
    {"{\"videoId\":\"v1\",\"positionSeconds\":1,\"watchedAt\":\"2024-01-01T00:00:60Z\"}", 0,
     "watchedAt"},
    {"{\"videoId\":\"v1\",\"positionSeconds\":1,\"entryId\":\"x\"}", 0, "entryId"},
};

static void test_history_cases(void **state)
{
    for (size_t i = 0; i < sizeof(history_cases) / sizeof(history_cases[0]); ++i) {
        field_errors_t e;
        history_input_t h;
        int rc =
            validate_history_body(history_cases[i].body, strlen(history_cases[i].body), &h, &e);
        check_case(&history_cases[i], rc, &e);
    }
}

static void test_history_values(void **state)
{
    static const char body[] = "{\"videoId\":\"v.1\",\"positionSeconds\":30,\"durationSeconds\":"
                               "120,\"watchedAt\":\"2025-01-02T03:04:05.678Z\"}";
    field_errors_t e;
    history_input_t h;
    assert_int_equal(validate_history_body(body, strlen(body), &h, &e), 0);
    assert_string_equal(h.video_id, "v.1");
    assert_int_equal(h.position_seconds, 30);
    assert_int_equal(h.duration_seconds, 120);
    assert_string_equal(h.watched_at, "2025-01-02T03:04:05.678Z");

    static const char min[] = "{\"videoId\":\"v\",\"positionSeconds\":5}";
    assert_int_equal(validate_history_body(min, strlen(min), &h, &e), 0);
    assert_int_equal(h.duration_seconds, -1);
    assert_string_equal(h.watched_at, "");
}

/* ------------------------------------------------------------------ ratings */

static const body_case_t rating_cases[] = {
    {"{\"videoId\":\"v1\",\"rating\":1}", 1, NULL},
    {"{\"videoId\":\"v1\",\"rating\":5,\"review\":null}", 1, NULL},
    {"{\"videoId\":\"v1\",\"rating\":3,\"review\":\"Great.\\nWould watch again.\\t!\"}", 1, NULL},
    {"{\"videoId\":\"v1\",\"rating\":3,\"review\":\"\"}", 1, NULL},
    {"{\"videoId\":\"v1\",\"rating\":0}", 0, "rating"},
    {"{\"videoId\":\"v1\",\"rating\":6}", 0, "rating"},
    {"{\"videoId\":\"v1\",\"rating\":4.5}", 0, "rating"},
    {"{\"videoId\":\"v1\",\"rating\":4.0}", 0, "rating"},
    {"{\"videoId\":\"v1\",\"rating\":\"4\"}", 0, "rating"},
    {"{\"videoId\":\"v1\"}", 0, "rating"},
    {"{\"rating\":3}", 0, "videoId"},
    {"{\"videoId\":\"v1\",\"rating\":3,\"review\":5}", 0, "review"},
    {"{\"videoId\":\"v1\",\"rating\":3,\"review\":\"a\\u0000b\"}", 0, "review"},
    {"{\"videoId\":\"v1\",\"rating\":3,\"review\":\"a\\u001bb\"}", 0, "review"},
    {"{\"videoId\":\"v1\",\"rating\":3,\"stars\":3}", 0, "stars"},
};

static void test_rating_cases(void **state)
{
    for (size_t i = 0; i < sizeof(rating_cases) / sizeof(rating_cases[0]); ++i) {
        field_errors_t e;
        rating_input_t r;
        int rc = validate_rating_body(rating_cases[i].body, strlen(rating_cases[i].body), &r, &e);
        check_case(&rating_cases[i], rc, &e);
        if (rc != 0)
            assert_null(r.review);
        validate_rating_input_dispose(&r);
    }
}

static void test_rating_review_length(void **state)
{
    char buf[9000];
    field_errors_t e;
    rating_input_t r;

    for (int count = 2000; count <= 2001; ++count) {
        int n = snprintf(buf, sizeof(buf), "{\"videoId\":\"v\",\"rating\":2,\"review\":\"");
        for (int i = 0; i < count; ++i)
            n += snprintf(buf + n, sizeof(buf) - (size_t)n, "\xe2\x82\xac"); /* euro sign */
        n += snprintf(buf + n, sizeof(buf) - (size_t)n, "\"}");
        int rc = validate_rating_body(buf, (size_t)n, &r, &e);
        assert_int_equal(rc, count == 2000 ? 0 : -1);
        if (rc == 0) {
            assert_int_equal(r.rating, 2);
            assert_int_equal(strlen(r.review), 6000);
        }
        validate_rating_input_dispose(&r);
    }
    validate_rating_input_dispose(NULL);
}

/* ------------------------------------------------------------------ small predicates */

static void test_utf8_count(void **state)
{
    assert_int_equal(validate_utf8_count("abc", 3, true), 3);
    assert_int_equal(validate_utf8_count("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 9, true), 3);
    assert_int_equal(validate_utf8_count("a\nb", 3, true), -1);
    assert_int_equal(validate_utf8_count("a\nb", 3, false), 3);
    assert_int_equal(validate_utf8_count("\xc2\x85", 2, true), -1); /* C1 NEL */
    assert_int_equal(validate_utf8_count("\xc2\x85", 2, false), 1);
    assert_int_equal(validate_utf8_count("\xff", 1, false), -1);
    assert_int_equal(validate_utf8_count("\xc3", 1, false), -1);
    assert_int_equal(validate_utf8_count("\xe0\x80\xaf", 3, false), -1);     /* overlong */
    assert_int_equal(validate_utf8_count("\xed\xa0\x80", 3, false), -1);     /* surrogate */
    assert_int_equal(validate_utf8_count("\xf4\x90\x80\x80", 4, false), -1); /* > U+10FFFF */
    assert_int_equal(validate_utf8_count("", 0, true), 0);
}

static void test_rfc3339(void **state)
{
    assert_true(validate_rfc3339("2000-02-29T00:00:00Z", 20));
    assert_false(validate_rfc3339("1900-02-29T00:00:00Z", 20));
    assert_true(validate_rfc3339("1999-12-31T23:59:59-23:59", 25));
    assert_false(validate_rfc3339("1999-12-31T23:59:59-24:00", 25));
    assert_false(validate_rfc3339("1999-12-31T23:59:59Zjunk", 24));
    assert_false(validate_rfc3339("1999-12-31", 10));
    assert_false(validate_rfc3339("1999-04-31T00:00:00Z", 20));
    assert_false(validate_rfc3339("19x9-04-01T00:00:00Z", 20));
    /* year 10000 in UTC: west of UTC on the last evening of 9999 */
    assert_false(validate_rfc3339("9999-12-31T23:30:00-01:00", 25));
    assert_false(validate_rfc3339("9999-12-31T23:00:00-01:00", 25));
    assert_false(validate_rfc3339("9999-12-31T12:00:00.5-12:00", 27));
    assert_true(validate_rfc3339("9999-12-31T22:59:59.999-01:00", 29));
    assert_true(validate_rfc3339("9999-12-31T23:59:59Z", 20));
    assert_true(validate_rfc3339("9999-12-31T23:59:59+01:00", 25));
    assert_true(validate_rfc3339("9998-12-31T23:30:00-01:00", 25));
}

static void test_errors_api(void **state)
{
    field_errors_t e;
    field_errors_init(&e);
    for (int i = 0; i < 40; ++i)
        field_errors_add(&e, "f", "m");
    assert_int_equal(e.count, FIELD_ERRORS_MAX);
    field_errors_init(&e);
    field_errors_add(&e, NULL, "m");
    assert_string_equal(e.items[0].field, "");
    /* truncation at a code point boundary */
    char field[100];
    memset(field, 'a', sizeof(field));
    memcpy(field + 63, "\xc3\xa9", 2);
    field[99] = '\0';
    field_errors_add(&e, field, "m");
    assert_int_equal(strlen(e.items[1].field), 63);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_rules),         cmocka_unit_test(test_embedded_nul_byte),
        cmocka_unit_test(test_depth_and_elements), cmocka_unit_test(test_duplicate_nested_path),
        cmocka_unit_test(test_profile_cases),      cmocka_unit_test(test_profile_values),
        cmocka_unit_test(test_profile_lengths),    cmocka_unit_test(test_profile_many_errors),
        cmocka_unit_test(test_history_cases),      cmocka_unit_test(test_history_values),
        cmocka_unit_test(test_rating_cases),       cmocka_unit_test(test_rating_review_length),
        cmocka_unit_test(test_utf8_count),         cmocka_unit_test(test_rfc3339),
        cmocka_unit_test(test_errors_api),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
