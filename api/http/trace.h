/*
 * W3C Trace Context `traceparent` (https://www.w3.org/TR/trace-context/): parsing, new ids and
 * formatting. Pure functions; ids come from getrandom(2).
 */
#ifndef PROFILE_API_HTTP_TRACE_H
#define PROFILE_API_HTTP_TRACE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TRACE_ID_LEN 16
#define TRACE_SPAN_ID_LEN 8
/** Length of a version-00 traceparent: "00-" 32 hex "-" 16 hex "-" 2 hex. */
#define TRACE_TRACEPARENT_LEN 55
#define TRACE_FLAG_SAMPLED 0x01u

typedef struct st_trace_context_t {
    uint8_t trace_id[TRACE_ID_LEN];
    uint8_t span_id[TRACE_SPAN_ID_LEN]; /* the parent-id field of a traceparent */
    uint8_t flags;
} trace_context_t;

/**
 * Parses a traceparent header value (`len` bytes, surrounding spaces/tabs ignored). Version 00
 * must be exactly 55 characters; a higher version (not ff) may carry more after a '-' and is
 * read by the version-00 layout, as the spec asks. Lowercase hex only; all-zero trace-id or
 * parent-id, version ff, or anything malformed gives false (the caller starts a new trace).
 */
bool trace_parse_traceparent(const char *s, size_t len, trace_context_t *out);

/** Fills `out` with a new random non-zero trace id and span id and the given flags. */
void trace_generate(trace_context_t *out, uint8_t flags);

/** Writes a new random non-zero span id (for a child span: keep the trace id, replace this). */
void trace_new_span_id(uint8_t span_id[TRACE_SPAN_ID_LEN]);

/** Formats a version-00 traceparent into `out` (TRACE_TRACEPARENT_LEN + 1 bytes, NUL-ended). */
void trace_format_traceparent(const trace_context_t *t, char *out);

/**
 * Sampling of one request. `parent_flags` are the incoming traceparent's flags (TRACE_FLAG_SAMPLED
 * for a new trace); `exporter_on` says whether spans are exported at all and `ratio_ok` whether
 * the trace id falls within the sampling ratio (otel_sampled()). Sets *record when the request's
 * spans are exported (exporter on, caller sampled, ratio accepts) and returns the flags of the
 * traceparent we pass on: our decision when exporting (01 recorded, 00 not), else the caller's
 * sampled bit unchanged (01 for a new trace), so a downstream exporter may still record.
 */
uint8_t trace_sampling_decide(uint8_t parent_flags, bool exporter_on, bool ratio_ok, bool *record);

#endif
