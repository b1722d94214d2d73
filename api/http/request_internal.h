/*
 * The state every room of api/ works on (h2o's `_internal.h` shape): the process-wide server,
 * one event-loop thread, and one request. Private to api/: main.c and the tests never need it.
 */
#ifndef PROFILE_API_HTTP_REQUEST_INTERNAL_H
#define PROFILE_API_HTTP_REQUEST_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <h2o.h>
#include "api/http/auth.h"
#include "api/http/routes.h"
#include "api/data/hint.h"
#include "api/data/pgpool.h"
#include "api/data/ratelimit.h"
#include "api/data/listcache.h"
#include "api/data/redis_client.h"
#include "common/config.h"

#define API_SCHEMA_VERSION 11    /* migrations this binary needs (readiness): V004, V007, V011 */
#define API_MAX_BODY (64 * 1024) /* larger bodies are 413 (docs/security.md) */

typedef struct st_api_server_t api_server_t;

/** One event-loop thread. `ctx` must stay first: handlers map req->conn->ctx back to it. */
typedef struct st_api_thread_t {
    h2o_context_t ctx;
    int index;
    api_server_t *server;
    pgpool_t *pool;
    hint_t *hint; /* the relays' wake-up after commit; NULL with OUTBOX_HINT=0 */
    h2o_socket_t *listener;
    int listen_fd;
    h2o_accept_ctx_t accept_ctx;
    uint64_t active; /* requests not yet disposed */
    uint64_t rng;    /* xorshift state for ids and sampling */
    pthread_t tid;
    h2o_timeout_t cleanup_timeout;
    h2o_timeout_entry_t cleanup_entry;
    /* Redis (docs/cache.md): one client per thread, borrowed by the limiter and the cache */
    redis_client_t *redis;
    ratelimit_t *rl;
    listcache_t *lc;
    bool redis_closing; /* set before the client is destroyed: callbacks must not use it */
    h2o_timeout_t stats_timeout;
    h2o_timeout_entry_t stats_entry;
} api_thread_t;

struct st_api_server_t {
    const app_config_t *cfg;
    auth_verifier_t *verifier;
    struct st_cors_config_t *cors;
    h2o_globalconf_t globalconf;
    api_thread_t *threads;
    int nthreads;
    atomic_int draining;       /* SIGTERM received: readiness 503 */
    atomic_int stop_accepting; /* drain over: close listeners, finish in-flight work */
};

/** A Redis step in flight for a request (api/data/wait.h). */
typedef struct st_api_wait_t api_wait_t;

/** A list-cache read sent together with the rate-limit check (api/resources/list.h). */
typedef struct st_api_prefetch_t api_prefetch_t;

/** GET watchlist/history: what a cache miss needs (api/resources/list.c). */
typedef struct st_api_list_ctx_t api_list_ctx_t;

/** Per-request state, allocated in req->pool (shared, with a dispose that detaches DB work). */
typedef struct st_api_req_t {
    h2o_req_t *req;
    api_thread_t *thr;
    route_match_t rm;
    struct timespec started;
    char request_id[65];
    char trace_id[33];
    char span_id[17];
    char traceparent[56]; /* 00-<trace>-<server span>-<01 sampled | 00> */
    /* tracing (OpenTelemetry): ids in binary; spans are built only when `sampled` */
    bool sampled;           /* this request's spans are exported */
    uint8_t trace_bin[16];  /* the trace id */
    uint8_t span_bin[8];    /* the server span id (the one in `traceparent`) */
    uint8_t parent_bin[8];  /* the caller's span id; all zero for a new trace */
    uint64_t start_real_ns; /* wall clock of `started` (only set when sampled) */
    pgpool_stmt_t db_stmt;  /* statement in flight (api_db_submit) */
    pgpool_cb db_cb;        /* its handler callback */
    struct timespec db_t0;  /* when it was submitted */
    const char *origin;     /* the request's Origin when it is an allowed one, else NULL */
    size_t origin_len;
    bool authed;
    auth_principal_t principal;
    pgpool_op_t *op; /* statement in flight, or NULL */
    bool responded;
    /* list endpoints: which cursor kind the reply's nextCursor gets, and the page size */
    char cursor_kind;
    int list_limit;
    api_wait_t *wait;   /* Redis step in flight, or NULL */
    bool has_ratelimit; /* RateLimit headers go on the response (limiter on, authed) */
    ratelimit_result_t ratelimit;
    int auth_status;                /* auth_status_t of step 3 (kept across the async limiter) */
    api_list_ctx_t *list;           /* GET watchlist/history, else NULL */
    struct st_api_export_t *export; /* GET export while it streams, else NULL */
    api_prefetch_t *prefetch;       /* cache read in flight since the rate-limit check, or NULL */
    /* a committed write waiting for its cache invalidation before it is answered */
    int pending_status;
    const char *pending_body;
    size_t pending_len;
} api_req_t;

#endif
