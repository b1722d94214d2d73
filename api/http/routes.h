/*
 * Route table of the HTTP API (docs/openapi.yaml): matches a method and a raw path to a
 * route, percent-decodes the path's ids and computes the Allow header for 405. Pure, no h2o.
 */
#ifndef PROFILE_API_HTTP_ROUTES_H
#define PROFILE_API_HTTP_ROUTES_H

#include <stdbool.h>
#include <stddef.h>

typedef enum {
    ROUTE_NONE = 0,
    ROUTE_PROFILE,        /* /profiles/{userId} */
    ROUTE_WATCHLIST,      /* /profiles/{userId}/watchlist */
    ROUTE_WATCHLIST_ITEM, /* /profiles/{userId}/watchlist/{videoId} */
    ROUTE_HISTORY,        /* /profiles/{userId}/history */
    ROUTE_RATINGS,        /* /profiles/{userId}/ratings */
    ROUTE_EXPORT,         /* /profiles/{userId}/export */
    ROUTE_HEALTH_LIVE,    /* /health/live */
    ROUTE_HEALTH_READY,   /* /health/ready */
    ROUTE_HEALTH,         /* /health */
    ROUTE_METRICS,        /* /metrics */
    ROUTE__COUNT
} route_id_t;

typedef enum {
    ROUTE_METHOD_OTHER = 0,
    ROUTE_METHOD_GET,
    ROUTE_METHOD_PUT,
    ROUTE_METHOD_POST,
    ROUTE_METHOD_DELETE,
    ROUTE_METHOD_OPTIONS,
    ROUTE_METHOD__COUNT
} route_method_t;

typedef enum {
    ROUTE_MATCH_OK = 0,
    ROUTE_MATCH_NOT_FOUND,          /* 404 */
    ROUTE_MATCH_METHOD_NOT_ALLOWED, /* 405 with `allow` */
} route_match_status_t;

#define ROUTE_ID_BUF 256

/** One decoded path id. `bad` is set when it was not valid percent-encoding or too long. */
typedef struct st_route_param_t {
    char value[ROUTE_ID_BUF]; /* NUL-terminated decoded bytes (may contain NUL when bad) */
    size_t len;
    bool bad;
} route_param_t;

typedef struct st_route_match_t {
    route_id_t route;
    route_method_t method;
    const char *allow;      /* "GET, PUT": the route's methods (set whenever a route matched) */
    route_param_t user_id;  /* API routes */
    route_param_t video_id; /* ROUTE_WATCHLIST_ITEM */
} route_match_t;

/** Maps a method token to route_method_t (case-sensitive, as HTTP methods are). */
route_method_t route_parse_method(const char *m, size_t len);

/**
 * Matches `method` and the raw request path (`path`, `len` bytes, query string excluded).
 * OPTIONS matches every existing route (CORS preflight). Fills `out` (route, method, allow,
 * decoded ids) and returns the status. Thread-safe.
 */
route_match_status_t route_match(const char *method, size_t method_len, const char *path,
                                 size_t len, route_match_t *out);

/** Route template for logs and metrics ("/profiles/{userId}"), "unmatched" for ROUTE_NONE. */
const char *route_template(route_id_t r);

/** Method name for metrics ("GET", ..., "OTHER"). */
const char *route_method_name(route_method_t m);

/** True for routes that need a bearer token (everything but /health* and /metrics). */
bool route_needs_auth(route_id_t r);

#endif
