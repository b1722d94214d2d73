/*
 * Binary page results to JSON: checks every value's type, NULL and length against the page's
 * layout before reading it, and writes the members in the order V002's api_json_* functions do.
 */
#include <stdbool.h>
#include <string.h>
#include "api/data/listrender.h"
#include "api/data/cursor.h"
#include "api/data/sql.h"

/* Type OIDs of pg_type (fixed since PostgreSQL's bootstrap catalogue). */
#define OID_INT8 20
#define OID_INT2 21
#define OID_INT4 23
#define OID_TEXT 25
#define OID_TIMESTAMPTZ 1184
#define OID_UUID 2950

#define USECS_PER_DAY 86400000000LL
#define PG_EPOCH_UNIX_US LISTRENDER_PG_EPOCH_UNIX_US
#define PG_EPOCH_UNIX_DAYS 10957
#define TS_NOBEGIN INT64_MIN /* -infinity */
#define TS_NOEND INT64_MAX   /* infinity */

typedef struct st_col_t {
    Oid type;
    int len; /* bytes of a fixed-size value, -1 for text */
    bool nullable;
} col_t;

static const col_t watch_cols[SQL_WATCH__COLS] = {
    [SQL_PAGE_COL_VERSION] = {OID_INT8, 8, false},
    [SQL_WATCH_COL_VIDEO] = {OID_TEXT, -1, false},
    [SQL_WATCH_COL_ADDED_AT] = {OID_TIMESTAMPTZ, 8, false},
};
static const col_t history_cols[SQL_HISTORY__COLS] = {
    [SQL_PAGE_COL_VERSION] = {OID_INT8, 8, false},
    [SQL_HISTORY_COL_ENTRY_ID] = {OID_UUID, 16, false},
    [SQL_HISTORY_COL_VIDEO] = {OID_TEXT, -1, false},
    [SQL_HISTORY_COL_POSITION] = {OID_INT4, 4, false},
    [SQL_HISTORY_COL_DURATION] = {OID_INT4, 4, true},
    [SQL_HISTORY_COL_WATCHED_AT] = {OID_TIMESTAMPTZ, 8, false},
};
static const col_t rating_cols[SQL_RATING__COLS] = {
    [SQL_PAGE_COL_VERSION] = {OID_INT8, 8, false},
    [SQL_RATING_COL_VIDEO] = {OID_TEXT, -1, false},
    [SQL_RATING_COL_RATING] = {OID_INT2, 2, false},
    [SQL_RATING_COL_REVIEW] = {OID_TEXT, -1, true},
    [SQL_RATING_COL_CREATED_AT] = {OID_TIMESTAMPTZ, 8, false},
    [SQL_RATING_COL_UPDATED_AT] = {OID_TIMESTAMPTZ, 8, false},
};

static const struct {
    const col_t *cols;
    int ncols;
    int ts_col; /* sort timestamp: the cursor's ts */
    int id_col; /* tie-breaker: the cursor's id; NULL here marks the empty page */
} layouts[] = {
    [LISTRENDER_WATCHLIST] = {watch_cols, SQL_WATCH__COLS, SQL_WATCH_COL_ADDED_AT,
                              SQL_WATCH_COL_VIDEO},
    [LISTRENDER_HISTORY] = {history_cols, SQL_HISTORY__COLS, SQL_HISTORY_COL_WATCHED_AT,
                            SQL_HISTORY_COL_ENTRY_ID},
    [LISTRENDER_RATINGS] = {rating_cols, SQL_RATING__COLS, SQL_RATING_COL_UPDATED_AT,
                            SQL_RATING_COL_VIDEO},
};

static uint64_t be_u64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

static int64_t get_i64(const PGresult *res, int row, int col)
{
    return (int64_t)be_u64((const unsigned char *)PQgetvalue(res, row, col));
}

static int32_t get_i32(const PGresult *res, int row, int col)
{
    const unsigned char *p = (const unsigned char *)PQgetvalue(res, row, col);
    return (int32_t)((uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]);
}

static int16_t get_i16(const PGresult *res, int row, int col)
{
    const unsigned char *p = (const unsigned char *)PQgetvalue(res, row, col);
    return (int16_t)(uint16_t)((unsigned)p[0] << 8 | p[1]);
}

/* Days since 1970-01-01 to a proleptic Gregorian date (H. Hinnant's civil_from_days). */
static void civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
    int64_t era, doe, yoe, doy, mp;
    z += 719468;
    era = (z >= 0 ? z : z - 146096) / 146097;
    doe = z - era * 146097;
    yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

static char *put2(char *p, int v)
{
    p[0] = (char)('0' + v / 10);
    p[1] = (char)('0' + v % 10);
    return p + 2;
}

int listrender_timestamp(strbuf_t *out, int64_t pg_us)
{
    char buf[40], *p = buf;
    int64_t days, rem, y;
    int mo, d, ms;
    char ydig[24];
    int ny = 0;

    if (pg_us == TS_NOBEGIN || pg_us == TS_NOEND)
        return -1;
    /* floor division: times before 2000 (and 1970) count back from the previous midnight,
     * as timestamp2tm() does, so the fraction is never negative */
    days = pg_us / USECS_PER_DAY;
    rem = pg_us % USECS_PER_DAY;
    if (rem < 0) {
        rem += USECS_PER_DAY;
        days--;
    }
    civil_from_days(days + PG_EPOCH_UNIX_DAYS, &y, &mo, &d);
    if (y < 1)
        return -1; /* to_char writes BC years differently; the API never stores them */
    do {
        ydig[ny++] = (char)('0' + y % 10);
        y /= 10;
    } while (y != 0);
    while (ny < 4)
        ydig[ny++] = '0';
    while (ny > 0)
        *p++ = ydig[--ny];
    *p++ = '-';
    p = put2(p, mo);
    *p++ = '-';
    p = put2(p, d);
    *p++ = 'T';
    p = put2(p, (int)(rem / 3600000000LL));
    *p++ = ':';
    p = put2(p, (int)(rem / 60000000LL % 60));
    *p++ = ':';
    p = put2(p, (int)(rem / 1000000LL % 60));
    *p++ = '.';
    ms = (int)(rem % 1000000LL / 1000); /* to_char's MS truncates the microseconds */
    *p++ = (char)('0' + ms / 100);
    p = put2(p, ms % 100);
    *p++ = 'Z';
    strbuf_append(out, buf, (size_t)(p - buf));
    return 0;
}

/* Writes the 36 characters of a uuid (no NUL). */
static void format_uuid(char *p, const unsigned char *bytes)
{
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            *p++ = '-';
        *p++ = hex[bytes[i] >> 4];
        *p++ = hex[bytes[i] & 15];
    }
}

void listrender_uuid(strbuf_t *out, const unsigned char *bytes)
{
    char buf[36];
    format_uuid(buf, bytes);
    strbuf_append(out, buf, sizeof(buf));
}

/* Every value of `row` is present when it must be and of its type's size. */
static bool row_ok(const PGresult *res, const col_t *cols, int ncols, int row)
{
    for (int c = 0; c < ncols; c++) {
        if (PQgetisnull(res, row, c)) {
            if (!cols[c].nullable)
                return false;
        } else if (cols[c].len >= 0 && PQgetlength(res, row, c) != cols[c].len) {
            return false;
        }
    }
    return true;
}

static void append_text(strbuf_t *out, const PGresult *res, int row, int col)
{
    strbuf_append_json_string(out, PQgetvalue(res, row, col), (size_t)PQgetlength(res, row, col));
}

/* One member of an item's JSON object: its text up to the value, the column, how to write it. */
typedef enum { VAL_TEXT, VAL_UUID, VAL_INT2, VAL_INT4, VAL_TS } val_kind_t;
typedef struct st_member_t {
    const char *prefix; /* `{"name":` for the first member, `,"name":` for the others */
    int col;
    val_kind_t kind;
} member_t;

/* The members in the order V002's api_json_* functions wrote them. */
static const member_t watch_members[] = {
    {"{\"videoId\":", SQL_WATCH_COL_VIDEO, VAL_TEXT},
    {",\"addedAt\":", SQL_WATCH_COL_ADDED_AT, VAL_TS},
};
static const member_t history_members[] = {
    {"{\"entryId\":", SQL_HISTORY_COL_ENTRY_ID, VAL_UUID},
    {",\"videoId\":", SQL_HISTORY_COL_VIDEO, VAL_TEXT},
    {",\"positionSeconds\":", SQL_HISTORY_COL_POSITION, VAL_INT4},
    {",\"durationSeconds\":", SQL_HISTORY_COL_DURATION, VAL_INT4},
    {",\"watchedAt\":", SQL_HISTORY_COL_WATCHED_AT, VAL_TS},
};
static const member_t rating_members[] = {
    {"{\"videoId\":", SQL_RATING_COL_VIDEO, VAL_TEXT},
    {",\"rating\":", SQL_RATING_COL_RATING, VAL_INT2},
    {",\"review\":", SQL_RATING_COL_REVIEW, VAL_TEXT},
    {",\"createdAt\":", SQL_RATING_COL_CREATED_AT, VAL_TS},
    {",\"updatedAt\":", SQL_RATING_COL_UPDATED_AT, VAL_TS},
};

static const struct {
    const member_t *members;
    size_t n;
} items[] = {
    [LISTRENDER_WATCHLIST] = {watch_members, sizeof(watch_members) / sizeof(watch_members[0])},
    [LISTRENDER_HISTORY] = {history_members, sizeof(history_members) / sizeof(history_members[0])},
    [LISTRENDER_RATINGS] = {rating_members, sizeof(rating_members) / sizeof(rating_members[0])},
};

/* A value; NULL (only where the layout allows it) is JSON null. -1 for a timestamp out of range. */
static int append_value(strbuf_t *out, const PGresult *res, int row, const member_t *m)
{
    if (PQgetisnull(res, row, m->col)) {
        strbuf_append_str(out, "null");
        return 0;
    }
    switch (m->kind) {
    case VAL_TEXT:
        append_text(out, res, row, m->col);
        return 0;
    case VAL_UUID:
        strbuf_append(out, "\"", 1);
        listrender_uuid(out, (const unsigned char *)PQgetvalue(res, row, m->col));
        strbuf_append(out, "\"", 1);
        return 0;
    case VAL_INT2:
        strbuf_append_i64(out, get_i16(res, row, m->col));
        return 0;
    case VAL_INT4:
        strbuf_append_i64(out, get_i32(res, row, m->col));
        return 0;
    case VAL_TS:
        strbuf_append(out, "\"", 1);
        if (listrender_timestamp(out, get_i64(res, row, m->col)) != 0)
            return -1;
        strbuf_append(out, "\"", 1);
        return 0;
    }
    return -1;
}

static int render_item(strbuf_t *out, const PGresult *res, listrender_kind_t kind, int row)
{
    for (size_t i = 0; i < items[kind].n; i++) {
        strbuf_append_str(out, items[kind].members[i].prefix);
        if (append_value(out, res, row, &items[kind].members[i]) != 0)
            return -1;
    }
    strbuf_append(out, "}", 1);
    return 0;
}

/* The keyset of item `row` as a cursor; -1 when its id cannot be a cursor id. */
static int cursor_of(const PGresult *res, listrender_kind_t kind, int row, char cursor_kind,
                     cursor_t *c)
{
    int idcol = layouts[kind].id_col;
    int64_t ts = get_i64(res, row, layouts[kind].ts_col);

    memset(c, 0, sizeof(*c));
    c->kind = cursor_kind;
    if (ts > INT64_MAX - PG_EPOCH_UNIX_US)
        return -1;
    c->ts_us = ts + PG_EPOCH_UNIX_US;
    if (kind == LISTRENDER_HISTORY) {
        format_uuid(c->id, (const unsigned char *)PQgetvalue(res, row, idcol)); /* 36 < 64 */
    } else {
        size_t len = (size_t)PQgetlength(res, row, idcol);
        if (len == 0 || len > CURSOR_MAX_ID)
            return -1;
        memcpy(c->id, PQgetvalue(res, row, idcol), len);
    }
    return 0;
}

/* nextCursor of item `row`; null when its id cannot be a cursor id (as V002's callers did). */
static void append_cursor(strbuf_t *out, const PGresult *res, listrender_kind_t kind, int row,
                          char cursor_kind)
{
    cursor_t c;
    char enc[CURSOR_MAX_ENCODED];

    if (cursor_of(res, kind, row, cursor_kind, &c) != 0) {
        strbuf_append_str(out, "null");
        return;
    }
    cursor_encode(&c, enc);
    strbuf_append_char(out, '"');
    strbuf_append_str(out, enc); /* base64url: nothing to escape */
    strbuf_append_char(out, '"');
}

/* Checks the result's shape; sets the row and item counts. -1 when it is not a page. */
static int check_page(const PGresult *res, listrender_kind_t kind, int limit, int *nrows,
                      int *nitems)
{
    const col_t *cols;
    int ncols;

    if (res == NULL || (unsigned)kind > LISTRENDER_RATINGS || limit < 1)
        return -1;
    cols = layouts[kind].cols;
    ncols = layouts[kind].ncols;
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQnfields(res) != ncols ||
        (*nrows = PQntuples(res)) < 1)
        return -1;
    for (int c = 0; c < ncols; c++)
        if (PQfformat(res, c) != 1 || PQftype(res, c) != cols[c].type)
            return -1;
    /* the version is on every row; an empty page is exactly one row without an item */
    if (PQgetisnull(res, 0, 0) || PQgetlength(res, 0, 0) != 8)
        return -1;
    if (PQgetisnull(res, 0, layouts[kind].id_col)) {
        if (*nrows != 1)
            return -1;
        *nitems = 0;
    } else {
        *nitems = *nrows < limit ? *nrows : limit;
        for (int r = 0; r < *nitems; r++)
            if (!row_ok(res, cols, ncols, r))
                return -1;
    }
    return 0;
}

int listrender_page(const PGresult *res, listrender_kind_t kind, int limit, char cursor_kind,
                    strbuf_t *out, int64_t *version)
{
    size_t start = out->len;
    int nrows, nitems;

    if (check_page(res, kind, limit, &nrows, &nitems) != 0)
        return -1;
    *version = get_i64(res, 0, SQL_PAGE_COL_VERSION);

    strbuf_reserve(out, 40 + (size_t)nitems * (kind == LISTRENDER_WATCHLIST ? 64 : 160));
    strbuf_append_str(out, "{\"items\":[");
    for (int r = 0; r < nitems; r++) {
        if (r > 0)
            strbuf_append_char(out, ',');
        if (render_item(out, res, kind, r) != 0)
            goto Error;
    }
    strbuf_append_str(out, "],\"nextCursor\":");
    if (nitems > 0 && nrows > limit)
        append_cursor(out, res, kind, limit - 1, cursor_kind);
    else
        strbuf_append_str(out, "null");
    strbuf_append_char(out, '}');
    return 0;

Error:
    out->len = start;
    out->data[start] = '\0';
    return -1;
}

int listrender_items(const PGresult *res, listrender_kind_t kind, int limit, bool after_item,
                     strbuf_t *out, int *nitems, cursor_t *next, bool *more)
{
    size_t start = out->len;
    int nrows;

    *more = false;
    if (check_page(res, kind, limit, &nrows, nitems) != 0)
        return -1;
    strbuf_reserve(out, 8 + (size_t)*nitems * (kind == LISTRENDER_WATCHLIST ? 64 : 160));
    for (int r = 0; r < *nitems; r++) {
        if (r > 0 || after_item)
            strbuf_append_char(out, ',');
        if (render_item(out, res, kind, r) != 0)
            goto Error;
    }
    if (*nitems > 0 && nrows > limit) {
        if (cursor_of(res, kind, limit - 1, 'x', next) != 0)
            goto Error;
        *more = true;
    }
    return 0;

Error:
    out->len = start;
    out->data[start] = '\0';
    return -1;
}
