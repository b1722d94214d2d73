/*
 * Response helpers shared by every handler: common headers, problem+json, 503 mapping for pool
 * errors, the access log line and request metrics, and the write-result mapping.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "api/respond.h"
#include "api/metrics.h"
#include "api/validate.h"
#include "api/reqhash.h"
#include "api/cors.h"
#include "api/listrender.h"
#include "api/trace.h"
#include "common/alloc.h"
#include "common/buf.h"
#include "common/log.h"
#include "common/otel.h"

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

static double ms_between(const struct timespec *a, const struct timespec *b)
{
    return (double)(b->tv_sec - a->tv_sec) * 1e3 + (double)(b->tv_nsec - a->tv_nsec) / 1e6;
}

uint64_t api_span_time(const api_req_t *ar, const struct timespec *mono)
{
    int64_t d = (int64_t)(mono->tv_sec - ar->started.tv_sec) * 1000000000 +
                (int64_t)(mono->tv_nsec - ar->started.tv_nsec);
    return d < 0 ? ar->start_real_ns : ar->start_real_ns + (uint64_t)d;
}

static bool all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != 0)
            return false;
    return true;
}

void api_span_client(api_req_t *ar, const char *name, const char *system, const char *op,
                     const struct timespec *t0, const struct timespec *t1, bool error)
{
    otel_span_t s;
    if (!ar->sampled)
        return;
    memset(&s, 0, sizeof(s));
    memcpy(s.trace_id, ar->trace_bin, sizeof(s.trace_id));
    trace_new_span_id(s.span_id);
    memcpy(s.parent_span_id, ar->span_bin, sizeof(s.parent_span_id));
    s.name = name;
    s.kind = OTEL_KIND_CLIENT;
    s.start_ns = api_span_time(ar, t0);
    s.end_ns = api_span_time(ar, t1);
    if (s.end_ns < s.start_ns)
        s.end_ns = s.start_ns;
    s.error = error;
    s.attrs[s.nattrs++] = (otel_attr_t){.key = "db.system", .str = system};
    s.attrs[s.nattrs++] = (otel_attr_t){.key = "db.operation", .str = op};
    otel_export(&s);
}

/* The request's SERVER span: "<METHOD> <route template>", parent the caller's span. */
static void export_server_span(api_req_t *ar, int status, const struct timespec *end)
{
    char name[96];
    const char *route = route_template(ar->rm.route);
    otel_span_t s;
    char method[16];
    size_t mlen =
        ar->req->method.len < sizeof(method) - 1 ? ar->req->method.len : sizeof(method) - 1;

    memcpy(method, ar->req->method.base, mlen);
    method[mlen] = '\0';
    memset(&s, 0, sizeof(s));
    memcpy(s.trace_id, ar->trace_bin, sizeof(s.trace_id));
    memcpy(s.span_id, ar->span_bin, sizeof(s.span_id));
    if (!all_zero(ar->parent_bin, sizeof(ar->parent_bin)))
        memcpy(s.parent_span_id, ar->parent_bin, sizeof(s.parent_span_id));
    snprintf(name, sizeof(name), "%s %s", method, route);
    s.name = name;
    s.kind = OTEL_KIND_SERVER;
    s.start_ns = ar->start_real_ns;
    s.end_ns = api_span_time(ar, end);
    s.error = status >= 500;
    s.attrs[s.nattrs++] = (otel_attr_t){.key = "http.request.method", .str = method};
    s.attrs[s.nattrs++] = (otel_attr_t){.key = "http.route", .str = route};
    s.attrs[s.nattrs++] = (otel_attr_t){.key = "http.response.status_code", .num = status};
    s.attrs[s.nattrs++] = (otel_attr_t){.key = "request_id", .str = ar->request_id};
    if (ar->authed)
        s.attrs[s.nattrs++] = (otel_attr_t){.key = "user", .str = ar->principal.sub};
    otel_export(&s);
}

api_wait_t *api_wait_begin(api_req_t *ar, int op)
{
    api_wait_t *w = xmalloc(sizeof(*w));
    w->ar = ar;
    w->thread = ar->thr->index;
    w->op = op;
    clock_gettime(CLOCK_MONOTONIC, &w->t0);
    ar->wait = w;
    return w;
}

api_req_t *api_wait_finish(api_wait_t *w, bool error)
{
    struct timespec now;
    api_req_t *ar = w->ar;

    clock_gettime(CLOCK_MONOTONIC, &now);
    metrics_observe_redis(w->thread, (metrics_redis_op_t)w->op, ms_between(&w->t0, &now));
    if (ar != NULL && ar->sampled) {
        char name[64];
        const char *op = metrics_redis_op_name((metrics_redis_op_t)w->op);
        snprintf(name, sizeof(name), "redis %s", op);
        api_span_client(ar, name, "redis", op, &w->t0, &now, error);
    }
    return api_wait_end(w);
}

api_req_t *api_wait_end(api_wait_t *w)
{
    api_req_t *ar = w->ar;
    if (ar != NULL)
        ar->wait = NULL;
    free(w);
    return ar;
}

void api_publish_redis_stats(api_thread_t *thr)
{
    metrics_redis_t m;
    if (thr->redis_closing)
        return; /* the client is being destroyed; the last published figures stay */
    memset(&m, 0, sizeof(m));
    if (thr->lc != NULL) {
        const listcache_stats_t *c = listcache_stats(thr->lc);
        m.cache_hits = c->hits;
        m.cache_misses = c->misses;
        m.cache_fills = c->fills;
        m.cache_fill_rejections = c->fill_rejections;
        m.cache_errors = c->errors;
        m.cache_invalidations = c->invalidations;
        m.cache_invalidation_failures = c->invalidation_failures;
        m.cache_bypassed = c->bypassed;
        m.cache_local_hits = c->local_hits;
    }
    if (thr->rl != NULL) {
        const ratelimit_stats_t *r = ratelimit_stats(thr->rl);
        m.rl_checks = r->checks;
        m.rl_denied = r->denied;
        m.rl_degraded = r->degraded;
        m.rl_local_denied = r->local_denied;
        m.rl_errors = r->errors;
        m.auth_failures = r->auth_failures;
        m.auth_failures_denied = r->auth_failures_denied;
    }
    if (thr->redis != NULL) {
        redis_client_stats_t st;
        redis_client_get_stats(thr->redis, &st);
        m.redis_commands = st.commands;
        m.redis_failed = st.failed;
        m.redis_timeouts = st.timeouts;
        m.redis_connects = st.connects;
        m.redis_disconnects = st.disconnects;
        m.redis_error_replies = st.err_replies;
        m.redis_redirects = st.moved + st.ask;
        m.redis_slot_map_reads = st.refreshes;
        m.redis_up = redis_client_is_up(thr->redis) ? 1 : 0;
    }
    metrics_set_redis(thr->index, &m);
}

void api_add_header(api_req_t *ar, const char *name, const char *value, size_t len)
{
    h2o_req_t *req = ar->req;
    h2o_iovec_t v = h2o_strdup(&req->pool, value, len);
    h2o_add_header_by_str(&req->pool, &req->res.headers, name, strlen(name), 1, NULL, v.base,
                          v.len);
}

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

static double sample_unit(api_thread_t *thr)
{
    char tmp[5];
    unsigned v;
    api_random_hex(thr, tmp, 2);
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
    if (status == 204 || status == 304) {
        body = NULL;
        len = 0;
    }
    /* 204/304 carry neither a body nor Content-Length (RFC 9110 8.6) */
    req->res.content_length = (status == 204 || status == 304) ? SIZE_MAX : len;
    h2o_send_inline(req, body, len);

    clock_gettime(CLOCK_MONOTONIC, &now);
    ms = ms_between(&ar->started, &now);
    if (ar->sampled)
        export_server_span(ar, status, &now);
    metrics_observe_request(ar->thr->index, ar->rm.route, ar->rm.method, status, ms);
    access_log(ar, status, ms);
    if (ar->rm.route == ROUTE_METRICS)
        return;
    api_publish_redis_stats(ar->thr);
}

void api_respond_problem(api_req_t *ar, int status, const char *slug, const char *detail,
                         const problem_field_error_t *errors, size_t nerrors)
{
    char mem[1024];
    strbuf_t b;
    strbuf_init_fixed(&b, mem, sizeof(mem));
    problem_render(&b, status, slug, detail, errors, nerrors);
    api_respond(ar, status, PROBLEM_CONTENT_TYPE, b.data, b.len);
    strbuf_dispose(&b);
}

void api_respond_validation(api_req_t *ar, const problem_field_error_t *errors, size_t n)
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

bool api_db_single_row(api_req_t *ar, const PGresult *res, pgpool_err_t err, int min_fields)
{
    ar->op = NULL;
    if (err != PGPOOL_OK) {
        api_respond_unavailable(ar, err);
        return false;
    }
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1 ||
        PQnfields(res) < min_fields) {
        api_respond_sql_error(ar, res);
        return false;
    }
    return true;
}

/* Every statement of a request ends here first: its latency, its span, then the handler. */
static void on_db_result(void *data, const PGresult *res, pgpool_err_t err)
{
    api_req_t *ar = data;
    struct timespec now;

    clock_gettime(CLOCK_MONOTONIC, &now);
    metrics_observe_db(ar->thr->index, (int)ar->db_stmt, ms_between(&ar->db_t0, &now));
    if (ar->sampled) {
        char name[64];
        const char *stmt = pgpool_stmt_name(ar->db_stmt);
        snprintf(name, sizeof(name), "pg %s", stmt);
        api_span_client(ar, name, "postgresql", stmt, &ar->db_t0, &now,
                        err != PGPOOL_OK || PQresultStatus(res) == PGRES_FATAL_ERROR);
    }
    ar->db_cb(data, res, err);
}

int api_db_submit(api_req_t *ar, pgpool_stmt_t stmt, int nparams, const char *const *values,
                  pgpool_cb cb)
{
    pgpool_err_t err;

    ar->db_stmt = stmt;
    ar->db_cb = cb;
    clock_gettime(CLOCK_MONOTONIC, &ar->db_t0);
    err = pgpool_submit(ar->thr->pool, stmt, nparams, values, on_db_result, ar, &ar->op);
    if (err != PGPOOL_OK) {
        ar->op = NULL;
        api_respond_unavailable(ar, err);
        return -1;
    }
    return 0;
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
            api_respond_problem(ar, 413, "payload-too-large",
                                "The request body is larger than 64 KiB.", NULL, 0);
            return -1;
        }
    }
    if (req->entity.len > API_MAX_BODY) {
        api_respond_problem(ar, 413, "payload-too-large", "The request body is larger than 64 KiB.",
                            NULL, 0);
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

int api_write_common_params(api_req_t *ar, const char **values)
{
    h2o_req_t *req = ar->req;
    const h2o_iovec_t *key = api_find_header(ar, H2O_STRLIT("idempotency-key"));
    char *ttl = h2o_mem_alloc_pool(&req->pool, 16);

    values[0] = ar->principal.sub;
    values[1] = NULL;
    values[2] = NULL;
    if (key != NULL) {
        uint8_t digest[REQHASH_LEN];
        char *hex = h2o_mem_alloc_pool(&req->pool, 2 * REQHASH_LEN + 1);
        size_t pathlen = req->query_at != SIZE_MAX ? req->query_at : req->path.len;
        if (!validate_idempotency_key(key->base, key->len)) {
            problem_field_error_t e = {"Idempotency-Key",
                                       "must be 1-255 printable ASCII characters"};
            api_respond_validation(ar, &e, 1);
            return -1;
        }
        values[1] = h2o_strdup(&req->pool, key->base, key->len).base;
        reqhash_compute(req->method.base, req->method.len, req->path.base, pathlen,
                        req->entity.base, req->entity.len, digest);
        reqhash_hex(digest, hex);
        values[2] = hex;
    }
    snprintf(ttl, 16, "%d", ar->thr->server->cfg->idempotency_ttl_seconds);
    values[3] = ttl;
    values[4] = ar->traceparent;
    return 0;
}

static void send_write_result(api_req_t *ar)
{
    int status = ar->pending_status;
    api_respond(ar, status,
                status >= 400 ? PROBLEM_CONTENT_TYPE : "application/json; charset=utf-8",
                ar->pending_body, ar->pending_len);
}

static void on_write_invalidated(bool ok, void *ud)
{
    api_req_t *ar = api_wait_finish(ud, !ok);
    if (ar != NULL)
        send_write_result(ar);
}

void api_on_write_result(void *data, const PGresult *res, pgpool_err_t err)
{
    api_req_t *ar = data;
    api_thread_t *thr = ar->thr;
    int status;
    const char *body;
    size_t len;

    if (!api_db_single_row(ar, res, err, 5))
        return;
    status = atoi(PQgetvalue(res, 0, 0));
    body = PQgetvalue(res, 0, 1);
    len = (size_t)PQgetlength(res, 0, 1);
    if (!PQgetisnull(res, 0, 2))
        h2o_add_header(
            &ar->req->pool, &ar->req->res.headers, H2O_TOKEN_ETAG, NULL,
            h2o_strdup(&ar->req->pool, PQgetvalue(res, 0, 2), (size_t)PQgetlength(res, 0, 2)).base,
            (size_t)PQgetlength(res, 0, 2));
    if (!PQgetisnull(res, 0, 3))
        api_add_header(ar, "location", PQgetvalue(res, 0, 3), (size_t)PQgetlength(res, 0, 3));
    if (!PQgetisnull(res, 0, 4) && PQgetvalue(res, 0, 4)[0] == 't') {
        h2o_add_header_by_str(&ar->req->pool, &ar->req->res.headers,
                              H2O_STRLIT("idempotent-replayed"), 1, NULL, H2O_STRLIT("true"));
        metrics_inc_idempotent_replay(thr->index);
    }
    ar->pending_status = status;
    ar->pending_body = body;
    ar->pending_len = len;
    /*
     * The write produced event `seq`: drop the user's cached lists before answering, so the
     * client's next read (on any thread or replica) cannot see the old page. If Redis is down
     * the module queues the invalidation and bypasses the cache meanwhile; the write stands.
     */
    if (PQnfields(res) >= 6 && !PQgetisnull(res, 0, 5) && thr->lc != NULL && !thr->redis_closing) {
        int64_t seq = strtoll(PQgetvalue(res, 0, 5), NULL, 10);
        api_wait_t *w;
        char *copy = h2o_mem_alloc_pool(&ar->req->pool, len + 1);
        memcpy(copy, body, len);
        copy[len] = '\0';
        ar->pending_body = copy; /* `res` is cleared when this callback returns */
        w = api_wait_begin(ar, METRICS_REDIS_CACHE_INVALIDATE);
        if (listcache_invalidate(thr->lc, ar->rm.user_id.value, seq, on_write_invalidated, w) ==
            LISTCACHE_PENDING)
            return;
        (void)api_wait_end(w);
    }
    send_write_result(ar);
}

/* Reads the request's list query (limit, cursor and the parameters in `allow`) and decodes the
 * cursor of list `*kind` ('h' becomes 'c' with view=continue). Returns 0; 1 when the query is
 * invalid (`errs` says why); 2 when the cursor is. */
static int read_list_query(const api_req_t *ar, unsigned allow, char *kind, list_query_t *q,
                           cursor_t *after, bool *have_after, validate_errors_t *errs)
{
    const h2o_req_t *req = ar->req;
    const char *qs = NULL;
    size_t qslen = 0;

    memset(errs, 0, sizeof(*errs));
    if (req->query_at != SIZE_MAX) {
        qs = req->path.base + req->query_at + 1;
        qslen = req->path.len - req->query_at - 1;
    }
    if (validate_list_query(qs, qslen, allow, q, errs) != 0)
        return 1;
    if (*kind == 'h' && q->view_continue)
        *kind = 'c';
    *have_after = q->cursor[0] != '\0';
    if (*have_after && cursor_decode(q->cursor, strlen(q->cursor), *kind, after) != 0)
        return 2;
    return 0;
}

int api_parse_list_query(api_req_t *ar, unsigned allow, char kind, list_query_t *q, cursor_t *after,
                         bool *have_after)
{
    validate_errors_t errs;

    switch (read_list_query(ar, allow, &kind, q, after, have_after, &errs)) {
    case 0:
        ar->cursor_kind = kind;
        return 0;
    case 1:
        api_respond_validation(ar, errs.items, errs.count);
        return -1;
    default: {
        problem_field_error_t e = {"cursor", "is not a valid cursor for this list"};
        api_respond_validation(ar, &e, 1);
        return -1;
    }
    }
}

/* The page's column layout, from the statement that produced it. */
static listrender_kind_t page_kind(pgpool_stmt_t stmt)
{
    switch (stmt) {
    case PGPOOL_STMT_PAGE_HISTORY:
    case PGPOOL_STMT_PAGE_CONTINUE:
        return LISTRENDER_HISTORY;
    case PGPOOL_STMT_PAGE_RATINGS:
    case PGPOOL_STMT_PAGE_RATING_VIDEO:
        return LISTRENDER_RATINGS;
    default:
        return LISTRENDER_WATCHLIST;
    }
}

void api_on_list_result(void *data, const PGresult *res, pgpool_err_t err)
{
    api_req_t *ar = data;
    api_thread_t *thr = ar->thr;
    char mem[16384]; /* a page of 50 history entries fits without touching the heap */
    strbuf_t b;
    int64_t version;

    ar->op = NULL;
    if (err != PGPOOL_OK) {
        api_respond_unavailable(ar, err);
        return;
    }
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        api_respond_sql_error(ar, res);
        return;
    }
    strbuf_init_fixed(&b, mem, sizeof(mem));
    if (listrender_page(res, page_kind(ar->db_stmt), ar->list_limit, ar->cursor_kind, &b,
                        &version) != 0) {
        log_ctx_t ctx = {ar->request_id, ar->trace_id, NULL};
        log_error_ctx(&ctx, "statement %s returned a page of an unexpected shape",
                      pgpool_stmt_name(ar->db_stmt));
        strbuf_dispose(&b);
        api_respond_problem(ar, 500, "internal-error", "An unexpected error occurred.", NULL, 0);
        return;
    }
    /* the version was read in the same snapshot as the rows: the fill script refuses it when a
     * write committed meanwhile has already raised the user's version in Redis */
    if (ar->list != NULL && ar->list->cacheable && thr->lc != NULL && !thr->redis_closing) {
        struct timespec t0, t1;
        if (ar->sampled)
            clock_gettime(CLOCK_MONOTONIC, &t0);
        listcache_fill(thr->lc, ar->rm.user_id.value, ar->list->list, ar->list->field, b.data,
                       b.len, version);
        if (ar->sampled) {
            /* fire and forget (no completion callback): the span covers issuing the fill */
            clock_gettime(CLOCK_MONOTONIC, &t1);
            api_span_client(ar, "redis cache.fill", "redis", "cache.fill", &t0, &t1, false);
        }
    }
    api_respond(ar, 200, "application/json; charset=utf-8", b.data, b.len);
    strbuf_dispose(&b);
}

static void list_cache_answer(api_req_t *ar, const char *value, size_t len)
{
    api_list_ctx_t *l = ar->list;
    if (value != NULL) {
        api_respond(ar, 200, "application/json; charset=utf-8", value, len);
        return;
    }
    api_submit_list(ar, l->stmt, &l->q, &l->after, l->have_after, l->extra);
}

static void on_cache_get(const char *value, size_t len, void *ud)
{
    api_req_t *ar = api_wait_finish(ud, false);
    if (ar != NULL)
        list_cache_answer(ar, value, len);
}

/*
 * Prefetch: a cacheable list read whose authorization, ids and query are already known to be
 * fine sends its cache read right behind the rate-limit script, so both share one Redis round
 * trip. The limiter's reply comes first (replies keep their order): when it allows, the
 * request reaches api_submit_list_cached() and waits there for the read already in flight.
 * When it denies, the read's reply is dropped.
 */
struct st_api_prefetch_t {
    api_req_t *ar; /* NULL once the request is gone or no longer wants the reply */
    int thread;
    struct timespec t0;
    bool arrived; /* the reply came before the request was ready for it */
    bool waiting; /* the request waits in api_submit_list_cached() */
    char *value;  /* arrived: the cached body (request pool), NULL for a miss */
    size_t len;
    char field[LISTCACHE_FIELD_MAX]; /* listcache_field() of the page asked for */
};

static void on_prefetch(const char *value, size_t len, void *ud)
{
    api_prefetch_t *pf = ud;
    api_req_t *ar = pf->ar;
    struct timespec now;

    clock_gettime(CLOCK_MONOTONIC, &now);
    metrics_observe_redis(pf->thread, METRICS_REDIS_CACHE_GET, ms_between(&pf->t0, &now));
    if (ar == NULL || ar->responded) { /* denied by the limiter, or the client went away */
        if (ar != NULL)
            ar->prefetch = NULL;
        free(pf);
        return;
    }
    if (ar->sampled)
        api_span_client(ar, "redis cache.get", "redis", "cache.get", &pf->t0, &now, false);
    if (!pf->waiting) { /* keep it until the request gets there */
        pf->arrived = true;
        pf->value = value != NULL ? h2o_mem_alloc_pool(&ar->req->pool, len + 1) : NULL;
        if (value != NULL)
            memcpy(pf->value, value, len);
        pf->len = len;
        return;
    }
    ar->prefetch = NULL;
    free(pf);
    list_cache_answer(ar, value, len);
}

void api_prefetch_detach(api_req_t *ar)
{
    api_prefetch_t *pf = ar->prefetch;
    if (pf == NULL)
        return;
    ar->prefetch = NULL;
    if (pf->arrived)
        free(pf); /* its callback has run */
    else
        pf->ar = NULL; /* its callback frees it */
}

void api_list_prefetch(api_req_t *ar)
{
    api_thread_t *thr = ar->thr;
    list_query_t q;
    validate_errors_t errs;
    cursor_t after;
    bool have_after;
    cache_list_t list;
    char kind;
    api_prefetch_t *pf;

    if (ar->rm.method != ROUTE_METHOD_GET || thr->lc == NULL || thr->redis_closing)
        return;
    if (ar->rm.route == ROUTE_WATCHLIST) {
        list = CACHE_LIST_WATCHLIST;
        kind = 'w';
    } else if (ar->rm.route == ROUTE_HISTORY) {
        list = CACHE_LIST_HISTORY;
        kind = 'h';
    } else {
        return;
    }
    if (read_list_query(ar, kind == 'h' ? VALIDATE_Q_VIEW : 0, &kind, &q, &after, &have_after,
                        &errs) != 0)
        return; /* the handler answers 400 after the limiter */
    pf = xcalloc(1, sizeof(*pf));
    if (listcache_field(pf->field, sizeof(pf->field), q.limit, q.view_continue ? "continue" : "",
                        q.cursor) == 0) {
        free(pf);
        return;
    }
    pf->ar = ar;
    pf->thread = thr->index;
    clock_gettime(CLOCK_MONOTONIC, &pf->t0);
    if (listcache_get(thr->lc, ar->rm.user_id.value, list, pf->field, on_prefetch, pf) !=
        LISTCACHE_PENDING) {
        free(pf); /* a miss now: the request reads PostgreSQL as usual */
        return;
    }
    ar->prefetch = pf;
}

void api_submit_list_cached(api_req_t *ar, cache_list_t list, pgpool_stmt_t stmt,
                            const list_query_t *q, const cursor_t *after, bool have_after,
                            const char *extra)
{
    api_thread_t *thr = ar->thr;
    api_list_ctx_t *l = h2o_mem_alloc_pool(&ar->req->pool, sizeof(*l));
    api_prefetch_t *pf = ar->prefetch;
    api_wait_t *w;

    memset(l, 0, sizeof(*l));
    l->stmt = stmt;
    l->q = *q;
    if (have_after)
        l->after = *after;
    l->have_after = have_after;
    l->extra = extra;
    l->list = list;
    l->cacheable = thr->lc != NULL && !thr->redis_closing &&
                   listcache_field(l->field, sizeof(l->field), q->limit,
                                   q->view_continue ? "continue" : "", q->cursor) > 0;
    ar->list = l;
    if (pf != NULL && l->cacheable && strcmp(pf->field, l->field) == 0) {
        if (!pf->arrived) {
            pf->waiting = true; /* continues in on_prefetch */
            return;
        }
        char *value = pf->value;
        size_t len = pf->len;
        ar->prefetch = NULL;
        free(pf);
        list_cache_answer(ar, value, len);
        return;
    }
    api_prefetch_detach(ar);
    if (!l->cacheable) {
        api_submit_list(ar, stmt, &l->q, &l->after, have_after, extra);
        return;
    }
    w = api_wait_begin(ar, METRICS_REDIS_CACHE_GET);
    if (listcache_get(thr->lc, ar->rm.user_id.value, list, l->field, on_cache_get, w) ==
        LISTCACHE_PENDING)
        return;
    (void)api_wait_end(w);
    api_submit_list(ar, stmt, &l->q, &l->after, have_after, extra);
}

void api_submit_list(api_req_t *ar, pgpool_stmt_t stmt, const list_query_t *q,
                     const cursor_t *after, bool have_after, const char *extra)
{
    h2o_req_t *req = ar->req;
    char *limit = h2o_mem_alloc_pool(&req->pool, 16), *ts = NULL;
    const char *values[4];

    snprintf(limit, 16, "%d", q->limit);
    if (have_after) {
        ts = h2o_mem_alloc_pool(&req->pool, 32);
        snprintf(ts, 32, "%lld", (long long)after->ts_us);
    }
    ar->list_limit = q->limit;
    values[0] = ar->rm.user_id.value;
    /* the videoId lookup takes the video instead of a limit (one row at most) */
    values[1] = stmt == PGPOOL_STMT_PAGE_RATING_VIDEO ? extra : limit;
    values[2] = ts;
    values[3] = have_after ? after->id : NULL;
    (void)api_db_submit(ar, stmt, 4, values, api_on_list_result);
}
