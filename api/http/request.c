/*
 * Reading a request body: its size (413) and media type (415) before a write's rules run.
 */
#include <stdio.h>
#include <string.h>
#include "api/http/headers.h"
#include "api/http/request.h"
#include "api/http/respond.h"

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
    ct = headers_find(req, H2O_STRLIT("content-type"));
    if (ct == NULL || !headers_is_json(ct->base, ct->len)) {
        api_respond_problem(ar, 415, "unsupported-media-type",
                            "The request body must be application/json.", NULL, 0);
        return -1;
    }
    return 0;
}
