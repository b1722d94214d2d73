/*
 * Read-through cache of GET watchlist / GET history response bodies in Redis, never stale
 * after a write: fills carry the user's version (user_event_seq.last_seq read in the same
 * snapshot as the rows) and a Lua script refuses a fill older than the version Redis holds;
 * writes raise the version and drop the lists (common/cache.h, docs/cache.md).
 *
 * Usage on a GET:  field = listcache_field(limit, cursor, view);
 *                  listcache_get() -> hit: answer the cached body
 *                                  -> miss: read PostgreSQL (rows + version), answer, then
 *                                     listcache_fill(..., version)
 * After a committed write with new sequence S (before answering the client, for
 * read-your-writes across threads and replicas): listcache_invalidate(user, S, cb, ud).
 *
 * Threads: listcache_global_init() once at start-up; one listcache_t per loop thread, created
 * on it with that thread's redis client. Callbacks run on the loop thread, exactly once, never
 * inside the call; a DONE return means "no callback". The request may be gone when a callback
 * runs: pass a refcounted or detachable `ud` (api/data/redis_client.h).
 *
 * Failures never reach the client: Redis down, slow or erroring turns gets into misses and
 * fills into no-ops. An invalidation that could not be delivered is kept (process-wide, per
 * user) and replayed when Redis (in cluster mode: the user's master) is back; until then this
 * process neither reads nor fills the cache of that user — other users are not affected.
 */
#ifndef PROFILE_API_DATA_LISTCACHE_H
#define PROFILE_API_DATA_LISTCACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "api/data/redis_client.h"
#include "common/cache.h"

typedef enum {
    LISTCACHE_DONE = 0,    /* answered now (get: a miss, go to PostgreSQL); no callback */
    LISTCACHE_PENDING = 1, /* the callback will run */
} listcache_status_t;

/** `value` is the cached body (valid only during the call), or NULL for a miss or an error. */
typedef void (*listcache_get_cb_t)(const char *value, size_t len, void *ud);
/** `ok` is true when Redis confirmed the invalidation (else it was queued for replay). */
typedef void (*listcache_done_cb_t)(bool ok, void *ud);

/** Per-thread counters; written by the owning thread, read by a metrics scrape (no lock). */
typedef struct st_listcache_stats_t {
    uint64_t hits;                  /* includes local_hits */
    uint64_t local_hits;            /* served from this process's copy after a version check */
    uint64_t misses;                /* includes errors and bypasses: every get not served */
    uint64_t fills;                 /* stored */
    uint64_t fill_rejections;       /* refused as stale by the version check (race prevented) */
    uint64_t errors;                /* Redis errors/timeouts/unavailable on get, fill, invalidate */
    uint64_t invalidations;         /* confirmed by Redis */
    uint64_t invalidation_failures; /* queued for replay */
    uint64_t bypassed;              /* gets/fills skipped while the user's invalidation awaits
                                       replay */
} listcache_stats_t;

typedef struct st_listcache_t listcache_t;

/**
 * Sets the TTL of list keys (CACHE_TTL_SECONDS), prepares the scripts and gives the local
 * copies of pages `local_bytes` (CACHE_LOCAL_MB; 0: none). Once, first.
 */
void listcache_global_init(int ttl_seconds, size_t local_bytes);

/** Frees the local copies. At exit, after every thread's cache is gone. */
void listcache_global_dispose(void);

/**
 * Test hook (TEST_CACHE_FILL_DELAY_MS): holds every fill for `ms` between the PostgreSQL read
 * and the Redis write, to make the stale-fill race deterministic. Only in builds with
 * PROFILE_TEST_HOOKS; elsewhere it does nothing and returns -1. Call before
 * listcache_create(). Returns 0.
 */
int listcache_set_fill_delay_ms(unsigned ms);

/** Creates the cache of the calling loop thread; `redis` is borrowed and must outlive it. */
listcache_t *listcache_create(redis_client_t *redis);

/**
 * Frees it; fills still held by the test hook are dropped. NULL-safe. Loop thread. Destroy the
 * redis client first: its pending callbacks (run with NULL on destroy) still count into `lc`.
 */
void listcache_destroy(listcache_t *lc);

/** Room for a field: listcache_get() and listcache_fill() take only shorter ones. */
#define LISTCACHE_FIELD_MAX 256

/**
 * Writes the hash field naming one page variant: "l=<limit>|v=<view>|c=<cursor>" (view and
 * cursor may be NULL or empty). Returns its length, or 0 when it does not fit (do not cache).
 */
size_t listcache_field(char *out, size_t outlen, int limit, const char *view, const char *cursor);

/** Looks up one page variant. DONE = miss now (Redis down or bypassing); else `cb` runs. */
listcache_status_t listcache_get(listcache_t *lc, const char *user_id, cache_list_t list,
                                 const char *field, listcache_get_cb_t cb, void *ud);

/**
 * Stores `value` (`len` bytes, copied) read at `version`, unless Redis holds a newer version.
 * Fire and forget: the outcome only shows in the counters.
 */
void listcache_fill(listcache_t *lc, const char *user_id, cache_list_t list, const char *field,
                    const char *value, size_t len, int64_t version);

/**
 * Raises the user's version to `seq` and drops both lists. `cb` may be NULL. DONE = Redis is
 * down: the invalidation was queued for replay and `cb` will not run.
 */
listcache_status_t listcache_invalidate(listcache_t *lc, const char *user_id, int64_t seq,
                                        listcache_done_cb_t cb, void *ud);

/** The thread's counters (valid until listcache_destroy()). */
const listcache_stats_t *listcache_stats(const listcache_t *lc);

/** Users of this process whose invalidation waits for Redis (gauge; any thread). */
unsigned listcache_pending_invalidations(void);

#endif
