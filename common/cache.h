/*
 * Redis key scheme and Lua scripts shared by profile-api (fill, invalidate, rate limit) and
 * profile-relay (invalidate). Defined once here so both processes agree. All keys of one user
 * carry the hash tag {<userId>} so every script touches a single Redis Cluster slot.
 *
 * Staleness protection: each user has a version key holding the highest outbox sequence
 * known to be committed. Writers (API after commit, relay after publish) raise it and delete
 * the user's cached lists in one script; a fill carries the version that PostgreSQL returned
 * with the rows (same snapshot) and is rejected by its script when Redis already holds a
 * higher version. So a slow reader can never store rows older than a committed write.
 */
#ifndef PROFILE_COMMON_CACHE_H
#define PROFILE_COMMON_CACHE_H

#include <stddef.h>

typedef enum {
    CACHE_LIST_WATCHLIST = 0,
    CACHE_LIST_HISTORY = 1,
} cache_list_t;

/** Longest key any builder writes, including the NUL. */
#define CACHE_KEY_MAX 96

/** "pc:{<uid>}:wl" or "pc:{<uid>}:hist": a hash whose fields are page variants. */
void cache_key_list(char *out, const char *user_id, cache_list_t list);
/** "pc:{<uid>}:ver" */
void cache_key_version(char *out, const char *user_id);
/** "rl:{<uid>}" (rate limiter state of a caller) */
void cache_key_ratelimit(char *out, const char *subject);
/** "rla:{<addr>}" (failed-authentication limiter state of a client address) */
void cache_key_auth_failure(char *out, const char *client_addr);

/*
 * Builders write at most CACHE_KEY_MAX bytes into `out` and never fail. An id that could break
 * the key shape (empty, longer than 64 bytes, braces, spaces, control or non-ASCII bytes) is
 * replaced inside the tag by "#" and 32 hex digits of hash, identically in every process.
 */

/** Lifetime of a version key; far longer than any list key (and any read-to-fill delay). */
#define CACHE_VERSION_TTL_SECONDS 86400

/**
 * Invalidate: KEYS[1]=version key, KEYS[2..]=list keys; ARGV[1]=sequence just committed or
 * published, ARGV[2]=version key TTL in seconds. Raises the version to ARGV[1] if lower and
 * deletes the list keys. Returns 1.
 */
extern const char cache_lua_invalidate[];

/**
 * Fill: KEYS[1]=version key, KEYS[2]=list key; ARGV[1]=version the rows were read at,
 * ARGV[2]=field (page variant), ARGV[3]=value, ARGV[4]=TTL seconds. Stores only when the
 * stored version is absent or <= ARGV[1]. Returns 1 when stored, 0 when rejected as stale.
 * When ARGV[1] is higher than the stored version it raises the version (TTL at least
 * CACHE_VERSION_TTL_SECONDS) and drops the hash's older fields first, so every field in a
 * hash was filled at the stored version. The hash TTL is set only when the hash is created.
 */
extern const char cache_lua_fill[];

/**
 * Rate limit (GCRA): KEYS[1]=limiter key; ARGV[1]=limit per window, ARGV[2]=window seconds,
 * ARGV[3]=now in microseconds (caller's clock; Redis TIME is used when ARGV[3] is "0"),
 * ARGV[4]=how many requests of this caller to decide at once, in arrival order (default 1).
 * Returns {allowed, remaining, reset_seconds, retry_after_seconds}: allowed = how many of them
 * pass (the first ones; 1/0 for a single request); remaining = requests still allowed right
 * now after the last one that passed; reset = seconds until the full quota is back;
 * retry_after >= 1 when some were denied, else 0. A denied request consumes nothing.
 * Several callers in one call: KEYS[1..m], ARGV[4i-3..4i] for KEYS[i]; the reply holds the
 * four numbers of each key in turn. The keys may lie in different hash slots on one Redis; on
 * a Redis Cluster one call carries the keys of one slot only (callers group them by slot).
 */
extern const char cache_lua_ratelimit[];

#endif
