/*
 * CloudEvents binary-mode mapping of one outbox row (the event contract: docs/events.md) and small
 * pure helpers shared by the relay modules: traceparent generation and dead-letter id parsing.
 */
#ifndef PROFILE_RELAY_EVENT_H
#define PROFILE_RELAY_EVENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "common/alloc.h"

/** Length of a W3C traceparent ("00-<32>-<16>-01"), without the NUL. */
#define EVENT_TRACEPARENT_LEN 55
/** Length of a UUID in text form, without the NUL. */
#define EVENT_UUID_LEN 36
/** Headers every event carries. */
#define EVENT_HEADER_COUNT 10
/** Headers an event may carry: EVENT_HEADER_COUNT plus `ce_snapshot` on a snapshot's events. */
#define EVENT_HEADER_MAX 11
/**
 * Prefix of every `ce_dataschema` URI; the full URI is `<prefix><type>:<version>`, the `$id` of
 * the JSON Schema file schemas/events/<type>.v<version>.json.
 */
#define EVENT_SCHEMA_URN_PREFIX "urn:profile-service:schema:"

/** Event types, in the order used for per-type metrics. */
typedef enum {
    EVENT_TYPE_WATCHLIST = 0,
    EVENT_TYPE_HISTORY = 1,
    EVENT_TYPE_RATING = 2,
    EVENT_TYPE_PROFILE = 3,
    EVENT_TYPE_PROFILE_DELETED = 4,
    EVENT_TYPE_COUNT = 5,
} event_type_t;

/** One outbox row as read by outbox_claim(); all strings are borrowed. */
typedef struct st_relay_event_t {
    const char *user_id;
    int64_t seq;
    const char *event_id;   /* UUID text */
    const char *event_type; /* "WatchlistUpdated", ... */
    int partition_no;       /* outbox partition 0..63 */
    const char *payload;    /* JSON bytes */
    size_t payload_len;
    const char *traceparent; /* NULL or "" when the row has none */
    const char *ce_time;     /* RFC 3339 UTC with milliseconds */
    int64_t created_us;      /* emitted_at (else created_at) as microseconds since the epoch */
    const char *snapshot_id; /* UUID text of the snapshot that wrote it; NULL or "" for a write */
} relay_event_t;

typedef struct st_event_header_t {
    const char *name;
    const char *value;
    size_t len;
} event_header_t;

/** Scratch storage the headers point into; lives as long as the headers are used. */
typedef struct st_event_header_buf_t {
    char seq[24];
    char traceparent[EVENT_TRACEPARENT_LEN + 1];
} event_header_buf_t;

/**
 * Fills `out` with the CloudEvents headers of `ev`, in a fixed order (ce_specversion, ce_id,
 * ce_source, ce_type, ce_dataschema, ce_subject, ce_time, ce_sequence, content-type,
 * traceparent), then `ce_snapshot` when the event was written by a snapshot. Returns how many:
 * EVENT_HEADER_COUNT, or EVENT_HEADER_MAX with `ce_snapshot`. Values point into `ev`,
 * `ce_source`, `scratch` or static storage. `ce_dataschema` is event_dataschema() of the type
 * (empty for a type the relay does not know). A missing or invalid stored traceparent is
 * replaced by a new random one. Thread-safe.
 */
int event_build_headers(const relay_event_t *ev, const char *ce_source, event_header_buf_t *scratch,
                        event_header_t out[EVENT_HEADER_MAX]);

/** True when `s` is a W3C traceparent of version 00 with non-zero trace and span ids. */
bool event_traceparent_valid(const char *s);

/**
 * Splits a traceparent that event_traceparent_valid() accepts into its trace id, parent span id
 * and flags byte. Returns 0, or -1 (outputs untouched) when `s` is not valid.
 */
PROFILE_MUSTCHECK int event_traceparent_parse(const char *s, uint8_t trace_id[16],
                                              uint8_t span_id[8], uint8_t *flags);

/** Writes a new random traceparent "00-<trace>-<span>-01" (NUL-terminated) into `out`. */
void event_new_traceparent(char out[EVENT_TRACEPARENT_LEN + 1]);

/** Maps a type name to its metric index; EVENT_TYPE_COUNT when unknown. */
event_type_t event_type_from_name(const char *name);
/** The name of a type index ("WatchlistUpdated", ...); "unknown" when out of range. */
const char *event_type_name(event_type_t t);
/**
 * The URI of the JSON Schema of the `data` the relay publishes for type `t` (e.g.
 * "urn:profile-service:schema:WatchlistUpdated:1"); a static string. NULL when out of range.
 */
const char *event_dataschema(event_type_t t);

/** What a dead-letter id names: "<userId>:<seq>" or an event UUID. */
typedef struct st_event_dlq_id_t {
    bool by_uuid;
    char user_id[65];
    int64_t seq;
    char uuid[EVENT_UUID_LEN + 1];
} event_dlq_id_t;

/**
 * Parses an operator's dead-letter id. A user id is 1-64 of [A-Za-z0-9._-] and the sequence a
 * positive decimal; the last ':' separates them. A UUID is 8-4-4-4-12 hex digits (any case,
 * stored lower case). Returns 0, or -1 when `s` is neither.
 */
PROFILE_MUSTCHECK int event_parse_dlq_id(const char *s, event_dlq_id_t *out);

#endif
