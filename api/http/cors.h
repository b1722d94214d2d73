/*
 * CORS (docs/api.md "CORS"): an exact-origin allow-list from CORS_ALLOWED_ORIGINS and the headers
 * a response to a listed origin carries. Pure: the server turns the decision into headers.
 */
#ifndef PROFILE_API_HTTP_CORS_H
#define PROFILE_API_HTTP_CORS_H

#include <stdbool.h>
#include <stddef.h>

#define CORS_ALLOW_HEADERS "Authorization, Content-Type, Idempotency-Key, If-Match"
#define CORS_EXPOSE_HEADERS "ETag, Location, RateLimit, RateLimit-Policy, Retry-After"
#define CORS_DEFAULT_METHODS "GET, PUT, POST, DELETE, OPTIONS"
#define CORS_MAX_AGE "600"

typedef struct st_cors_config_t cors_config_t; /* opaque; immutable after creation */

/**
 * Parses a comma list of origins (`list` may be NULL or empty: nothing is allowed). Entries are
 * trimmed of spaces/tabs; empty entries are skipped; `null` is skipped because it is never
 * allowed. Each other entry must be `http://` or `https://` followed by a host[:port] and no
 * path, else NULL is returned with one line in errbuf naming CORS_ALLOWED_ORIGINS.
 * Thread-safe to use from many threads once created.
 */
cors_config_t *cors_config_create(const char *list, char *errbuf, size_t errlen);
/** NULL-safe. */
void cors_config_destroy(cors_config_t *c);
/** Number of allowed origins (0 = CORS off). */
size_t cors_config_count(const cors_config_t *c);

/** Byte-for-byte membership test; `null`, empty and NULL origins are never allowed. */
bool cors_origin_allowed(const cors_config_t *c, const char *origin, size_t len);

/** What to add to a response. Every pointer is NULL when that header must not be sent. */
typedef struct st_cors_headers_t {
    bool allowed;             /* false: add no CORS header at all */
    const char *allow_origin; /* the request's Origin, echoed (points into the caller's data) */
    size_t allow_origin_len;
    const char *vary;           /* "Origin" */
    const char *allow_methods;  /* preflight only */
    const char *allow_headers;  /* preflight only */
    const char *max_age;        /* preflight only */
    const char *expose_headers; /* actual (non-preflight) responses only */
} cors_headers_t;

/**
 * Decides the CORS headers for a request from `origin` (NULL = no Origin header). For a
 * preflight, `methods` is the route's allowed methods ("GET, PUT"; NULL gives
 * CORS_DEFAULT_METHODS). Returns out->allowed. A preflight from an origin that is not listed
 * still gets 204 from the server, just without these headers.
 */
bool cors_decide(const cors_config_t *c, const char *origin, size_t origin_len, bool preflight,
                 const char *methods, cors_headers_t *out);

#endif
