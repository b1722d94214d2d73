/*
 * The query string of the list endpoints: limit, cursor, view and videoId, percent-decoded and
 * checked (the cursor itself is decoded by api/data/cursor.c).
 */
#include <stdio.h>
#include <string.h>
#include "common/stringify.h"
#include "api/codec/ids.h"
#include "api/codec/pct.h"
#include "api/resources/listquery.h"

/* Percent-decodes s[0..len) into out (cap bytes, NUL-terminated); '+' is a space. Returns the
 * decoded length, -1 on a bad escape, -2 when it does not fit. */
static long pct_decode(const char *s, size_t len, char *out, size_t cap)
{
    size_t i, n = 0;

    for (i = 0; i < len; ++i) {
        char c = s[i];
        if (c == '%') {
            int hi, lo;
            if (i + 2 >= len)
                return -1;
            hi = pct_hexval(s[i + 1]), lo = pct_hexval(s[i + 2]);
            if (hi < 0 || lo < 0)
                return -1;
            c = (char)(hi * 16 + lo);
            i += 2;
        } else if (c == '+') {
            c = ' ';
        }
        if (n + 1 >= cap)
            return -2;
        out[n++] = c;
    }
    out[n] = '\0';
    return (long)n;
}

static bool parse_limit(const char *s, size_t len, int *out)
{
    size_t i;
    int v = 0;

    if (len < 1 || len > 3 || s[0] == '0')
        return false;
    for (i = 0; i < len; ++i) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    if (v < 1 || v > LIST_LIMIT_MAX)
        return false;
    *out = v;
    return true;
}

static bool cursor_text_ok(const char *s, size_t len)
{
    size_t i;

    if (len < 1 || len > 160)
        return false;
    for (i = 0; i < len; ++i) {
        char c = s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_'))
            return false;
    }
    return true;
}

#define Q_LIMIT 0x4u /* beside VALIDATE_Q_VIEW and VALIDATE_Q_VIDEO_ID, always accepted */
#define Q_CURSOR 0x8u

/* One parameter `name`=`value` (vlen < 0: too long to decode) into `out`; unknown ones and
 * ones not in `allow` are ignored. Returns the number of errors it added (0 or 1). */
static int take_param(const char *name, const char *value, long vlen, unsigned allow,
                      unsigned *seen, list_query_t *out, field_errors_t *errs)
{
    const char *why = NULL;
    unsigned bit;

    if (strcmp(name, "limit") == 0)
        bit = Q_LIMIT;
    else if (strcmp(name, "cursor") == 0)
        bit = Q_CURSOR;
    else if (strcmp(name, "view") == 0 && (allow & VALIDATE_Q_VIEW) != 0)
        bit = VALIDATE_Q_VIEW;
    else if (strcmp(name, "videoId") == 0 && (allow & VALIDATE_Q_VIDEO_ID) != 0)
        bit = VALIDATE_Q_VIDEO_ID;
    else
        return 0;
    if ((*seen & bit) != 0) {
        why = "given more than once";
    } else if (bit == Q_LIMIT) {
        if (vlen < 0 || !parse_limit(value, (size_t)vlen, &out->limit))
            why = "must be an integer from 1 to " PROFILE_STR(LIST_LIMIT_MAX);
    } else if (bit == Q_CURSOR) {
        /* "cursor=" (empty) is the first page, as if absent */
        if (vlen < 0 || (vlen > 0 && !cursor_text_ok(value, (size_t)vlen)))
            why = "is not a valid cursor";
        else if (vlen > 0)
            memcpy(out->cursor, value, (size_t)vlen + 1);
    } else if (bit == VALIDATE_Q_VIEW) {
        if (vlen < 0 || strcmp(value, "continue") != 0 || (size_t)vlen != 8)
            why = "must be \"continue\"";
        else
            out->view_continue = true;
    } else {
        if (vlen < 0 || !ids_valid(value, (size_t)vlen))
            why = "must match ^[A-Za-z0-9._-]{1,64}$";
        else
            memcpy(out->video_id, value, (size_t)vlen + 1);
    }
    *seen |= bit;
    if (why == NULL)
        return 0;
    field_errors_add(errs, name, why);
    return 1;
}

int validate_list_query(const char *qs, size_t len, unsigned allow, list_query_t *out,
                        field_errors_t *errs)
{
    unsigned seen = 0; /* VALIDATE_Q_* and Q_* bits of the parameters met so far */
    size_t i = 0;
    int bad = 0;

    field_errors_init(errs);
    memset(out, 0, sizeof(*out));
    out->limit = LIST_LIMIT_DEFAULT;
    if (qs == NULL)
        len = 0;
    if (len > VALIDATE_MAX_QUERY) {
        field_errors_add(errs, "query", "query string too long");
        return -1;
    }
    while (i < len) {
        size_t end = i, eq;
        char name[32], value[VALIDATE_MAX_QUERY + 1];
        long nlen, vlen;

        while (end < len && qs[end] != '&')
            ++end;
        for (eq = i; eq < end && qs[eq] != '='; ++eq)
            ;
        if (end == i) { /* empty pair ("a=1&&b=2") */
            i = end + 1;
            continue;
        }
        nlen = pct_decode(qs + i, eq - i, name, sizeof(name));
        vlen = eq < end ? pct_decode(qs + eq + 1, end - eq - 1, value, sizeof(value)) : 0;
        if (eq >= end)
            value[0] = '\0';
        i = end + 1;
        if (nlen == -1) {
            field_errors_add(errs, "query", "bad percent-encoding");
            ++bad;
            continue;
        }
        if (nlen == -2 || strlen(name) != (size_t)nlen)
            continue; /* a name this long, or with a NUL, is no parameter we know */
        if (vlen == -1) {
            field_errors_add(errs, name, "bad percent-encoding");
            ++bad;
            continue;
        }
        bad += take_param(name, value, vlen, allow, &seen, out, errs);
    }
    if (bad != 0) {
        memset(out, 0, sizeof(*out));
        out->limit = LIST_LIMIT_DEFAULT;
    }
    return bad == 0 ? 0 : -1;
}
