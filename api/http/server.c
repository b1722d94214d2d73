/*
 * h2o server: one event loop and one SO_REUSEPORT listener per thread, the ordered request
 * pipeline (route, CORS preflight, authentication, rate limit, authorization, ids, then the
 * resource handler; the rate limit and the failed-authentication limit are asynchronous Redis
 * steps), per-thread PostgreSQL pools and Redis clients (limiter, list cache), the idempotency
 * cleanup timer, the SIGTERM drain and SIGHUP (log level, JWKS re-read).
 */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include "common/net.h"
#include <h2o.h>
#include "api/http/server.h"
#include "api/http/headers.h"
#include "api/http/respond.h"
#include "api/data/wait.h"
#include "api/resources/handlers.h"
#include "api/resources/list.h"
#include "api/http/metrics.h"
#include "api/codec/hex.h"
#include "api/codec/ids.h"
#include "api/http/cors.h"
#include "api/http/trace.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/otel.h"

#define LOG_MODULE "server"

#define QUEUE_MAX_PER_THREAD 256
#define GRACE_MS 10000            /* in-flight requests get this long after draining */
#define CLEANUP_INTERVAL_MS 60000 /* idempotency cleanup period */
#define CLEANUP_BATCH 1000        /* rows per cleanup statement */
#define CLEANUP_BATCH_STR "1000"
#define REQ_TIMEOUT_MS 10000 /* h2o: idle keep-alive and slow request cut-off */
#define MAX_PATH_LEN 2048
#define REDIS_COMMAND_TIMEOUT_MS 250 /* a slow Redis costs a request at most this much */
#define STATS_INTERVAL_MS 1000       /* Redis counters are published to /metrics this often */

static api_server_t server;
static bool tracing_on; /* set before the loops start (server_set_tracing) */

void server_set_tracing(bool on)
{
    tracing_on = on;
}

/* ---- request helpers ---- */

static void setup_request_id(api_req_t *ar)
{
    const h2o_iovec_t *v = headers_find(ar->req, H2O_STRLIT("x-request-id"));
    if (v != NULL && ids_valid(v->base, v->len)) {
        memcpy(ar->request_id, v->base, v->len);
        ar->request_id[v->len] = '\0';
    } else {
        ids_random_hex(&ar->thr->rng, ar->request_id, 16);
    }
}

/*
 * W3C trace context: keep a valid incoming trace id (its span becomes our parent), else start a
 * new trace; our server span is new. Sampling: trace_sampling_decide() with the exporter's ratio.
 */
static void setup_trace(api_req_t *ar)
{
    const h2o_iovec_t *v = headers_find(ar->req, H2O_STRLIT("traceparent"));
    trace_context_t tc;
    uint8_t parent_flags = TRACE_FLAG_SAMPLED;
    if (v != NULL && trace_parse_traceparent(v->base, v->len, &tc)) {
        memcpy(ar->parent_bin, tc.span_id, sizeof(ar->parent_bin));
        parent_flags = tc.flags;
    } else {
        trace_generate(&tc, TRACE_FLAG_SAMPLED);
    }
    trace_new_span_id(tc.span_id);
    tc.flags = trace_sampling_decide(parent_flags, tracing_on,
                                     tracing_on && otel_sampled(tc.trace_id), &ar->sampled);
    if (ar->sampled) {
        memcpy(ar->trace_bin, tc.trace_id, sizeof(ar->trace_bin));
        memcpy(ar->span_bin, tc.span_id, sizeof(ar->span_bin));
        ar->start_real_ns = otel_now_ns();
    }
    hex_encode(tc.trace_id, TRACE_ID_LEN, ar->trace_id);
    hex_encode(tc.span_id, TRACE_SPAN_ID_LEN, ar->span_id);
    trace_format_traceparent(&tc, ar->traceparent);
}

static void setup_origin(api_req_t *ar)
{
    const h2o_iovec_t *o = headers_find(ar->req, H2O_STRLIT("origin"));
    if (o != NULL && cors_origin_allowed(server.cors, o->base, o->len)) {
        ar->origin = o->base;
        ar->origin_len = o->len;
    }
}

static void on_req_dispose(void *p)
{
    api_req_t *ar = p;
    if (ar->op != NULL) {
        pgpool_detach(ar->op); /* the client went away: drop the result when it comes */
        ar->op = NULL;
    }
    if (ar->wait != NULL) {
        ar->wait->ar = NULL; /* a Redis step is in flight: its callback only frees the wait */
        ar->wait = NULL;
    }
    api_prefetch_detach(ar);
    ar->thr->active--;
    metrics_count(ar->thr->index, METRICS_REQUEST_FINISHED);
}

static void respond_preflight(api_req_t *ar)
{
    cors_headers_t h;
    if (cors_decide(server.cors, ar->origin, ar->origin_len, true, ar->rm.allow, &h)) {
        if (h.allow_methods != NULL)
            api_add_header(ar, "access-control-allow-methods", h.allow_methods,
                           strlen(h.allow_methods));
        if (h.allow_headers != NULL)
            api_add_header(ar, "access-control-allow-headers", h.allow_headers,
                           strlen(h.allow_headers));
        if (h.max_age != NULL)
            api_add_header(ar, "access-control-max-age", h.max_age, strlen(h.max_age));
    }
    api_add_header(ar, "allow", ar->rm.allow, strlen(ar->rm.allow));
    api_respond(ar, 204, NULL, NULL, 0);
}

static bool method_is_write(route_method_t m)
{
    return m == ROUTE_METHOD_PUT || m == ROUTE_METHOD_POST || m == ROUTE_METHOD_DELETE;
}

static void respond_too_many(api_req_t *ar, const ratelimit_result_t *res, const char *detail)
{
    char v[16];
    int n =
        snprintf(v, sizeof(v), "%d", res->retry_after_seconds >= 1 ? res->retry_after_seconds : 1);
    api_add_header(ar, "retry-after", v, (size_t)n);
    api_respond_problem(ar, 429, "too-many-requests", detail, NULL, 0);
}

/* ---- step 3b: failed authentication, limited per client address ---- */

static void respond_unauthorized(api_req_t *ar)
{
    h2o_req_t *req = ar->req;
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_WWW_AUTHENTICATE, NULL,
                   H2O_STRLIT("Bearer"));
    api_respond_problem(ar, 401, "unauthorized",
                        ar->auth_status == AUTH_ERR_MISSING ? "A bearer token is required."
                                                            : "The bearer token is not valid.",
                        NULL, 0);
}

static void finish_auth_failure(api_req_t *ar, const ratelimit_result_t *res)
{
    if (!res->allowed) {
        respond_too_many(ar, res, "Too many failed authentications from this address.");
        return;
    }
    respond_unauthorized(ar);
}

static void on_auth_failure_counted(const ratelimit_result_t *res, void *ud)
{
    api_req_t *ar = api_wait_finish(ud, res != NULL && res->degraded);
    if (ar != NULL)
        finish_auth_failure(ar, res);
}

/* Text form of the peer's IP address ("unknown" when it cannot be had). */
static void peer_address(api_req_t *ar, char *out)
{
    struct sockaddr_storage ss;
    socklen_t len = ar->req->conn->callbacks->get_peername(ar->req->conn, (struct sockaddr *)&ss);
    if (len == 0 || h2o_socket_getnumerichost((struct sockaddr *)&ss, len, out) == SIZE_MAX)
        strcpy(out, "unknown");
}

/**
 * Counts the failure against the client address (docs/architecture.md "Rate limiter design",
 * AUTH_FAILURE_LIMIT_PER_MINUTE) and answers 401, or 429 with Retry-After once over the limit.
 */
static void auth_failed(api_req_t *ar)
{
    api_thread_t *thr = ar->thr;
    char addr[NI_MAXHOST];
    ratelimit_result_t res;
    api_wait_t *w;

    if (thr->rl == NULL || thr->redis_closing) {
        respond_unauthorized(ar);
        return;
    }
    peer_address(ar, addr);
    w = api_wait_begin(ar, METRICS_REDIS_AUTH_FAILURE);
    if (ratelimit_auth_failure(thr->rl, addr, &res, on_auth_failure_counted, w) ==
        RATELIMIT_PENDING)
        return;
    (void)api_wait_end(w);
    finish_auth_failure(ar, &res);
}

/* ---- steps 5.. after the rate limit ---- */

/* 5. authorization and 6. ids in the path: no I/O; 0 when both pass, else the status to answer
 * (403, or 400 with the field errors in `errs`) */
static int check_access(api_req_t *ar, field_error_t *errs, size_t *nerrs)
{
    size_t n = 0;
    if (ar->auth_status == AUTH_ERR_ROLES ||
        !auth_may_access(&ar->principal, ar->rm.user_id.value, ar->rm.user_id.len,
                         method_is_write(ar->rm.method)))
        return 403;
    if (ar->rm.user_id.bad || !ids_valid(ar->rm.user_id.value, ar->rm.user_id.len))
        errs[n++] = (field_error_t){"userId", "must match ^[A-Za-z0-9._-]{1,64}$"};
    if (ar->rm.route == ROUTE_WATCHLIST_ITEM &&
        (ar->rm.video_id.bad || !ids_valid(ar->rm.video_id.value, ar->rm.video_id.len)))
        errs[n++] = (field_error_t){"videoId", "must match ^[A-Za-z0-9._-]{1,64}$"};
    *nerrs = n;
    return n > 0 ? 400 : 0;
}

static void after_ratelimit(api_req_t *ar)
{
    field_error_t errs[2];
    size_t n;

    switch (check_access(ar, errs, &n)) {
    case 0:
        break;
    case 403:
        api_respond_problem(ar, 403, "forbidden", "The token does not allow this operation.", NULL,
                            0);
        return;
    default:
        api_respond_validation(ar, errs, n);
        return;
    }
    /* 7.. body size, content type, body, state: per resource */
    switch (ar->rm.route) {
    case ROUTE_PROFILE:
        handler_profiles(ar);
        break;
    case ROUTE_WATCHLIST:
    case ROUTE_WATCHLIST_ITEM:
        handler_watchlist(ar);
        break;
    case ROUTE_HISTORY:
        handler_history(ar);
        break;
    case ROUTE_RATINGS:
        handler_ratings(ar);
        break;
    case ROUTE_EXPORT:
        handler_export(ar);
        break;
    default:
        api_respond_problem(ar, 404, "not-found", "No such resource.", NULL, 0);
        break;
    }
}

/* ---- step 4: rate limit (asynchronous: Redis) ---- */

static void apply_ratelimit(api_req_t *ar, const ratelimit_result_t *res)
{
    /* from here on every response, errors included, carries RateLimit-Policy and RateLimit */
    ar->has_ratelimit = true;
    ar->ratelimit = *res;
    if (!res->allowed) {
        respond_too_many(ar, res, "The rate limit of this caller is exhausted.");
        return;
    }
    after_ratelimit(ar);
}

static void on_ratelimit(const ratelimit_result_t *res, void *ud)
{
    api_req_t *ar = api_wait_finish(ud, res != NULL && res->degraded);
    if (ar != NULL)
        apply_ratelimit(ar, res);
}

static void check_ratelimit(api_req_t *ar)
{
    api_thread_t *thr = ar->thr;
    ratelimit_result_t res;
    api_wait_t *w;

    if (!ratelimit_enabled() || thr->rl == NULL || thr->redis_closing) {
        after_ratelimit(ar);
        return;
    }
    w = api_wait_begin(ar, METRICS_REDIS_RATELIMIT);
    if (ratelimit_check(thr->rl, ar->principal.sub, &res, on_ratelimit, w) == RATELIMIT_PENDING) {
        field_error_t errs[2];
        size_t n;
        if (check_access(ar, errs, &n) == 0)
            api_list_prefetch(ar); /* a cache read in the same round trip as the limiter */
        return;                    /* continues in on_ratelimit */
    }
    (void)api_wait_end(w);
    apply_ratelimit(ar, &res);
}

static int on_req(h2o_handler_t *self, h2o_req_t *req)
{
    api_thread_t *thr = (api_thread_t *)req->conn->ctx;
    api_req_t *ar = h2o_mem_alloc_shared(&req->pool, sizeof(*ar), on_req_dispose);
    size_t pathlen = req->query_at != SIZE_MAX ? req->query_at : req->path.len;
    route_match_status_t rs;

    memset(ar, 0, sizeof(*ar));
    ar->req = req;
    ar->thr = thr;
    thr->active++;
    metrics_count(thr->index, METRICS_REQUEST_STARTED);
    clock_mono_ts(&ar->started);
    setup_request_id(ar);
    setup_trace(ar);
    setup_origin(ar);

    /* 1. route */
    if (pathlen > MAX_PATH_LEN) {
        api_respond_problem(ar, 414, "uri-too-long", "The request path is too long.", NULL, 0);
        return 0;
    }
    rs = route_match(req->method.base, req->method.len, req->path.base, pathlen, &ar->rm);
    if (rs == ROUTE_MATCH_NOT_FOUND) {
        api_respond_problem(ar, 404, "not-found", "No such resource.", NULL, 0);
        return 0;
    }
    if (rs == ROUTE_MATCH_METHOD_NOT_ALLOWED) {
        api_add_header(ar, "allow", ar->rm.allow, strlen(ar->rm.allow));
        api_respond_problem(ar, 405, "method-not-allowed",
                            "The method is not allowed on this resource.", NULL, 0);
        return 0;
    }
    /* 2. CORS preflight */
    if (ar->rm.method == ROUTE_METHOD_OPTIONS) {
        respond_preflight(ar);
        return 0;
    }
    if (!route_needs_auth(ar->rm.route)) {
        handler_health(ar);
        return 0;
    }
    /* 3. authentication */
    {
        ssize_t i = h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, -1);
        const char *reason = NULL;
        auth_status_t st = auth_verify(
            server.verifier, i >= 0 ? req->headers.entries[i].value.base : NULL,
            i >= 0 ? req->headers.entries[i].value.len : 0, time(NULL), &ar->principal, &reason);
        ar->auth_status = (int)st;
        if (st == AUTH_ERR_MISSING || st == AUTH_ERR_INVALID) {
            log_ctx_t lctx = {ar->request_id, ar->trace_id, NULL};
            log_debug_ctx(&lctx, "authentication failed: %s", reason != NULL ? reason : "?");
            auth_failed(ar);
            return 0;
        }
        ar->authed = true;
    }
    /* 4. rate limit, then 5. authorization, 6. ids, 7.. the resource */
    check_ratelimit(ar);
    return 0;
}

/* ---- idempotency cleanup (thread 0) ---- */

static void submit_cleanup(api_thread_t *thr);

static void on_cleanup_done(void *data, const PGresult *res, pgpool_err_t err)
{
    api_thread_t *thr = data;
    if (err == PGPOOL_OK && PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1) {
        int n = atoi(PQgetvalue(res, 0, 0));
        if (n > 0)
            log_debug("idempotency cleanup removed %d expired records", n);
        /* a full batch: more are waiting; the next batch goes right away, one at a time */
        if (n >= CLEANUP_BATCH && !server.stop_accepting)
            submit_cleanup(thr);
    } else if (err == PGPOOL_OK) {
        log_warn("idempotency cleanup failed: %s", PQresultErrorMessage(res));
    }
}

static void submit_cleanup(api_thread_t *thr)
{
    static const char *values[1] = {CLEANUP_BATCH_STR};
    pgpool_op_t *op;
    if (pgpool_submit(thr->pool, PGPOOL_STMT_IDEM_CLEANUP, 1, values, on_cleanup_done, thr, &op) !=
        PGPOOL_OK)
        log_debug("idempotency cleanup skipped: database not available");
}

static void on_cleanup_timer(h2o_timeout_entry_t *entry)
{
    api_thread_t *thr = H2O_STRUCT_FROM_MEMBER(api_thread_t, cleanup_entry, entry);
    if (!server.stop_accepting)
        submit_cleanup(thr);
    h2o_timeout_link(thr->ctx.loop, &thr->cleanup_timeout, &thr->cleanup_entry);
}

/* ---- threads and listeners ---- */

/* True when this loop already holds `limit` HTTP/1 connections. h2o keeps them in a list
 * without a count; the walk stops at the limit, so it costs at most `limit` steps. */
static bool at_connection_limit(api_thread_t *thr, int limit)
{
    const h2o_linklist_t *anchor = &thr->ctx.http1._conns, *node;
    int n = 0;
    for (node = anchor->next; node != anchor && node != NULL; node = node->next)
        if (++n >= limit)
            return true;
    return false;
}

static void on_accept(h2o_socket_t *listener, const char *err)
{
    api_thread_t *thr = listener->data;
    h2o_socket_t *sock;
    if (err != NULL)
        return;
    if ((sock = h2o_evloop_socket_accept(listener)) == NULL)
        return;
    if (at_connection_limit(thr, server.cfg->max_connections_per_thread)) {
        /* Over MAX_CONNECTIONS_PER_THREAD: close at once so one client holding many idle
         * connections cannot exhaust descriptors; the connections already open keep working. */
        metrics_count(thr->index, METRICS_CONNECTION_REFUSED);
        h2o_socket_close(sock);
        return;
    }
    h2o_accept(&thr->accept_ctx, sock);
}

/* ---- Redis: client, limiter and cache of one loop thread ---- */

static void on_stats_timer(h2o_timeout_entry_t *entry)
{
    api_thread_t *thr = H2O_STRUCT_FROM_MEMBER(api_thread_t, stats_entry, entry);
    api_publish_redis_stats(thr);
    h2o_timeout_link(thr->ctx.loop, &thr->stats_timeout, &thr->stats_entry);
}

static void redis_open(api_thread_t *thr)
{
    redis_client_config_t rc;
    char err[256];

    memset(&rc, 0, sizeof(rc));
    rc.url = server.cfg->redis_url;
    rc.command_timeout_ms = REDIS_COMMAND_TIMEOUT_MS;
    rc.cluster = server.cfg->redis_cluster;
    /* the URL was checked at start-up, so this does not fail; without Redis we still serve */
    if ((thr->redis = redis_client_create(thr->ctx.loop, &rc, err, sizeof(err))) == NULL) {
        log_error("thread %d runs without Redis: %s", thr->index, err);
    } else {
        thr->rl = ratelimit_create(thr->redis);
        thr->lc = listcache_create(thr->redis);
    }
    h2o_timeout_init(thr->ctx.loop, &thr->stats_timeout, STATS_INTERVAL_MS);
    thr->stats_entry.cb = on_stats_timer;
    h2o_timeout_link(thr->ctx.loop, &thr->stats_timeout, &thr->stats_entry);
}

/*
 * The client goes first: destroying it runs every pending callback with NULL, and those still
 * use the limiter and the cache (and may finish requests, which must not touch Redis again:
 * redis_closing tells them so).
 */
static void redis_close(api_thread_t *thr)
{
    if (h2o_timeout_is_linked(&thr->stats_entry))
        h2o_timeout_unlink(&thr->stats_entry);
    h2o_timeout_dispose(thr->ctx.loop, &thr->stats_timeout);
    thr->redis_closing = true;
    redis_client_destroy(thr->redis);
    thr->redis = NULL;
    ratelimit_destroy(thr->rl);
    thr->rl = NULL;
    listcache_destroy(thr->lc);
    thr->lc = NULL;
}

static void *thread_main(void *arg)
{
    api_thread_t *thr = arg;
    const app_config_t *cfg = server.cfg;
    int per = cfg->pg_pool_max / server.nthreads, extra = cfg->pg_pool_max % server.nthreads;
    int nconns = per + (thr->index < extra ? 1 : 0);
    int64_t deadline_ms = 0;
    bool accepting = true;

    h2o_context_init(&thr->ctx, h2o_evloop_create(), &server.globalconf);
    thr->accept_ctx.ctx = &thr->ctx;
    thr->accept_ctx.hosts = server.globalconf.hosts;
    thr->pool =
        pgpool_create(thr->ctx.loop, cfg->database_url, nconns, thr->index, QUEUE_MAX_PER_THREAD);
    pgpool_set_prepared(thr->pool, cfg->pg_prepared_statements != 0);
    thr->hint = cfg->outbox_hint ? hint_create_pg(thr->ctx.loop, cfg->database_url,
                                                  cfg->pg_prepared_statements != 0)
                                 : NULL;
    redis_open(thr);
    thr->listener =
        h2o_evloop_socket_create(thr->ctx.loop, thr->listen_fd, H2O_SOCKET_FLAG_DONT_READ);
    thr->listener->data = thr;
    h2o_socket_read_start(thr->listener, on_accept);
    if (thr->index == 0) {
        h2o_timeout_init(thr->ctx.loop, &thr->cleanup_timeout, CLEANUP_INTERVAL_MS);
        thr->cleanup_entry.cb = on_cleanup_timer;
        h2o_timeout_link(thr->ctx.loop, &thr->cleanup_timeout, &thr->cleanup_entry);
    }

    for (;;) {
        h2o_evloop_run(thr->ctx.loop, 50);
        if (accepting && server.stop_accepting) {
            accepting = false;
            h2o_socket_read_stop(thr->listener);
            h2o_socket_close(thr->listener);
            thr->listener = NULL;
            h2o_context_request_shutdown(&thr->ctx);
            deadline_ms = clock_mono_ms() + GRACE_MS;
        }
        if (!accepting) {
            if (thr->active == 0)
                break;
            if (clock_mono_ms() >= deadline_ms) {
                log_warn("grace period over with %llu requests in flight",
                         (unsigned long long)thr->active);
                break;
            }
        }
    }
    if (thr->index == 0 && h2o_timeout_is_linked(&thr->cleanup_entry))
        h2o_timeout_unlink(&thr->cleanup_entry);
    redis_close(thr);
    hint_destroy(thr->hint);
    thr->hint = NULL;
    pgpool_destroy(thr->pool);
    thr->pool = NULL;
    return NULL;
}

/* Until SIGTERM or SIGINT: SIGHUP reloads; then readiness answers 503 for the drain time. */
static void wait_then_drain(const app_config_t *cfg, const sigset_t *sigs)
{
    int sig;
    for (;;) {
        /* SIGHUP re-reads LOG_LEVEL_FILE and JWT_JWKS_FILE; between signals the JWKS file's
         * identity is compared every AUTH_JWKS_CHECK_MS (a stat), off the request threads. */
        struct timespec tick = {AUTH_JWKS_CHECK_MS / 1000, (AUTH_JWKS_CHECK_MS % 1000) * 1000000L};
        sig = sigtimedwait(sigs, NULL, &tick);
        if (sig == SIGTERM || sig == SIGINT)
            break;
        if (sig == SIGHUP)
            config_reload_log_level(cfg);
        (void)auth_verifier_reload(server.verifier, sig == SIGHUP);
    }
    log_info("signal %d: draining for %d s (readiness 503)", sig, cfg->shutdown_drain_seconds);
    server.draining = 1;
    if (cfg->shutdown_drain_seconds > 0) {
        struct timespec ts = {cfg->shutdown_drain_seconds, 0};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
            ;
    }
}

int server_run(const app_config_t *cfg, char *errbuf, size_t errlen)
{
    h2o_hostconf_t *hostconf;
    h2o_pathconf_t *pathconf;
    h2o_handler_t *handler;
    sigset_t sigs;
    int port = cfg->http_port, nthreads = cfg->http_threads;

    memset(&server, 0, sizeof(server));
    server.cfg = cfg;
    if ((server.verifier = auth_verifier_create(cfg, errbuf, errlen)) == NULL)
        return 2;
    if ((server.cors = cors_config_create(cfg->cors_allowed_origins, errbuf, errlen)) == NULL)
        return 2;
    if (nthreads > cfg->pg_pool_max) {
        log_warn("HTTP_THREADS %d > PG_POOL_MAX %d: using %d threads", nthreads, cfg->pg_pool_max,
                 cfg->pg_pool_max);
        nthreads = cfg->pg_pool_max;
    }
    server.nthreads = nthreads;
    metrics_init(nthreads);

    h2o_config_init(&server.globalconf);
    server.globalconf.server_name = h2o_iovec_init(H2O_STRLIT("profile-api"));
    /* above our 64 KiB so that the handler, not h2o, answers 413 with problem+json */
    server.globalconf.max_request_entity_size = 4 * 1024 * 1024;
    server.globalconf.http1.req_timeout = REQ_TIMEOUT_MS;
    server.globalconf.http1.upgrade_to_http2 = 0;
    hostconf =
        h2o_config_register_host(&server.globalconf, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    pathconf = h2o_config_register_path(hostconf, "/", 0);
    handler = h2o_create_handler(pathconf, sizeof(*handler));
    handler->on_req = on_req;

    /* signals are taken by sigwait() in this thread; loops never see them */
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    server.threads = xcalloc((size_t)nthreads, sizeof(api_thread_t));
    for (int i = 0; i < nthreads; i++) {
        api_thread_t *thr = &server.threads[i];
        int bound = port;
        thr->index = i;
        thr->server = &server;
        if (getrandom(&thr->rng, sizeof(thr->rng), 0) != sizeof(thr->rng) || thr->rng == 0)
            thr->rng = (uint64_t)time(NULL) * 2654435761u + (uint64_t)i + 1;
        thr->listen_fd = net_listen_tcp(port, SOMAXCONN, NET_LISTEN_REUSEPORT | NET_LISTEN_NODELAY,
                                        &bound, errbuf, errlen);
        if (thr->listen_fd < 0)
            return 1;
        port = bound; /* HTTP_PORT=0: every thread shares the first ephemeral port */
    }
    for (int i = 0; i < nthreads; i++)
        if (pthread_create(&server.threads[i].tid, NULL, thread_main, &server.threads[i]) != 0) {
            snprintf(errbuf, errlen, "cannot start thread: %s", strerror(errno));
            return 1;
        }
    log_info("listening on port %d with %d threads, %d PostgreSQL connections", port, nthreads,
             cfg->pg_pool_max);

    wait_then_drain(cfg, &sigs);
    log_info("closing listeners, finishing in-flight requests");
    server.stop_accepting = 1;
    for (int i = 0; i < nthreads; i++)
        pthread_join(server.threads[i].tid, NULL);
    auth_verifier_destroy(server.verifier);
    cors_config_destroy(server.cors);
    log_info("stopped");
    return 0;
}

/* Exposed to handler_health.c through respond.h's api_server_t. */
