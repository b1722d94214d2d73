/*
 * OpenTelemetry spans of a sampled request: the SERVER span of the request and the CLIENT spans
 * of its PostgreSQL and Redis calls. Every function is a no-op for a request that is not sampled.
 */
#ifndef PROFILE_API_HTTP_SPAN_H
#define PROFILE_API_HTTP_SPAN_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>
#include "api/http/request_internal.h"

/** Wall-clock nanoseconds of a CLOCK_MONOTONIC time of a sampled request (span timestamps). */
uint64_t api_span_time(const api_req_t *ar, const struct timespec *mono);

/**
 * Exports a CLIENT span of a sampled request (no-op otherwise): child of the server span, named
 * `name`, from `t0` to `t1` (CLOCK_MONOTONIC), with db.system=`system` and db.operation=`op`.
 */
void api_span_client(api_req_t *ar, const char *name, const char *system, const char *op,
                     const struct timespec *t0, const struct timespec *t1, bool error);

/**
 * Exports the request's SERVER span ("<METHOD> <route template>", parent the caller's span),
 * ending at `end` (CLOCK_MONOTONIC) with `status`. No-op for a request that is not sampled.
 */
void api_span_server(api_req_t *ar, int status, const struct timespec *end);

#endif
