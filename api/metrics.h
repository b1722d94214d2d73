/*
 * Minimal Prometheus registry for profile-api: each event-loop thread owns its counters (no
 * locks on the hot path) and a scrape sums them. Text exposition format 0.0.4.
 */
#ifndef PROFILE_API_METRICS_H
#define PROFILE_API_METRICS_H

#include <stdint.h>
#include "api/routes.h"
#include "common/buf.h"

#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/** Pool gauges of one thread, written by that thread only. */
typedef struct st_metrics_pool_gauges_t {
    int conns_total; /* configured connections */
    int conns_ready; /* connected and prepared */
    int inflight;    /* statements sent, result not yet read */
    int queued;      /* requests waiting for a connection */
} metrics_pool_gauges_t;

/** Allocates per-thread storage for `nthreads` threads. Call once before the loops start. */
void metrics_init(int nthreads);

/** Records one finished request on thread `thread` (its own slot; no locking). */
void metrics_observe_request(int thread, route_id_t route, route_method_t method, int status,
                             double duration_ms);

/** Publishes thread `thread`'s pool gauges. */
void metrics_set_pool(int thread, const metrics_pool_gauges_t *g);

/** Counts events without labels: pool rejections (queue full), reconnects, retries. */
void metrics_inc_pool_rejected(int thread);
void metrics_inc_pool_reconnect(int thread);
void metrics_inc_db_retry(int thread);

/** Appends the whole registry in Prometheus text format. Any thread. */
void metrics_render(strbuf_t *out);

#endif
