/*
 * Unit tests for api/data/listrender.c: timestamps as to_char writes them, uuids, JSON escaping as
 * to_json writes it, integer types, the next cursor, and malformed results refused.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>
#include "api/data/cursor.h"
#include "api/data/listrender.h"

#define T_INT8 20
#define T_INT2 21
#define T_INT4 23
#define T_TEXT 25
#define T_TSTZ 1184
#define T_UUID 2950
#define PG_EPOCH_UNIX_US 946684800000000LL

/* ---------------------------------------------------------------- building results */

typedef struct st_val_t {
    const char *p; /* NULL = SQL NULL */
    int len;
} val_t;

static PGresult *make_result(int ncols, const Oid *types, int format)
{
    PGresult *res = PQmakeEmptyPGresult(NULL, PGRES_TUPLES_OK);
    PGresAttDesc attrs[8];
    char names[8][8];
    assert_non_null(res);
    memset(attrs, 0, sizeof(attrs));
    for (int i = 0; i < ncols; i++) {
        snprintf(names[i], sizeof(names[i]), "c%d", i);
        attrs[i].name = names[i];
        attrs[i].format = format;
        attrs[i].typid = types[i];
        attrs[i].typlen = -1;
        attrs[i].atttypmod = -1;
    }
    assert_true(PQsetResultAttrs(res, ncols, attrs));
    return res;
}

static void set_row(PGresult *res, int row, int ncols, const val_t *vals)
{
    for (int i = 0; i < ncols; i++)
        assert_true(PQsetvalue(res, row, i, (char *)(uintptr_t)vals[i].p,
                               vals[i].p == NULL ? -1 : vals[i].len));
}

/* Big-endian encodings into caller storage. */
static val_t be64(char *buf, int64_t v)
{
    for (int i = 7; i >= 0; i--) {
        buf[i] = (char)(v & 0xff);
        v = (int64_t)((uint64_t)v >> 8);
    }
    return (val_t){buf, 8};
}

static val_t be32(char *buf, int32_t v)
{
    uint32_t u = (uint32_t)v;
    buf[0] = (char)(u >> 24), buf[1] = (char)(u >> 16), buf[2] = (char)(u >> 8), buf[3] = (char)u;
    return (val_t){buf, 4};
}

static val_t be16(char *buf, int16_t v)
{
    uint16_t u = (uint16_t)v;
    buf[0] = (char)(u >> 8), buf[1] = (char)u;
    return (val_t){buf, 2};
}

static val_t txt(const char *s)
{
    return (val_t){s, (int)strlen(s)};
}

static const val_t NUL = {NULL, 0};

/* Microseconds since 2000-01-01 of a Unix-epoch microsecond time. */
static int64_t pgts(int64_t unix_us)
{
    return unix_us - PG_EPOCH_UNIX_US;
}

static const Oid watch_types[] = {T_INT8, T_TEXT, T_TSTZ};
static const Oid history_types[] = {T_INT8, T_UUID, T_TEXT, T_INT4, T_INT4, T_TSTZ};
static const Oid rating_types[] = {T_INT8, T_TEXT, T_INT2, T_TEXT, T_TSTZ, T_TSTZ};

/* A watchlist page of `n` items v<n-1>..v0 with added_at 1.5 s apart, version 7. */
static PGresult *watch_page(int n)
{
    PGresult *res = make_result(3, watch_types, 1);
    for (int i = 0; i < n; i++) {
        char b0[8], b2[8], id[16];
        snprintf(id, sizeof(id), "v%d", n - 1 - i);
        val_t v[3] = {be64(b0, 7), txt(id), be64(b2, pgts(1700000000000000LL - i * 1500000LL))};
        set_row(res, i, 3, v);
    }
    if (n == 0) {
        char b0[8];
        val_t v[3] = {be64(b0, 7), NUL, NUL};
        set_row(res, 0, 3, v);
    }
    return res;
}

static char *render(const PGresult *res, listrender_kind_t kind, int limit, char ck, int rc_expect,
                    int64_t *version)
{
    static char copy[8192];
    strbuf_t b;
    int64_t ver = -1;
    strbuf_init(&b);
    strbuf_append_str(&b, "pre:");
    assert_int_equal(listrender_page(res, kind, limit, ck, &b, &ver), rc_expect);
    if (rc_expect != 0)
        assert_string_equal(b.data, "pre:"); /* left as it was */
    assert_true(b.len < sizeof(copy));
    memcpy(copy, b.data + 4, b.len - 4 + 1);
    strbuf_dispose(&b);
    if (version != NULL)
        *version = ver;
    return copy;
}

/* ---------------------------------------------------------------- scalars */

static void test_timestamps(void **state)
{
    /* expected values printed by V002's api_ts() (to_char ... MS) on PostgreSQL 15 */
    static const struct {
        int64_t pg_us;
        const char *want;
    } cases[] = {
        {848960954123456LL, "2026-11-25T22:29:14.123Z"},
        {-946684800000001LL, "1969-12-31T23:59:59.999Z"}, /* before 1970: floor, not toward 0 */
        {-500, "1999-12-31T23:59:59.999Z"},               /* before 2000 */
        {-3155673599999500LL, "1900-01-01T00:00:00.000Z"},
        {762523200999999LL, "2024-02-29T12:00:00.999Z"}, /* leap day, .999999 truncated */
        {0, "2000-01-01T00:00:00.000Z"},
        {-3155677200000000LL, "1899-12-31T23:00:00.000Z"},
        {-63082281600000000LL, "0001-01-01T00:00:00.000Z"},
        {252455616000001000LL, "10000-01-01T00:00:00.001Z"},
        {-946684800000000LL, "1970-01-01T00:00:00.000Z"},
        {-3150576000000000LL, "1900-03-01T00:00:00.000Z"}, /* 1900 is not a leap year */
        {3160857599999000LL, "2100-02-28T23:59:59.999Z"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        strbuf_t b;
        strbuf_init(&b);
        assert_int_equal(listrender_timestamp(&b, cases[i].pg_us), 0);
        assert_string_equal(b.data, cases[i].want);
        strbuf_dispose(&b);
    }
}

static void test_timestamp_refused(void **state)
{
    strbuf_t b;
    strbuf_init(&b);
    assert_int_equal(listrender_timestamp(&b, INT64_MAX), -1);            /* infinity */
    assert_int_equal(listrender_timestamp(&b, INT64_MIN), -1);            /* -infinity */
    assert_int_equal(listrender_timestamp(&b, -63082281600000001LL), -1); /* 1 BC */
    assert_int_equal((int)b.len, 0);
    strbuf_dispose(&b);
}

static void test_uuid(void **state)
{
    static const unsigned char u[16] = {0x0b, 0x9d, 0x6a, 0x3c, 0x2f, 0x43, 0x4d, 0x1e,
                                        0x9a, 0x59, 0x5d, 0x0b, 0x6c, 0x7e, 0x8f, 0xA0};
    strbuf_t b;
    strbuf_init(&b);
    listrender_uuid(&b, u);
    assert_string_equal(b.data, "0b9d6a3c-2f43-4d1e-9a59-5d0b6c7e8fa0");
    strbuf_dispose(&b);
}

static void test_escaping(void **state)
{
    /* what to_json(text) writes: the seven short escapes, \u00xx for the other C0 controls,
     * DEL and UTF-8 unchanged */
    static const char in[] = "a\"b\\c/\n\t\r\b\f\x01\x1f\x7f \xc3\xa9 \xf0\x9f\x98\x80";
    static const char want[] =
        "\"a\\\"b\\\\c/\\n\\t\\r\\b\\f\\u0001\\u001f\x7f \xc3\xa9 \xf0\x9f\x98\x80\"";
    strbuf_t b;
    strbuf_init(&b);
    strbuf_append_json_string(&b, in, sizeof(in) - 1);
    assert_string_equal(b.data, want);
    strbuf_reset(&b);
    strbuf_append_json_string(&b, "", 0);
    assert_string_equal(b.data, "\"\"");
    strbuf_dispose(&b);
}

/* ---------------------------------------------------------------- pages */

static void test_watchlist_pages(void **state)
{
    int64_t ver;
    PGresult *res = watch_page(3);
    cursor_t c;
    char *body, *cur, *end;

    /* fewer rows than the limit: all items, no cursor */
    body = render(res, LISTRENDER_WATCHLIST, 5, 'w', 0, &ver);
    assert_int_equal((int)ver, 7);
    assert_string_equal(body,
                        "{\"items\":[{\"videoId\":\"v2\",\"addedAt\":\"2023-11-14T22:13:20.000Z\"},"
                        "{\"videoId\":\"v1\",\"addedAt\":\"2023-11-14T22:13:18.500Z\"},"
                        "{\"videoId\":\"v0\",\"addedAt\":\"2023-11-14T22:13:17.000Z\"}],"
                        "\"nextCursor\":null}");
    /* exactly `limit` rows: no next page */
    body = render(res, LISTRENDER_WATCHLIST, 3, 'w', 0, NULL);
    assert_non_null(strstr(body, "\"nextCursor\":null}"));
    /* limit + 1 rows: `limit` items and the cursor of the last one */
    body = render(res, LISTRENDER_WATCHLIST, 2, 'w', 0, NULL);
    assert_null(strstr(body, "\"v0\""));
    cur = strstr(body, "\"nextCursor\":\"");
    assert_non_null(cur);
    cur += strlen("\"nextCursor\":\"");
    end = strchr(cur, '"');
    assert_non_null(end);
    assert_string_equal(end, "\"}");
    assert_int_equal(cursor_decode(cur, (size_t)(end - cur), 'w', &c), 0);
    assert_true(c.ts_us == 1700000000000000LL - 1500000LL);
    assert_string_equal(c.id, "v1");
    assert_int_equal(cursor_decode(cur, (size_t)(end - cur), 'h', &c), -1); /* kind is kept */
    /* limit 1: the cursor of the first row */
    body = render(res, LISTRENDER_WATCHLIST, 1, 'w', 0, NULL);
    cur = strstr(body, "\"nextCursor\":\"") + strlen("\"nextCursor\":\"");
    assert_int_equal(cursor_decode(cur, strlen(cur) - 2, 'w', &c), 0);
    assert_string_equal(c.id, "v2");
    assert_true(c.ts_us == 1700000000000000LL);
    PQclear(res);
}

static void test_empty_page(void **state)
{
    int64_t ver;
    PGresult *res = watch_page(0);
    assert_string_equal(render(res, LISTRENDER_WATCHLIST, 50, 'w', 0, &ver),
                        "{\"items\":[],\"nextCursor\":null}");
    assert_int_equal((int)ver, 7);
    PQclear(res);

    /* history and ratings: the version row alone */
    res = make_result(6, history_types, 1);
    {
        char b0[8];
        val_t v[6] = {be64(b0, 0), NUL, NUL, NUL, NUL, NUL};
        set_row(res, 0, 6, v);
    }
    assert_string_equal(render(res, LISTRENDER_HISTORY, 1, 'c', 0, &ver),
                        "{\"items\":[],\"nextCursor\":null}");
    assert_int_equal((int)ver, 0);
    PQclear(res);
    res = make_result(6, rating_types, 1);
    {
        char b0[8];
        val_t v[6] = {be64(b0, 1234567890123LL), NUL, NUL, NUL, NUL, NUL};
        set_row(res, 0, 6, v);
    }
    assert_string_equal(render(res, LISTRENDER_RATINGS, 10, 'r', 0, &ver),
                        "{\"items\":[],\"nextCursor\":null}");
    assert_true(ver == 1234567890123LL);
    PQclear(res);
}

static void test_history_page(void **state)
{
    static const unsigned char u1[16] = {0xff, 0xee, 0xdd, 0xcc, 0xbb, 0xaa, 0x99, 0x88,
                                         0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, 0x00};
    static const unsigned char u2[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
    PGresult *res = make_result(6, history_types, 1);
    char a[8], b[4], c[4], d[8], e[8], f[4], g[8];
    cursor_t cur;
    char *body, *p;
    int64_t ver;
    {
        val_t v[6] = {be64(a, 42),    {(const char *)u1, 16}, txt("vid.1"),
                      be32(b, 86400), be32(c, 86400),         be64(d, pgts(-1LL))};
        set_row(res, 0, 6, v);
    }
    {
        val_t v[6] = {be64(e, 42), {(const char *)u2, 16},
                      txt("v_2"),  be32(f, 0),
                      NUL,         be64(g, pgts(-2208988800000000LL))};
        set_row(res, 1, 6, v);
    }
    body = render(res, LISTRENDER_HISTORY, 2, 'h', 0, &ver);
    assert_int_equal((int)ver, 42);
    assert_string_equal(
        body, "{\"items\":[{\"entryId\":\"ffeeddcc-bbaa-9988-7766-554433221100\",\"videoId\":"
              "\"vid.1\",\"positionSeconds\":86400,\"durationSeconds\":86400,\"watchedAt\":"
              "\"1969-12-31T23:59:59.999Z\"},{\"entryId\":\"00010203-0405-0607-0809-0a0b0c0d0e0f\","
              "\"videoId\":\"v_2\",\"positionSeconds\":0,\"durationSeconds\":null,\"watchedAt\":"
              "\"1900-01-01T00:00:00.000Z\"}],\"nextCursor\":null}");
    /* the cursor id of a history row is its entry id */
    body = render(res, LISTRENDER_HISTORY, 1, 'c', 0, NULL);
    p = strstr(body, "\"nextCursor\":\"") + strlen("\"nextCursor\":\"");
    assert_int_equal(cursor_decode(p, strlen(p) - 2, 'c', &cur), 0);
    assert_string_equal(cur.id, "ffeeddcc-bbaa-9988-7766-554433221100");
    assert_true(cur.ts_us == -1);
    PQclear(res);
}

static void test_ratings_page(void **state)
{
    PGresult *res = make_result(6, rating_types, 1);
    char a[8], b[2], d[8], e[8], a2[8], b2[2], d2[8], e2[8];
    char *body;
    {
        val_t v[6] = {be64(a, 3), txt("m1"),
                      be16(b, 5), txt("say \"hi\"\n\\ \x02 \xf0\x9f\x8e\xac"),
                      be64(d, 0), be64(e, 1000)};
        set_row(res, 0, 6, v);
    }
    {
        val_t v[6] = {be64(a2, 3), txt("m0"), be16(b2, -2), NUL, be64(d2, 0), be64(e2, 0)};
        set_row(res, 1, 6, v);
    }
    body = render(res, LISTRENDER_RATINGS, 50, 'r', 0, NULL);
    assert_string_equal(
        body, "{\"items\":[{\"videoId\":\"m1\",\"rating\":5,\"review\":\"say \\\"hi\\\"\\n\\\\ "
              "\\u0002 \xf0\x9f\x8e\xac\",\"createdAt\":\"2000-01-01T00:00:00.000Z\",\"updatedAt\":"
              "\"2000-01-01T00:00:00.001Z\"},{\"videoId\":\"m0\",\"rating\":-2,\"review\":null,"
              "\"createdAt\":\"2000-01-01T00:00:00.000Z\",\"updatedAt\":\"2000-01-01T00:00:00."
              "000Z\"}],\"nextCursor\":null}");
    PQclear(res);
}

static void test_ints(void **state)
{
    /* int4 extremes and the sign of int2 come through the big-endian decoding */
    PGresult *res = make_result(6, history_types, 1);
    static const unsigned char u[16] = {0};
    char a[8], b[4], c[4], d[8];
    val_t v[6] = {be64(a, INT64_MAX), {(const char *)u, 16}, txt("v"),
                  be32(b, INT32_MIN), be32(c, INT32_MAX),    be64(d, 0)};
    int64_t ver;
    set_row(res, 0, 6, v);
    assert_non_null(strstr(render(res, LISTRENDER_HISTORY, 5, 'h', 0, &ver),
                           "\"positionSeconds\":-2147483648,\"durationSeconds\":2147483647,"));
    assert_true(ver == INT64_MAX);
    PQclear(res);
}

/* ---------------------------------------------------------------- malformed results */

static void test_malformed(void **state)
{
    char a[8], t[8], shortv[4];
    PGresult *res;

    /* not a tuples result */
    res = PQmakeEmptyPGresult(NULL, PGRES_COMMAND_OK);
    render(res, LISTRENDER_WATCHLIST, 5, 'w', -1, NULL);
    PQclear(res);
    render(NULL, LISTRENDER_WATCHLIST, 5, 'w', -1, NULL);
    /* no row at all (the version row is missing) */
    res = make_result(3, watch_types, 1);
    render(res, LISTRENDER_WATCHLIST, 5, 'w', -1, NULL);
    PQclear(res);
    /* another layout's columns */
    res = watch_page(2);
    render(res, LISTRENDER_HISTORY, 5, 'h', -1, NULL);
    render(res, LISTRENDER_RATINGS, 5, 'r', -1, NULL);
    render(res, LISTRENDER_WATCHLIST, 0, 'w', -1, NULL); /* limit 0 */
    render(res, (listrender_kind_t)7, 5, 'w', -1, NULL);
    PQclear(res);
    /* text format */
    res = make_result(3, watch_types, 0);
    set_row(res, 0, 3, (val_t[]){txt("1"), txt("v"), txt("2026-01-01")});
    render(res, LISTRENDER_WATCHLIST, 5, 'w', -1, NULL);
    PQclear(res);
    /* a wrong type (int4 where the timestamp goes) */
    {
        const Oid types[] = {T_INT8, T_TEXT, T_INT8};
        res = make_result(3, types, 1);
        set_row(res, 0, 3, (val_t[]){be64(a, 1), txt("v"), be64(t, 0)});
        render(res, LISTRENDER_WATCHLIST, 5, 'w', -1, NULL);
        PQclear(res);
    }
    /* a short fixed-size value */
    res = make_result(3, watch_types, 1);
    set_row(res, 0, 3, (val_t[]){be64(a, 1), txt("v"), be32(shortv, 0)});
    render(res, LISTRENDER_WATCHLIST, 5, 'w', -1, NULL);
    PQclear(res);
    res = make_result(3, watch_types, 1);
    set_row(res, 0, 3, (val_t[]){be32(shortv, 1), txt("v"), be64(t, 0)});
    render(res, LISTRENDER_WATCHLIST, 5, 'w', -1, NULL);
    PQclear(res);
    /* NULL version; NULL timestamp of an item */
    res = make_result(3, watch_types, 1);
    set_row(res, 0, 3, (val_t[]){NUL, NUL, NUL});
    render(res, LISTRENDER_WATCHLIST, 5, 'w', -1, NULL);
    PQclear(res);
    res = make_result(3, watch_types, 1);
    set_row(res, 0, 3, (val_t[]){be64(a, 1), txt("v"), NUL});
    render(res, LISTRENDER_WATCHLIST, 5, 'w', -1, NULL);
    PQclear(res);
    /* an "empty page" row followed by more rows; an item row after the empty marker */
    res = make_result(3, watch_types, 1);
    set_row(res, 0, 3, (val_t[]){be64(a, 1), NUL, NUL});
    set_row(res, 1, 3, (val_t[]){be64(a, 1), txt("v"), be64(t, 0)});
    render(res, LISTRENDER_WATCHLIST, 5, 'w', -1, NULL);
    PQclear(res);
    res = make_result(3, watch_types, 1);
    set_row(res, 0, 3, (val_t[]){be64(a, 1), txt("v"), be64(t, 0)});
    set_row(res, 1, 3, (val_t[]){be64(a, 1), NUL, NUL});
    render(res, LISTRENDER_WATCHLIST, 5, 'w', -1, NULL);
    /* ...but the row past the limit is only the "more" marker and is not rendered */
    assert_non_null(strstr(render(res, LISTRENDER_WATCHLIST, 1, 'w', 0, NULL), "\"v\""));
    PQclear(res);
    /* infinity in a later item: nothing half-written is left behind */
    res = make_result(3, watch_types, 1);
    set_row(res, 0, 3, (val_t[]){be64(a, 1), txt("v1"), be64(t, 0)});
    {
        char inf[8];
        set_row(res, 1, 3, (val_t[]){be64(a, 1), txt("v0"), be64(inf, INT64_MAX)});
    }
    render(res, LISTRENDER_WATCHLIST, 5, 'w', -1, NULL);
    PQclear(res);
    /* a history row whose uuid is not 16 bytes; a NULL rating */
    {
        res = make_result(6, history_types, 1);
        char b[4];
        set_row(res, 0, 6,
                (val_t[]){be64(a, 1), txt("not-a-uuid"), txt("v"), be32(b, 1), NUL, be64(t, 0)});
        render(res, LISTRENDER_HISTORY, 5, 'h', -1, NULL);
        PQclear(res);
        res = make_result(6, rating_types, 1);
        set_row(res, 0, 6, (val_t[]){be64(a, 1), txt("v"), NUL, NUL, be64(t, 0), be64(t, 0)});
        render(res, LISTRENDER_RATINGS, 5, 'r', -1, NULL);
        PQclear(res);
    }
}

static void test_long_id_cursor(void **state)
{
    /* an id longer than a cursor can carry gives no cursor, as before (never truncated) */
    char id[80], a[8], t[8];
    PGresult *res = make_result(3, watch_types, 1);
    memset(id, 'x', 65);
    id[65] = '\0';
    set_row(res, 0, 3, (val_t[]){be64(a, 1), txt(id), be64(t, 0)});
    set_row(res, 1, 3, (val_t[]){be64(a, 1), txt("y"), be64(t, 0)});
    assert_non_null(
        strstr(render(res, LISTRENDER_WATCHLIST, 1, 'w', 0, NULL), "\"nextCursor\":null}"));
    PQclear(res);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_timestamps),
        cmocka_unit_test(test_timestamp_refused),
        cmocka_unit_test(test_uuid),
        cmocka_unit_test(test_escaping),
        cmocka_unit_test(test_watchlist_pages),
        cmocka_unit_test(test_empty_page),
        cmocka_unit_test(test_history_page),
        cmocka_unit_test(test_ratings_page),
        cmocka_unit_test(test_ints),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_long_id_cursor),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
