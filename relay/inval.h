/*
 * Redis cache invalidation after publishing (common/cache.h scheme): raises each user's version
 * key to the highest published sequence and deletes the cached lists. Best effort: Redis being
 * down never blocks publishing; invalidations are kept (bounded) and retried.
 */
#ifndef PROFILE_RELAY_INVAL_H
#define PROFILE_RELAY_INVAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "common/alloc.h"

typedef struct st_inval_t inval_t;

/**
 * Parses `url` ("redis://[:password@]host[:port][/db]" or "unix:///path[?db=N]") and returns a
 * not yet connected invalidator, or NULL with errbuf filled when the URL is malformed.
 * `version_ttl_s` is the TTL set on version keys.
 */
inval_t *inval_create(const char *url, int version_ttl_s, char *errbuf, size_t errlen);

/**
 * REDIS_MODE: with `cluster` the URL's nodes (a comma list, or one node) are the seeds of a
 * Redis Cluster: the slot map is read with CLUSTER SLOTS, each user's invalidation goes to its
 * slot's master (one pipeline per master), MOVED re-reads the map and resends, ASK sends one
 * invalidation behind ASKING. Returns 0, or -1 with errbuf filled for a URL that does not fit
 * the mode. Before the first inval_flush().
 */
int inval_set_cluster(inval_t *iv, bool cluster, char *errbuf, size_t errlen);

/** NULL-safe. */
void inval_destroy(inval_t *iv);

/** Queues an invalidation of `user_id` at sequence `seq` (merged per user). */
void inval_add(inval_t *iv, const char *user_id, int64_t seq);

/**
 * Sends queued invalidations (pipelined, one EVAL per user), connecting when needed with
 * backoff and short timeouts. On failure keeps them queued and returns -1; logs once per outage.
 */
int inval_flush(inval_t *iv);

/** Queued invalidations not yet confirmed. */
int inval_pending(const inval_t *iv);

#endif
