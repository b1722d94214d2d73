/*
 * Publish spans of the relay (PRODUCER kind, OpenTelemetry messaging conventions): parented to
 * and linked with the API request span stored in the outbox row.
 */
#include <stdio.h>
#include <string.h>
#include "relay/span.h"

static bool is_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; ++i)
        if (p[i] != 0)
            return false;
    return true;
}

bool span_begin(relay_event_t *ev, char tp_buf[EVENT_TRACEPARENT_LEN + 1], span_publish_t *span)
{
    uint8_t stored_span[8], flags;

    memset(span, 0, sizeof(*span));
    if (event_traceparent_parse(ev->traceparent, span->trace_id, stored_span, &flags) == 0) {
        memcpy(span->parent_id, stored_span, sizeof(stored_span));
        do {
            otel_random_bytes(span->span_id, sizeof(span->span_id));
        } while (is_zero(span->span_id, sizeof(span->span_id)));
    } else {
        event_new_traceparent(tp_buf);
        ev->traceparent = tp_buf;
        if (event_traceparent_parse(tp_buf, span->trace_id, span->span_id, &flags) != 0)
            return false; /* cannot happen: event_new_traceparent() writes a valid one */
    }
    if ((flags & 1) == 0 || !otel_sampled(span->trace_id))
        return false;
    span->start_ns = otel_now_ns();
    return true;
}

void span_build(const span_publish_t *span, const span_info_t *info, uint64_t end_ns,
                const char *error, char *name, size_t namelen, otel_span_t *out)
{
    size_t n = 0;

    memset(out, 0, sizeof(*out));
    memcpy(out->trace_id, span->trace_id, sizeof(out->trace_id));
    memcpy(out->span_id, span->span_id, sizeof(out->span_id));
    if (!is_zero(span->parent_id, sizeof(span->parent_id))) {
        memcpy(out->parent_span_id, span->parent_id, sizeof(out->parent_span_id));
        memcpy(out->link_trace_id, span->trace_id, sizeof(out->link_trace_id));
        memcpy(out->link_span_id, span->parent_id, sizeof(out->link_span_id));
    }
    snprintf(name, namelen, "publish %s", info->event_type);
    out->name = name;
    out->kind = OTEL_KIND_PRODUCER;
    out->start_ns = span->start_ns;
    out->end_ns = end_ns < span->start_ns ? span->start_ns : end_ns;
    out->error = error != NULL;
#define ATTR_STR(k, v) out->attrs[n++] = (otel_attr_t){.key = (k), .str = (v)}
    ATTR_STR("messaging.system", "kafka");
    ATTR_STR("messaging.operation", "publish");
    ATTR_STR("messaging.destination.name", info->topic);
    ATTR_STR("messaging.kafka.message.key", info->user_id);
    ATTR_STR("cloudevents.event_id", info->event_id);
    ATTR_STR("cloudevents.event_type", info->event_type);
    out->attrs[n++] = (otel_attr_t){.key = "ce_sequence", .num = info->seq};
    if (error != NULL)
        ATTR_STR("error.type", error);
#undef ATTR_STR
    out->nattrs = n;
}

void span_end(const span_publish_t *span, const span_info_t *info, const char *error)
{
    char name[96];
    otel_span_t s;

    span_build(span, info, otel_now_ns(), error, name, sizeof(name), &s);
    otel_export(&s);
}
