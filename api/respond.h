/*
 * The per-request context every handler works on, the per-thread and process-wide server
 * state, and the response helpers that add the headers every response carries (request id,
 * nosniff, no-store, CORS) and write the access log line and metrics.
 */
#ifndef PROFILE_API_RESPOND_H
#define PROFILE_API_RESPOND_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <h2o.h>
#include "api/auth.h"
#include "api/cursor.h"
#include "api/validate.h"
#include "api/pgpool.h"
#include "api/problem.h"
#include "api/routes.h"
#include "api/ratelimit.h"
#include "api/listcache.h"
#include "api/redis_client.h"
#include "common/config.h"

#define API_SCHEMA_VERSION 4 /* migrations this binary needs (readiness): V004 grants its role */
#define API_MAX_BODY (64 * 1024) /* DESIGN.md: larger bodies are 413 */

typedef struct st_api_server_t api_server_t;

/** One event-loop thread. `ctx` must stay first: handlers map req->conn->ctx back to it. */
typedef struct st_api_thread_t {
    h2o_context_t ctx;
    int index;
    api_server_t *server;
    pgpool_t *pool;
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

/**
 * A Redis step in flight for a request (rate limit, cache get, invalidation). Heap-allocated;
 * the request clears `ar` when it is disposed first (the client went away), so the callback
 * only frees it. See api_wait_begin()/api_wait_end().
 */
typedef struct st_api_wait_t api_wait_t;

/** A list-cache read sent together with the rate-limit check (api_list_prefetch()). */
typedef struct st_api_prefetch_t api_prefetch_t;

/** GET watchlist/history: what a miss needs to query PostgreSQL and fill the cache. */
typedef struct st_api_list_ctx_t {
    pgpool_stmt_t stmt;
    list_query_t q;
    cursor_t after;
    bool have_after;
    const char *extra;
    bool cacheable; /* false: no field (too long) or no cache for this list */
    cache_list_t list;
    char field[LISTCACHE_FIELD_MAX]; /* listcache_field() */
} api_list_ctx_t;

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
    int auth_status;          /* auth_status_t of step 3 (kept across the async limiter) */
    api_list_ctx_t *list;     /* GET watchlist/history, else NULL */
    api_prefetch_t *prefetch; /* cache read in flight since the rate-limit check, or NULL */
    /* a committed write waiting for its cache invalidation before it is answered */
    int pending_status;
    const char *pending_body;
    size_t pending_len;
} api_req_t;

struct st_api_wait_t {
    api_req_t *ar;      /* NULL once the request is gone */
    int thread;         /* metrics slot */
    int op;             /* metrics_redis_op_t */
    struct timespec t0; /* when the Redis call was made */
};

/**
 * Starts a Redis step for `ar` (at most one at a time) of kind `op` (metrics_redis_op_t); pass
 * the result as the callback's ud. Call it right before the Redis call: it starts the clock.
 */
api_wait_t *api_wait_begin(api_req_t *ar, int op);

/**
 * Ends a step: frees `w` and returns its request, or NULL when the request has gone (the
 * callback must then do nothing else). Use it when the module answered DONE (no callback
 * will run, no Redis call was timed).
 */
api_req_t *api_wait_end(api_wait_t *w);

/**
 * api_wait_end() from the step's callback: records the call's latency and, for a sampled
 * request, its CLIENT span ("redis <op>", error when `error`).
 */
api_req_t *api_wait_finish(api_wait_t *w, bool error);

/** Wall-clock nanoseconds of a CLOCK_MONOTONIC time of a sampled request (span timestamps). */
uint64_t api_span_time(const api_req_t *ar, const struct timespec *mono);

/**
 * Exports a CLIENT span of a sampled request (no-op otherwise): child of the server span, named
 * `name`, from `t0` to `t1` (CLOCK_MONOTONIC), with db.system=`system` and db.operation=`op`.
 */
void api_span_client(api_req_t *ar, const char *name, const char *system, const char *op,
                     const struct timespec *t0, const struct timespec *t1, bool error);

/** Adds a response header (name lower-case literal, value copied into the request pool). */
void api_add_header(api_req_t *ar, const char *name, const char *value, size_t len);

/**
 * Sends the response: sets status, Content-Type (when `ctype` not NULL), the common headers,
 * then the body (copied). Records metrics and the sampled access log. Exactly once per request.
 */
void api_respond(api_req_t *ar, int status, const char *ctype, const char *body, size_t len);

/** api_respond with a problem+json body (problem_render). */
void api_respond_problem(api_req_t *ar, int status, const char *slug, const char *detail,
                         const problem_field_error_t *errors, size_t nerrors);

/** A 503 problem with Retry-After for pool errors (busy, unavailable, connection lost). */
void api_respond_unavailable(api_req_t *ar, pgpool_err_t err);

/** A 500 problem for an unexpected SQL error; logs the server-side message (never sent). */
void api_respond_sql_error(api_req_t *ar, const PGresult *res);

/**
 * Common start of a statement's completion callback: clears ar->op, then answers 503 for a
 * pool error or 500 for a result that is not exactly one row of at least `min_fields`
 * columns. Returns true when the caller should go on and read row 0.
 */
bool api_db_single_row(api_req_t *ar, const PGresult *res, pgpool_err_t err, int min_fields);

/** Fills `out` (2*n+1 bytes) with 2*n random lowercase hex digits from the thread's rng. */
void api_random_hex(api_thread_t *thr, char *out, size_t n);

/** Finds a request header (lower-case name); returns NULL when absent. */
const h2o_iovec_t *api_find_header(const api_req_t *ar, const char *name, size_t name_len);

/** Submits a statement for `ar`, answering 503 itself when the pool refuses. Returns 0 when
 * queued (the callback then receives `ar`), -1 when a response was already sent. */
int api_db_submit(api_req_t *ar, pgpool_stmt_t stmt, int nparams, const char *const *values,
                  pgpool_cb cb);

/** Handlers (one file per resource). Each runs after routing, auth and id checks. */
void handler_profiles(api_req_t *ar);
void handler_watchlist(api_req_t *ar);
void handler_history(api_req_t *ar);
void handler_ratings(api_req_t *ar);
void handler_health(api_req_t *ar);

/** Common body checks for writes (413, 415); returns 0 or -1 when a response was sent. */
int api_check_body(api_req_t *ar);

/**
 * Writes: builds the five common parameters (caller, Idempotency-Key, request hash, TTL,
 * traceparent) into values[0..4] and returns 0, or answers 400 for a bad key and returns -1.
 * Strings live in the request pool.
 */
int api_write_common_params(api_req_t *ar, const char **values);

/** Completion callback for every write function: maps (status, body, etag, location, replayed)
 * to the response. */
void api_on_write_result(void *data, const PGresult *res, pgpool_err_t err);

/** Responds 400 validation-error with the given field errors. */
void api_respond_validation(api_req_t *ar, const problem_field_error_t *errors, size_t n);

/**
 * List endpoints: parses the query (limit, cursor, and the parameters in `allow`) and decodes
 * the cursor of list `kind` ('h' becomes 'c' with view=continue). Returns 0, or -1 after
 * answering 400.
 */
int api_parse_list_query(api_req_t *ar, unsigned allow, char kind, list_query_t *q, cursor_t *after,
                         bool *have_after);

/**
 * Submits a page statement (PGPOOL_STMT_PAGE_*: user, limit, after_ts, after_id; for
 * PGPOOL_STMT_PAGE_RATING_VIDEO `extra` is the videoId and takes the limit's place), answered
 * by api_on_list_result, which renders {"items":[...],"nextCursor":...} (api/listrender.h).
 */
void api_submit_list(api_req_t *ar, pgpool_stmt_t stmt, const list_query_t *q,
                     const cursor_t *after, bool have_after, const char *extra);

/**
 * Read-through variant for watchlist and history (docs/cache.md): looks the page variant up in
 * the thread's list cache; a hit is answered from it, a miss goes to api_submit_list() and the
 * result is filled into the cache with the version PostgreSQL returned.
 */
void api_submit_list_cached(api_req_t *ar, cache_list_t list, pgpool_stmt_t stmt,
                            const list_query_t *q, const cursor_t *after, bool have_after,
                            const char *extra);

/**
 * Called right after the rate-limit script was sent for a request whose authorization and ids
 * are fine: when it is a cacheable GET watchlist/history with a valid query, sends the cache
 * read now, so that it shares the limiter's Redis round trip; api_submit_list_cached() then
 * uses its reply. Does nothing otherwise (the request takes the usual path).
 */
void api_list_prefetch(api_req_t *ar);

/** The request is going away: a prefetch still in flight drops its reply. */
void api_prefetch_detach(api_req_t *ar);

/** Publishes the thread's Redis, cache and limiter counters to the metrics registry. */
void api_publish_redis_stats(api_thread_t *thr);
void api_on_list_result(void *data, const PGresult *res, pgpool_err_t err);

#endif
