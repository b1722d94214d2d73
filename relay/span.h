/*
 * The relay's publish spans: one OpenTelemetry PRODUCER span per produced event, in the trace of
 * the outbox row's stored traceparent, exported through common/otel. Callers check that tracing
 * is on before calling anything here, so an untraced relay does no work for it.
 */
#ifndef PROFILE_RELAY_SPAN_H
#define PROFILE_RELAY_SPAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "common/otel.h"
#include "relay/event.h"

/** A started publish span; embedded in the relay's per-message record. */
typedef struct st_span_publish_t {
    uint8_t trace_id[16];
    uint8_t span_id[8];   /* this span */
    uint8_t parent_id[8]; /* the API's server span; all zero when the relay started the trace */
    uint64_t start_ns;
} span_publish_t;

/** What the finished span describes; strings are borrowed for the call. */
typedef struct st_span_info_t {
    const char *topic;
    const char *user_id;
    const char *event_id;
    const char *event_type;
    int64_t seq;
} span_info_t;

/**
 * Starts the publish span of `ev` at the current time. The row's valid traceparent gives the
 * trace id and the parent (and link) span id; the span gets a new span id. A row without a
 * valid traceparent gets a new one written into `tp_buf`, and `ev->traceparent` then points to
 * it, so that the Kafka header and the span share the ids (the span is then the trace's root
 * and its span id is the header's). Returns true when the span is sampled: the traceparent's
 * sampled flag is set and otel_sampled() accepts the trace id; false means nothing to export.
 */
bool span_begin(relay_event_t *ev, char tp_buf[EVENT_TRACEPARENT_LEN + 1], span_publish_t *span);

/**
 * Fills `out` with the finished span (name "publish <event_type>" written into `name`,
 * attributes pointing into `info` and `error`). `error` is NULL on success. Pure: for tests.
 */
void span_build(const span_publish_t *span, const span_info_t *info, uint64_t end_ns,
                const char *error, char *name, size_t namelen, otel_span_t *out);

/** Ends the span now and queues it for export (otel_export(); never blocks). */
void span_end(const span_publish_t *span, const span_info_t *info, const char *error);

#endif
