/*
 * OpenTelemetry span export over OTLP/HTTP with JSON encoding. Spans are queued without
 * blocking (a full queue drops and counts) and sent in batches by one background thread.
 * Off (every call a cheap no-op) until otel_exporter_start() succeeds.
 */
#ifndef PROFILE_COMMON_OTEL_H
#define PROFILE_COMMON_OTEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "common/alloc.h"

#define OTEL_MAX_ATTRS 8

typedef enum {
    OTEL_KIND_INTERNAL = 1,
    OTEL_KIND_SERVER = 2,
    OTEL_KIND_CLIENT = 3,
    OTEL_KIND_PRODUCER = 4,
} otel_kind_t;

typedef struct st_otel_attr_t {
    const char *key; /* static string */
    const char *str; /* string value, or NULL to use `num` */
    int64_t num;
} otel_attr_t;

typedef struct st_otel_span_t {
    uint8_t trace_id[16];
    uint8_t span_id[8];
    uint8_t parent_span_id[8]; /* all zero: no parent */
    uint8_t link_trace_id[16]; /* all zero: no link */
    uint8_t link_span_id[8];
    const char *name;
    otel_kind_t kind;
    uint64_t start_ns, end_ns; /* Unix epoch nanoseconds */
    bool error;
    otel_attr_t attrs[OTEL_MAX_ATTRS];
    size_t nattrs;
} otel_span_t;

/**
 * Starts the exporter thread posting to `endpoint` (e.g. "http://127.0.0.1:4318"; "/v1/traces"
 * is appended) for `service`. `ratio` in [0,1] is the share of traces exported (decided from
 * the trace id, so every process agrees). Returns 0, or -1 with errbuf filled (only plain
 * http:// endpoints are supported). Call once at start-up.
 */
PROFILE_MUSTCHECK int otel_exporter_start(const char *endpoint, const char *service, double ratio,
                                          size_t queue_capacity, char *errbuf, size_t errlen);

/** Flushes what is queued (bounded by `timeout_ms`) and stops the thread. Safe when not started. */
void otel_exporter_stop(int timeout_ms);

/** True when the exporter runs and this trace id falls within the sampling ratio. */
bool otel_sampled(const uint8_t trace_id[16]);

/**
 * Queues a copy of `span` (string attributes are copied). Never blocks: when the queue is
 * full the span is dropped and counted. Thread-safe. No-op when the exporter is off.
 */
void otel_export(const otel_span_t *span);

/** Counters for metrics: spans exported, dropped (queue full), failed (POST errors). */
void otel_stats(uint64_t *exported, uint64_t *dropped, uint64_t *failed);

/** Current time as Unix epoch nanoseconds. */
uint64_t otel_now_ns(void);

/** Fills `buf` with random bytes (getrandom); never fails (falls back to a PRNG). */
void otel_random_bytes(uint8_t *buf, size_t len);

#endif
