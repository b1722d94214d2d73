/*
 * Exact-origin CORS allow-list. Comparison is byte for byte on the whole Origin value, so no
 * prefix, suffix, case or scheme trick matches, and `null` is refused whatever the list says.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "common/alloc.h"
#include "api/http/cors.h"

#define CORS_MAX_ORIGIN 512

struct st_cors_config_t {
    char **origins;
    size_t *lens;
    size_t count;
};

static bool origin_syntax_ok(const char *s, size_t len)
{
    size_t i = 0;

    if (len > 8 && strncmp(s, "https://", 8) == 0)
        i = 8;
    else if (len > 7 && strncmp(s, "http://", 7) == 0)
        i = 7;
    else
        return false;
    for (; i < len; ++i) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '-' || c == ':' || c == '[' || c == ']'))
            return false;
    }
    return true;
}

cors_config_t *cors_config_create(const char *list, char *errbuf, size_t errlen)
{
    cors_config_t *c = xcalloc(1, sizeof(*c));
    const char *p = list != NULL ? list : "";

    if (errlen > 0)
        errbuf[0] = '\0';
    while (*p != '\0') {
        const char *end = strchr(p, ','), *a = p, *b;
        size_t len;
        if (end == NULL)
            end = p + strlen(p);
        b = end;
        while (a < b && (*a == ' ' || *a == '\t'))
            ++a;
        while (b > a && (b[-1] == ' ' || b[-1] == '\t'))
            --b;
        len = (size_t)(b - a);
        p = *end == ',' ? end + 1 : end;
        if (len == 0 || (len == 4 && memcmp(a, "null", 4) == 0))
            continue;
        if (len > CORS_MAX_ORIGIN || !origin_syntax_ok(a, len)) {
            snprintf(errbuf, errlen,
                     "CORS_ALLOWED_ORIGINS: \"%.*s\" is not an origin (scheme://host[:port], "
                     "no path)",
                     (int)(len > 100 ? 100 : len), a);
            cors_config_destroy(c);
            return NULL;
        }
        c->origins = xrealloc(c->origins, (c->count + 1) * sizeof(*c->origins));
        c->lens = xrealloc(c->lens, (c->count + 1) * sizeof(*c->lens));
        c->origins[c->count] = xstrndup(a, len);
        c->lens[c->count] = len;
        c->count++;
    }
    return c;
}

void cors_config_destroy(cors_config_t *c)
{
    size_t i;

    if (c == NULL)
        return;
    for (i = 0; i < c->count; ++i)
        free(c->origins[i]);
    free(c->origins);
    free(c->lens);
    free(c);
}

size_t cors_config_count(const cors_config_t *c)
{
    return c != NULL ? c->count : 0;
}

bool cors_origin_allowed(const cors_config_t *c, const char *origin, size_t len)
{
    size_t i;

    if (c == NULL || origin == NULL || len == 0 || (len == 4 && memcmp(origin, "null", 4) == 0))
        return false;
    for (i = 0; i < c->count; ++i) {
        if (c->lens[i] == len && memcmp(c->origins[i], origin, len) == 0)
            return true;
    }
    return false;
}

bool cors_decide(const cors_config_t *c, const char *origin, size_t origin_len, bool preflight,
                 const char *methods, cors_headers_t *out)
{
    memset(out, 0, sizeof(*out));
    if (!cors_origin_allowed(c, origin, origin_len))
        return false;
    out->allowed = true;
    out->allow_origin = origin;
    out->allow_origin_len = origin_len;
    out->vary = "Origin";
    if (preflight) {
        out->allow_methods = methods != NULL ? methods : CORS_DEFAULT_METHODS;
        out->allow_headers = CORS_ALLOW_HEADERS;
        out->max_age = CORS_MAX_AGE;
    } else {
        out->expose_headers = CORS_EXPOSE_HEADERS;
    }
    return true;
}
