/*
 * Minimal Prometheus registry for profile-api: each event-loop thread owns its counters (no
 * locks on the hot path) and a scrape sums them. Text exposition format 0.0.4.
 */
#ifndef PROFILE_API_METRICS_H
#define PROFILE_API_METRICS_H

#include <stdint.h>
#include "api/data/listcache.h"
#include "api/data/ratelimit.h"
#include "api/data/redis_client.h"
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

/**
 * Redis, list cache and limiter counters of one thread: snapshots of the modules' own stats.
 * Every member is a uint64_t (metrics_set_redis() stores it word by word).
 */
typedef struct st_metrics_redis_t {
    listcache_stats_t cache;
    ratelimit_stats_t limiter;
    redis_client_stats_t client;
    uint64_t up; /* 1 when the thread's client is connected */
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

/** Events counted without labels. */
typedef enum {
    METRICS_REQUEST_STARTED = 0, /* on_req; in flight = started - finished */
    METRICS_REQUEST_FINISHED,    /* request disposed */
    METRICS_CONNECTION_REFUSED,  /* closed at accept: the loop was at MAX_CONNECTIONS_PER_THREAD */
    METRICS_IDEMPOTENT_REPLAY,   /* write answered from its stored outcome (Idempotent-Replayed) */
    METRICS_POOL_REJECTED,       /* refused with 503: the pool queue was full */
    METRICS_POOL_RECONNECT,      /* PostgreSQL connection re-established */
    METRICS_DB_RETRY,            /* statement retried after serialization failure or deadlock */
    METRICS_EVENT__COUNT
} metrics_event_t;

/** Counts one `ev` on thread `thread` (its own slot; no locking). Out-of-range ids are ignored. */
void metrics_count(int thread, metrics_event_t ev);

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

/** Latency of one PostgreSQL statement (pgpool_stmt_t `stmt`), submit to result. */
void metrics_observe_db(int thread, int stmt, double duration_ms);

/** Latency of one Redis call. */
void metrics_observe_redis(int thread, metrics_redis_op_t op, double duration_ms);

/** Appends the whole registry in Prometheus text format. Any thread. */
void metrics_render(strbuf_t *out);

#endif
