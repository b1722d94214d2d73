/*
 * Route matching over raw paths: split on '/', percent-decode the id segments, and report 404
 * or 405 (with the route's methods for Allow) before anything else runs.
 */
#include <string.h>
#include "api/codec/pct.h"
#include "api/http/routes.h"

#define M(x) (1u << (x))

static const struct {
    unsigned methods;
    const char *allow;
    const char *tmpl;
} routes[ROUTE__COUNT] = {
    [ROUTE_NONE] = {0, "", "unmatched"},
    [ROUTE_PROFILE] = {M(ROUTE_METHOD_GET) | M(ROUTE_METHOD_PUT) | M(ROUTE_METHOD_DELETE),
                       "GET, PUT, DELETE", "/profiles/{userId}"},
    [ROUTE_WATCHLIST] = {M(ROUTE_METHOD_GET) | M(ROUTE_METHOD_POST), "GET, POST",
                         "/profiles/{userId}/watchlist"},
    [ROUTE_WATCHLIST_ITEM] = {M(ROUTE_METHOD_DELETE), "DELETE",
                              "/profiles/{userId}/watchlist/{videoId}"},
    [ROUTE_HISTORY] = {M(ROUTE_METHOD_GET) | M(ROUTE_METHOD_POST), "GET, POST",
                       "/profiles/{userId}/history"},
    [ROUTE_RATINGS] = {M(ROUTE_METHOD_GET) | M(ROUTE_METHOD_POST), "GET, POST",
                       "/profiles/{userId}/ratings"},
    [ROUTE_EXPORT] = {M(ROUTE_METHOD_GET), "GET", "/profiles/{userId}/export"},
    [ROUTE_HEALTH_LIVE] = {M(ROUTE_METHOD_GET), "GET", "/health/live"},
    [ROUTE_HEALTH_READY] = {M(ROUTE_METHOD_GET), "GET", "/health/ready"},
    [ROUTE_HEALTH] = {M(ROUTE_METHOD_GET), "GET", "/health"},
    [ROUTE_METRICS] = {M(ROUTE_METHOD_GET), "GET", "/metrics"},
};

route_method_t route_parse_method(const char *m, size_t len)
{
    static const struct {
        const char *name;
        size_t len;
        route_method_t id;
    } names[] = {{"GET", 3, ROUTE_METHOD_GET},
                 {"PUT", 3, ROUTE_METHOD_PUT},
                 {"POST", 4, ROUTE_METHOD_POST},
                 {"DELETE", 6, ROUTE_METHOD_DELETE},
                 {"OPTIONS", 7, ROUTE_METHOD_OPTIONS}};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (len == names[i].len && memcmp(m, names[i].name, len) == 0)
            return names[i].id;
    return ROUTE_METHOD_OTHER;
}

const char *route_template(route_id_t r)
{
    return (unsigned)r < ROUTE__COUNT ? routes[r].tmpl : "unmatched";
}

const char *route_method_name(route_method_t m)
{
    static const char *names[ROUTE_METHOD__COUNT] = {"OTHER", "GET",    "PUT",
                                                     "POST",  "DELETE", "OPTIONS"};
    return (unsigned)m < ROUTE_METHOD__COUNT ? names[m] : "OTHER";
}

bool route_needs_auth(route_id_t r)
{
    return r >= ROUTE_PROFILE && r <= ROUTE_EXPORT;
}

/* Decodes one segment; a malformed escape or an overlong value marks it bad (400 later). */
static void decode_segment(const char *s, size_t len, route_param_t *out)
{
    size_t o = 0;
    out->bad = false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == '%') {
            int hi, lo;
            if (i + 2 >= len) {
                out->bad = true;
                break;
            }
            hi = pct_hexval(s[i + 1]);
            lo = pct_hexval(s[i + 2]);
            if (hi < 0 || lo < 0) {
                out->bad = true;
                break;
            }
            c = (char)(hi * 16 + lo);
            i += 2;
        }
        if (o + 1 >= sizeof(out->value)) {
            out->bad = true;
            break;
        }
        out->value[o++] = c;
    }
    out->value[o] = '\0';
    out->len = o;
}

/* Splits `path` into at most `max` segments; returns the count, or -1 on an empty segment
 * (which also covers a trailing slash and "//"). */
static int split(const char *path, size_t len, const char **seg, size_t *seglen, int max)
{
    int n = 0;
    size_t i = 0;
    if (len == 0 || path[0] != '/')
        return -1;
    while (i < len) {
        size_t start = ++i;
        while (i < len && path[i] != '/')
            i++;
        if (i == start)
            return -1;
        if (n == max)
            return -1;
        seg[n] = path + start;
        seglen[n] = i - start;
        n++;
    }
    return n;
}

static bool seg_is(const char *s, size_t len, const char *lit)
{
    size_t l = strlen(lit);
    return len == l && memcmp(s, lit, l) == 0;
}

route_match_status_t route_match(const char *method, size_t method_len, const char *path,
                                 size_t len, route_match_t *out)
{
    const char *seg[4];
    size_t seglen[4];
    int n;

    memset(out, 0, sizeof(*out));
    out->method = route_parse_method(method, method_len);
    out->allow = "";
    n = split(path, len, seg, seglen, 4);
    if (n < 1)
        return ROUTE_MATCH_NOT_FOUND;

    if (seg_is(seg[0], seglen[0], "profiles") && n >= 2) {
        if (n == 2) {
            out->route = ROUTE_PROFILE;
        } else if (n == 3 && seg_is(seg[2], seglen[2], "watchlist")) {
            out->route = ROUTE_WATCHLIST;
        } else if (n == 4 && seg_is(seg[2], seglen[2], "watchlist")) {
            out->route = ROUTE_WATCHLIST_ITEM;
            decode_segment(seg[3], seglen[3], &out->video_id);
        } else if (n == 3 && seg_is(seg[2], seglen[2], "history")) {
            out->route = ROUTE_HISTORY;
        } else if (n == 3 && seg_is(seg[2], seglen[2], "ratings")) {
            out->route = ROUTE_RATINGS;
        } else if (n == 3 && seg_is(seg[2], seglen[2], "export")) {
            out->route = ROUTE_EXPORT;
        } else {
            return ROUTE_MATCH_NOT_FOUND;
        }
        decode_segment(seg[1], seglen[1], &out->user_id);
    } else if (seg_is(seg[0], seglen[0], "health")) {
        if (n == 1)
            out->route = ROUTE_HEALTH;
        else if (n == 2 && seg_is(seg[1], seglen[1], "live"))
            out->route = ROUTE_HEALTH_LIVE;
        else if (n == 2 && seg_is(seg[1], seglen[1], "ready"))
            out->route = ROUTE_HEALTH_READY;
        else
            return ROUTE_MATCH_NOT_FOUND;
    } else if (n == 1 && seg_is(seg[0], seglen[0], "metrics")) {
        out->route = ROUTE_METRICS;
    } else {
        return ROUTE_MATCH_NOT_FOUND;
    }

    out->allow = routes[out->route].allow;
    if (out->method == ROUTE_METHOD_OPTIONS)
        return ROUTE_MATCH_OK;
    if (out->method == ROUTE_METHOD_OTHER || (routes[out->route].methods & M(out->method)) == 0)
        return ROUTE_MATCH_METHOD_NOT_ALLOWED;
    return ROUTE_MATCH_OK;
}
