/*
 * Reading a request: header lookup, random ids, and the size and media-type checks of a body.
 */
#include <stdio.h>
#include <string.h>
#include "api/http/request.h"
#include "api/http/respond.h"
#include "api/resources/validate.h"

const h2o_iovec_t *api_find_header(const api_req_t *ar, const char *name, size_t name_len)
{
    ssize_t i = h2o_find_header_by_str(&ar->req->headers, name, name_len, -1);
    return i < 0 ? NULL : &ar->req->headers.entries[i].value;
}

void api_random_hex(api_thread_t *thr, char *out, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        /* xorshift64*: ids need uniqueness, not secrecy */
        uint64_t x = thr->rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        thr->rng = x;
        x *= 2685821657736338717ull;
        out[2 * i] = hex[(x >> 60) & 0xf];
        out[2 * i + 1] = hex[(x >> 56) & 0xf];
    }
    out[2 * n] = '\0';
}

static void respond_too_large(api_req_t *ar)
{
    char detail[64];
    snprintf(detail, sizeof(detail), "The request body is larger than %d KiB.",
             API_MAX_BODY / 1024);
    api_respond_problem(ar, 413, "payload-too-large", detail, NULL, 0);
}

int api_check_body(api_req_t *ar)
{
    h2o_req_t *req = ar->req;
    const h2o_iovec_t *ct;
    ssize_t cl = h2o_find_header(&req->headers, H2O_TOKEN_CONTENT_LENGTH, -1);

    if (cl >= 0) {
        h2o_iovec_t v = req->headers.entries[cl].value;
        unsigned long long n = 0;
        for (size_t i = 0; i < v.len && v.base[i] >= '0' && v.base[i] <= '9' && n <= API_MAX_BODY;
             i++)
            n = n * 10 + (unsigned)(v.base[i] - '0');
        if (n > API_MAX_BODY) {
            respond_too_large(ar);
            return -1;
        }
    }
    if (req->entity.len > API_MAX_BODY) {
        respond_too_large(ar);
        return -1;
    }
    ct = api_find_header(ar, H2O_STRLIT("content-type"));
    if (ct == NULL || !validate_json_content_type(ct->base, ct->len)) {
        api_respond_problem(ar, 415, "unsupported-media-type",
                            "The request body must be application/json.", NULL, 0);
        return -1;
    }
    return 0;
}
