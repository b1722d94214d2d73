/*
 * Per-caller rate limit shared by all threads and replicas through Redis (GCRA, one Lua script,
 * common/cache.c), plus a per-client-address limit on failed authentications. When Redis is
 * unavailable the limiter fails open (result.degraded) and, unless turned off, a per-process
 * GCRA with the same parameters stands in until Redis is back. See docs/cache.md.
 *
 * Threads: ratelimit_global_init() once at start-up; then one ratelimit_t per event-loop
 * thread, created on that thread with that thread's redis client. Checks and callbacks run on
 * the loop thread.
 *
 * Checks of one caller that arrive on a thread in the same event-loop iteration are decided
 * by one script call at the end of the iteration (each still gets its own exact decision):
 * a caller with many concurrent requests costs one call per iteration, not one per request.
 *
 * A check either answers at once (returns RATELIMIT_DONE, `out` filled, the callback is NOT
 * called: limiter off, or Redis known to be down) or later (returns RATELIMIT_PENDING: the
 * callback runs exactly once on the loop thread, never inside the call). The request may be
 * gone by then: pass a refcounted or detachable `ud` (see api/data/redis_client.h).
 */
#ifndef PROFILE_API_DATA_RATELIMIT_H
#define PROFILE_API_DATA_RATELIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "api/data/redis_client.h"

#define RATELIMIT_WINDOW_SECONDS 60

typedef enum {
    RATELIMIT_DONE = 0,    /* answered now in `out`; no callback */
    RATELIMIT_PENDING = 1, /* the callback will run */
} ratelimit_status_t;

typedef struct st_ratelimit_result_t {
    bool allowed;
    int limit;               /* requests per window (the policy's q) */
    int remaining;           /* requests still allowed now (the r parameter) */
    int reset_seconds;       /* seconds until the full quota is back (the t parameter) */
    int retry_after_seconds; /* >= 1 when !allowed, else 0 */
    bool degraded;           /* Redis unavailable: failed open or decided by the local stand-in */
} ratelimit_result_t;

typedef void (*ratelimit_cb_t)(const ratelimit_result_t *res, void *ud);

typedef struct st_ratelimit_config_t {
    int limit_per_minute;              /* RATE_LIMIT_PER_MINUTE; 0 = off */
    int auth_failure_limit_per_minute; /* AUTH_FAILURE_LIMIT_PER_MINUTE; 0 = off */
    bool no_local_fallback; /* true: plain fail open while Redis is down (no local stand-in) */
} ratelimit_config_t;

/** Per-thread counters; written by the owning thread, read by a metrics scrape (no lock). */
typedef struct st_ratelimit_stats_t {
    uint64_t checks;               /* caller checks (auth-failure checks not included) */
    uint64_t denied;               /* caller checks answered 429 */
    uint64_t degraded;             /* caller checks decided without Redis (fail open or local) */
    uint64_t local_denied;         /* of which denied by the local stand-in */
    uint64_t errors;               /* Redis errors, timeouts and malformed replies */
    uint64_t auth_failures;        /* failed authentications counted */
    uint64_t auth_failures_denied; /* of which over AUTH_FAILURE_LIMIT_PER_MINUTE */
} ratelimit_stats_t;

typedef struct st_ratelimit_t ratelimit_t;

/** Stores the configuration and prepares the script. Once, before any loop thread runs. */
void ratelimit_global_init(const ratelimit_config_t *cfg);

/** Releases the local stand-in's table. After every loop thread has stopped. */
void ratelimit_global_dispose(void);

/** True when RATE_LIMIT_PER_MINUTE > 0 (the headers are sent only then). */
bool ratelimit_enabled(void);

/** Creates the limiter of the calling loop thread. `redis` is borrowed and must outlive it. */
ratelimit_t *ratelimit_create(redis_client_t *redis);

/**
 * Frees it. NULL-safe. Destroy the redis client first: its pending callbacks (run with NULL on
 * destroy, which then decide locally and call the check's callback) still use `rl`.
 */
void ratelimit_destroy(ratelimit_t *rl);

/**
 * Counts one request of caller `subject` (the JWT `sub`, any bytes) against the shared budget.
 * See the top of this file for the DONE/PENDING contract.
 */
ratelimit_status_t ratelimit_check(ratelimit_t *rl, const char *subject, ratelimit_result_t *out,
                                   ratelimit_cb_t cb, void *ud);

/**
 * Counts one failed authentication from `client_addr` (text form of the peer address). Answer
 * 429 instead of 401 when the result is !allowed. With the limit off it answers DONE/allowed.
 */
ratelimit_status_t ratelimit_auth_failure(ratelimit_t *rl, const char *client_addr,
                                          ratelimit_result_t *out, ratelimit_cb_t cb, void *ud);

/** The thread's counters (pointer stays valid until ratelimit_destroy()). */
const ratelimit_stats_t *ratelimit_stats(const ratelimit_t *rl);

/**
 * Writes the RateLimit-Policy value, `"user";q=<limit>;w=60`. Returns its length (0 when it
 * does not fit; `out` is always NUL-terminated when outlen > 0).
 */
size_t ratelimit_format_policy(char *out, size_t outlen, int limit);

/** Writes the RateLimit value, `"user";r=<remaining>;t=<reset>`. Same return as above. */
size_t ratelimit_format_header(char *out, size_t outlen, const ratelimit_result_t *res);

/**
 * Local GCRA step, the same arithmetic as the Lua script (exposed for the stand-in and tests).
 * `*tat_us` is the caller's stored theoretical arrival time (0 for a new caller); it is
 * updated only when the request is allowed.
 */
void ratelimit_gcra(double *tat_us, double now_us, int limit, int window_seconds,
                    ratelimit_result_t *out);

#endif
