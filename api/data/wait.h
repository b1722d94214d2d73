/*
 * Redis bookkeeping of a thread: a request's Redis steps (rate limit, cache get, invalidation),
 * timed into metrics and spans, and the thread's Redis, cache and limiter counters for /metrics.
 */
#ifndef PROFILE_API_DATA_WAIT_H
#define PROFILE_API_DATA_WAIT_H

#include <stdbool.h>
#include <time.h>
#include "api/http/request_internal.h"

/**
 * A Redis step in flight for a request. Heap-allocated; the request clears `ar` when it is
 * disposed first (the client went away), so the callback only frees it.
 */
struct st_api_wait_t {
    api_req_t *ar;      /* NULL once the request is gone */
    int thread;         /* metrics slot */
    int op;             /* metrics_redis_op_t */
    struct timespec t0; /* when the Redis call was made */
};

/**
 * Starts a Redis step for `ar` (at most one at a time) of kind `op` (metrics_redis_op_t); pass
 * the result as the callback's ud. Call it right before the Redis call: it starts the clock.
 */
api_wait_t *api_wait_begin(api_req_t *ar, int op);

/**
 * Ends a step: frees `w` and returns its request, or NULL when the request has gone (the
 * callback must then do nothing else). Use it when the module answered DONE (no callback
 * will run, no Redis call was timed).
 */
api_req_t *api_wait_end(api_wait_t *w);

/**
 * api_wait_end() from the step's callback: records the call's latency and, for a sampled
 * request, its CLIENT span ("redis <op>", error when `error`).
 */
api_req_t *api_wait_finish(api_wait_t *w, bool error);

/** Publishes the thread's Redis, cache and limiter counters to the metrics registry. */
void api_publish_redis_stats(api_thread_t *thr);

#endif
