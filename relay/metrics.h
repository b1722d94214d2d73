/*
 * Relay metrics (Prometheus text format) and the tiny HTTP server that exposes them with
 * /health/live and /health/ready on RELAY_METRICS_PORT. Updates are lock-free atomics, so the
 * relay loop never waits for a scrape.
 */
#ifndef PROFILE_RELAY_METRICS_H
#define PROFILE_RELAY_METRICS_H

#include <stdint.h>
#include "common/alloc.h"
#include "common/buf.h"
#include "relay/event.h"
#include "relay/snapshot.h"

typedef enum {
    /* counters */
    METRIC_DEAD_LETTERED = 0,
    METRIC_ERASED_DEAD_LETTERS,
    METRIC_ERASED_USERS,
    METRIC_REDIS_INVALIDATIONS,
    METRIC_REDIS_ERRORS,
    METRIC_REDIS_DROPPED,
    METRIC_PG_RECONNECTS,
    METRIC_PRODUCER_RESETS,
    METRIC_CLAIMS,
    METRIC_HISTORY_ROWS_REMOVED,
    METRIC_HISTORY_RETENTION_BATCHES,
    METRIC_TAKEOVERS,
    /* gauges */
    METRIC_PENDING,
    METRIC_HELD_BACK,
    METRIC_OLDEST_PENDING_MS,
    METRIC_PARTITIONS_HELD,
    METRIC_DEAD_LETTERS,
    METRIC_INFLIGHT,
    METRIC_REDIS_UP,
    METRIC_PG_UP,
    METRIC_PRODUCER_UP,
    METRIC_SCHEMA_OK, /* 1: the database schema is at the version the relay needs, or newer */
    METRIC_COUNT
} metric_id_t;

/** Adds `n` to a counter. Thread-safe. */
void metrics_add(metric_id_t id, unsigned long long n);
/** Sets a gauge. Thread-safe. */
void metrics_set(metric_id_t id, long long v);
/** Reads a counter or gauge. Thread-safe. */
long long metrics_get(metric_id_t id);

/** Counts one delivered event of `type`, `latency_us` after its commit. */
void metrics_published(event_type_t type, long long latency_us);
/** Counts one failed delivery (retried or dead-lettered) of `type`. */
void metrics_failed(event_type_t type);

/**
 * Replaces the snapshot progress the metrics show (the newest snapshot of all users, read by
 * snapshot_read_status() every few seconds). Copies `s`. Thread-safe.
 */
void metrics_set_snapshot(const snapshot_status_t *s);

/** Appends the whole exposition (text format 0.0.4) to `out`. */
void metrics_render(strbuf_t *out);

/**
 * Starts the HTTP thread on 0.0.0.0:`port` (0 = the kernel picks; see metrics_server_port()).
 * Returns 0, or -1 with errbuf filled when the port cannot be bound.
 */
PROFILE_MUSTCHECK int metrics_server_start(int port, char *errbuf, size_t errlen);
/** The bound port, 0 before start. */
int metrics_server_port(void);
/** Stops and joins the HTTP thread. Safe to call when it never started. */
void metrics_server_stop(void);

#endif
