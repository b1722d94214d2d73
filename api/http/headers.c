/*
 * Request headers: lookup by name, and whether a Content-Type is application/json.
 */
#include <strings.h>
#include "api/http/headers.h"

const h2o_iovec_t *headers_find(const h2o_req_t *req, const char *name, size_t name_len)
{
    ssize_t i = h2o_find_header_by_str(&req->headers, name, name_len, -1);
    return i < 0 ? NULL : &req->headers.entries[i].value;
}

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

bool headers_is_json(const char *s, size_t len)
{
    static const char mt[] = "application/json";
    size_t i = 0;

    if (s == NULL)
        return false;
    while (i < len && is_ows(s[i]))
        ++i;
    if (len - i < sizeof(mt) - 1 || strncasecmp(s + i, mt, sizeof(mt) - 1) != 0)
        return false;
    i += sizeof(mt) - 1;
    while (i < len && is_ows(s[i]))
        ++i;
    /* Parameters (charset=utf-8, ...) are allowed and not interpreted: JSON is UTF-8. */
    return i == len || s[i] == ';';
}
