/*
 * Minimal Prometheus registry for profile-api: each event-loop thread owns its counters (no
 * locks on the hot path) and a scrape sums them. Text exposition format 0.0.4.
 */
#ifndef PROFILE_API_METRICS_H
#define PROFILE_API_METRICS_H

#include <stdint.h>
#include "api/http/routes.h"
#include "common/buf.h"

#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/** Pool gauges of one thread, written by that thread only. */
typedef struct st_metrics_pool_gauges_t {
    int conns_total; /* configured connections */
    int conns_ready; /* connected and prepared */
    int inflight;    /* statements sent, result not yet read */
    int queued;      /* requests waiting for a connection */
} metrics_pool_gauges_t;

/** Redis, list cache and limiter counters of one thread (snapshots of the modules' stats). */
typedef struct st_metrics_redis_t {
    uint64_t cache_hits, cache_misses, cache_fills, cache_fill_rejections, cache_errors;
    uint64_t cache_invalidations, cache_invalidation_failures, cache_bypassed, cache_local_hits;
    uint64_t rl_checks, rl_denied, rl_degraded, rl_local_denied, rl_errors;
    uint64_t auth_failures, auth_failures_denied;
    uint64_t redis_commands, redis_failed, redis_timeouts, redis_connects, redis_disconnects;
    uint64_t redis_error_replies, redis_redirects, redis_slot_map_reads;
    uint64_t redis_up; /* 1 when the thread's client is connected */
} metrics_redis_t;

/** Allocates per-thread storage for `nthreads` threads. Call once before the loops start. */
void metrics_init(int nthreads);

/** Records one finished request on thread `thread` (its own slot; no locking). */
void metrics_observe_request(int thread, route_id_t route, route_method_t method, int status,
                             double duration_ms);

/** Publishes thread `thread`'s pool gauges. */
void metrics_set_pool(int thread, const metrics_pool_gauges_t *g);

/** Publishes thread `thread`'s Redis counters (that thread only). */
void metrics_set_redis(int thread, const metrics_redis_t *r);

/** Counts events without labels: pool rejections (queue full), reconnects, retries. */
void metrics_inc_pool_rejected(int thread);
void metrics_inc_pool_reconnect(int thread);
void metrics_inc_db_retry(int thread);
/** A connection closed at accept because the loop was at MAX_CONNECTIONS_PER_THREAD. */
void metrics_connection_refused(int thread);

/** Redis calls a request makes, timed from the call to its callback. */
typedef enum {
    METRICS_REDIS_RATELIMIT = 0,    /* caller rate limit */
    METRICS_REDIS_AUTH_FAILURE,     /* failed-authentication limit per address */
    METRICS_REDIS_CACHE_GET,        /* list cache lookup */
    METRICS_REDIS_CACHE_INVALIDATE, /* list cache invalidation after a write */
    METRICS_REDIS__COUNT
} metrics_redis_op_t;

/** The operation's name (metric label and span name suffix), e.g. "cache.get". */
const char *metrics_redis_op_name(metrics_redis_op_t op);

/** In-flight requests of `thread`: one started (on_req), one disposed. */
void metrics_request_started(int thread);
void metrics_request_finished(int thread);

/** Latency of one PostgreSQL statement (pgpool_stmt_t `stmt`), submit to result. */
void metrics_observe_db(int thread, int stmt, double duration_ms);

/** Latency of one Redis call. */
void metrics_observe_redis(int thread, metrics_redis_op_t op, double duration_ms);

/** A write answered from its stored idempotent outcome (Idempotent-Replayed: true). */
void metrics_inc_idempotent_replay(int thread);

/** Appends the whole registry in Prometheus text format. Any thread. */
void metrics_render(strbuf_t *out);

#endif
