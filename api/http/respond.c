/*
 * Writing the response: common headers, problem+json, 503 mapping for pool errors, and the
 * request's metrics, SERVER span and access log line once it is sent.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "api/http/respond.h"
#include "api/codec/ids.h"
#include "api/http/metrics.h"
#include "api/http/cors.h"
#include "api/http/span.h"
#include "api/data/wait.h"
#include "common/buf.h"
#include "common/clock.h"
#include "common/log.h"

#define LOG_MODULE "http"

static const char *reason_phrase(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 204:
        return "No Content";
    default:
        return status >= 400 ? problem_title(status) : "OK";
    }
}

void api_add_header(api_req_t *ar, const char *name, const char *value, size_t len)
{
    h2o_req_t *req = ar->req;
    h2o_iovec_t v = h2o_strdup(&req->pool, value, len);
    h2o_add_header_by_str(&req->pool, &req->res.headers, name, strlen(name), 1, NULL, v.base,
                          v.len);
}

static double sample_unit(api_thread_t *thr)
{
    char tmp[5];
    unsigned v;
    ids_random_hex(&thr->rng, tmp, 2);
    sscanf(tmp, "%4x", &v);
    return (double)v / 65536.0;
}

static void access_log(api_req_t *ar, int status, double ms)
{
    const app_config_t *cfg = ar->thr->server->cfg;
    char mem[512];
    strbuf_t b;
    log_ctx_t ctx = {ar->request_id, ar->trace_id[0] ? ar->trace_id : NULL,
                     ar->authed ? ar->principal.sub : NULL};
    if (LOG_LEVEL_INFO < log_threshold)
        return;
    if (cfg->access_log_sample < 1.0 && sample_unit(ar->thr) >= cfg->access_log_sample)
        return;
    strbuf_init_fixed(&b, mem, sizeof(mem));
    strbuf_append_str(&b, "\"method\":");
    strbuf_append_json_string(&b, ar->req->method.base, ar->req->method.len);
    strbuf_appendf(&b, ",\"route\":\"%s\",\"status\":%d,\"duration_ms\":%.3f",
                   route_template(ar->rm.route), status, ms);
    log_write_fields(LOG_LEVEL_INFO, "access", &ctx, "request", b.data);
    strbuf_dispose(&b);
}

/* The headers every response carries: request id, nosniff, no-store, CORS, RateLimit. */
static void add_common_headers(api_req_t *ar)
{
    h2o_req_t *req = ar->req;

    api_add_header(ar, "x-request-id", ar->request_id, strlen(ar->request_id));
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-content-type-options"), 1,
                          NULL, H2O_STRLIT("nosniff"));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL,
                   H2O_STRLIT("no-store"));
    if (ar->origin != NULL) {
        api_add_header(ar, "access-control-allow-origin", ar->origin, ar->origin_len);
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_VARY, NULL, H2O_STRLIT("Origin"));
        h2o_add_header_by_str(&req->pool, &req->res.headers,
                              H2O_STRLIT("access-control-expose-headers"), 1, NULL,
                              H2O_STRLIT(CORS_EXPOSE_HEADERS));
    }
    if (ar->has_ratelimit) {
        char v[96];
        size_t n = ratelimit_format_policy(v, sizeof(v), ar->ratelimit.limit);
        if (n > 0)
            api_add_header(ar, "ratelimit-policy", v, n);
        if ((n = ratelimit_format_header(v, sizeof(v), &ar->ratelimit)) > 0)
            api_add_header(ar, "ratelimit", v, n);
    }
}

void api_respond(api_req_t *ar, int status, const char *ctype, const char *body, size_t len)
{
    h2o_req_t *req = ar->req;
    struct timespec now;
    double ms;

    if (ar->responded)
        return;
    ar->responded = true;
    req->res.status = status;
    req->res.reason = reason_phrase(status);
    if (status == 204 || status == 304)
        ctype = NULL; /* no body, no Content-Type */
    if (ctype != NULL)
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, ctype,
                       strlen(ctype));
    add_common_headers(ar);
    if (status == 204 || status == 304) {
        body = NULL;
        len = 0;
    }
    /* 204/304 carry neither a body nor Content-Length (RFC 9110 8.6) */
    req->res.content_length = (status == 204 || status == 304) ? SIZE_MAX : len;

    /* counted before the client can see the answer: a scrape that follows it includes it */
    clock_mono_ts(&now);
    ms = clock_elapsed_s(&ar->started, &now) * 1e3;
    api_span_server(ar, status, &now);
    metrics_observe_request(ar->thr->index, ar->rm.route, ar->rm.method, status, ms);
    access_log(ar, status, ms);
    if (ar->rm.route != ROUTE_METRICS)
        api_publish_redis_stats(ar->thr);
    h2o_send_inline(req, body, len);
}

void api_respond_stream(api_req_t *ar, int status, const char *ctype, h2o_generator_t *gen)
{
    h2o_req_t *req = ar->req;
    struct timespec now;
    double ms;

    ar->responded = true;
    req->res.status = status;
    req->res.reason = reason_phrase(status);
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, ctype,
                   strlen(ctype));
    add_common_headers(ar);

    clock_mono_ts(&now); /* counted before the client can see the answer, as api_respond */
    ms = clock_elapsed_s(&ar->started, &now) * 1e3;
    api_span_server(ar, status, &now);
    metrics_observe_request(ar->thr->index, ar->rm.route, ar->rm.method, status, ms);
    access_log(ar, status, ms);
    api_publish_redis_stats(ar->thr);
    h2o_start_response(req, gen);
}

void api_respond_problem(api_req_t *ar, int status, const char *slug, const char *detail,
                         const field_error_t *errors, size_t nerrors)
{
    char mem[1024];
    strbuf_t b;
    strbuf_init_fixed(&b, mem, sizeof(mem));
    problem_render(&b, status, slug, detail, errors, nerrors);
    api_respond(ar, status, PROBLEM_CONTENT_TYPE, b.data, b.len);
    strbuf_dispose(&b);
}

void api_respond_validation(api_req_t *ar, const field_error_t *errors, size_t n)
{
    api_respond_problem(ar, 400, "validation-error", "The request is not valid.", errors, n);
}

void api_respond_unavailable(api_req_t *ar, pgpool_err_t err)
{
    h2o_add_header(&ar->req->pool, &ar->req->res.headers, H2O_TOKEN_RETRY_AFTER, NULL,
                   H2O_STRLIT("1"));
    api_respond_problem(ar, 503, "service-unavailable",
                        err == PGPOOL_ERR_BUSY ? "The server is busy; retry shortly."
                                               : "The database is unavailable; retry shortly.",
                        NULL, 0);
}

void api_respond_sql_error(api_req_t *ar, const PGresult *res)
{
    const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    log_ctx_t ctx = {ar->request_id, ar->trace_id, NULL};
    log_error_ctx(&ctx, "statement failed: sqlstate %s: %s", state != NULL ? state : "?",
                  PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) != NULL
                      ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY)
                      : "?");
    /* connection trouble, server shutting down, retries exhausted: the client may retry */
    if (PQresultStatus(res) != PGRES_FATAL_ERROR) {
        api_respond_problem(ar, 500, "internal-error", "An unexpected error occurred.", NULL, 0);
        return;
    }
    if (state == NULL || strncmp(state, "08", 2) == 0 || strncmp(state, "53", 2) == 0 ||
        strncmp(state, "57", 2) == 0 || strncmp(state, "58", 2) == 0 ||
        strcmp(state, "40001") == 0 || strcmp(state, "40P01") == 0) {
        api_respond_unavailable(ar, PGPOOL_ERR_CONN);
        return;
    }
    if (strncmp(state, "22", 2) == 0) {
        api_respond_problem(ar, 400, "invalid-value", "A value is out of range.", NULL, 0);
        return;
    }
    api_respond_problem(ar, 500, "internal-error", "An unexpected error occurred.", NULL, 0);
}
