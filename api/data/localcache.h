/*
 * Process-wide copy of list pages in front of Redis (docs/cache.md, "Local copies").
 *
 * An entry is a page body labeled with the user's cache version at which it was read. It is
 * never served on its own: the list cache pins the entry, reads the user's version key from
 * Redis and serves the entry only when its version is exactly that one. Versions only grow and a
 * version names one state of the user's lists, so a matching entry is the page Redis would
 * have returned, without moving the body over the network; a write anywhere raises the
 * version in Redis before it is acknowledged, which makes every older copy unusable at once.
 *
 * Bounded: entries live in 16 shards, each with its own lock, hash table and least recently
 * used order; a shard evicts when it holds more than its part of the byte budget. An entry
 * also expires after the TTL of the Redis keys (CACHE_TTL_SECONDS). Any thread.
 */
#ifndef PROFILE_API_DATA_LOCALCACHE_H
#define PROFILE_API_DATA_LOCALCACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct st_localcache_stats_t {
    uint64_t entries;
    uint64_t bytes;     /* keys, values and bookkeeping */
    uint64_t evictions; /* dropped for room */
} localcache_stats_t;

/** Sets the byte budget (0 disables the cache) and the entry TTL. Once, before any use. */
void localcache_init(size_t max_bytes, int ttl_seconds);

/** Frees every entry. At exit, when no thread uses the cache any more. */
void localcache_shutdown(void);

/** True when a budget was set. */
bool localcache_enabled(void);

/** One page held locally: immutable, alive while pinned even when evicted meanwhile. */
typedef struct st_localcache_entry_t localcache_entry_t;

/**
 * Pins the entry for `key` (`klen` bytes, any bytes), whatever its version, and makes it the
 * most recently used; NULL when there is none. Release with localcache_unpin().
 */
localcache_entry_t *localcache_pin(const char *key, size_t klen);

int64_t localcache_entry_version(const localcache_entry_t *e);
const char *localcache_entry_value(const localcache_entry_t *e, size_t *len);

/**
 * Releases a pin. `outdated`: the entry's version was found older than the user's, so it can
 * never match again; it leaves the cache (unless it was replaced meanwhile).
 */
void localcache_unpin(localcache_entry_t *e, bool outdated);

/** Stores `value` read at `version` (copied), replacing any entry for `key`. */
void localcache_put(const char *key, size_t klen, int64_t version, const char *value, size_t vlen);

/** Sums the shards' figures. */
void localcache_stats(localcache_stats_t *out);

#endif
