/*
 * Asynchronous Redis client driven by an h2o 2.2 evloop: hiredis 0.14 does the protocol, this
 * module supplies the event adapter, timeouts, reconnection with backoff and EVALSHA.
 *
 * Threads: a client belongs to the event loop it was created on. Every function below must be
 * called on that loop's thread, and every callback runs there. Create one client per loop
 * thread; never share one between threads.
 *
 * Callbacks: every accepted command gets exactly one callback, always from the event loop and
 * never from inside the call that issued it (so callers need no re-entrancy guard). The reply
 * is NULL when Redis was unreachable, timed out or the connection broke; otherwise it is the
 * hiredis reply (REDIS_REPLY_ERROR included), valid only during the callback. The callback may
 * run after the HTTP request that issued it has gone (the client closed the connection):
 * `ud` must be something the caller can still touch then, e.g. a refcounted context
 * (h2o_mem_alloc_shared + addref/release) or a small heap object that the request detaches
 * itself from when it is disposed.
 *
 * Cluster mode (config `cluster`): the same contract per node; a command is refused (NULL
 * reply, counted as an error reply) when its keys span two slots; while a master is down the
 * commands of its slots fail fast and other slots carry on (redis_client_is_up_for()).
 *
 * Pipelining: commands issued in one loop iteration leave in one write at the end of the
 * iteration (no wait for a writability event); replies come back in order. While Redis is known to
 * be down (after any error, until a reconnect has completed its handshake) commands fail fast: the
 * callback gets NULL on the next loop iteration, without waiting for any timeout. Commands issued
 * while the very first connection is still being made are queued behind its handshake.
 */
#ifndef PROFILE_API_DATA_REDIS_CLIENT_H
#define PROFILE_API_DATA_REDIS_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <hiredis/hiredis.h>
#include <h2o.h>
#include "common/alloc.h"

typedef struct st_redis_client_t redis_client_t;

/** Called once per command on the loop thread; `reply` is NULL on any failure. */
typedef void (*redis_client_cb_t)(const redisReply *reply, void *ud);

typedef struct st_redis_client_config_t {
    /*
     * "redis://[[user]:password@]host[:port][/db]" (port 6379, db 0 by default) or
     * "unix:///path/to/redis.sock[?db=N]". Copied by redis_client_create().
     */
    const char *url;
    unsigned connect_timeout_ms; /* TCP connect + AUTH/SELECT/PING handshake; 0 = 1000 */
    unsigned command_timeout_ms; /* per command, from issue to reply; 0 = 500 */
    unsigned backoff_min_ms;     /* first reconnect delay; 0 = 50 */
    unsigned backoff_max_ms;     /* delay doubles up to this; 0 = 5000 */
    unsigned max_pending;        /* commands in flight per node before new ones fail fast; 0 =
                                    10000 */
    /*
     * REDIS_MODE=cluster: `url` is a comma list of seed nodes ("redis://h1:7000,redis://h2:7001",
     * database 0). The client reads the slot map (CLUSTER SLOTS) from any seed, keeps one
     * connection per master, sends each command to its slot's master, follows MOVED (and
     * re-reads the map) and ASK, and refuses a command whose keys span two slots.
     */
    bool cluster;
} redis_client_config_t;

/** Counters of one client; written by its loop thread only (read them from that thread). */
typedef struct st_redis_client_stats_t {
    uint64_t commands;    /* commands accepted and sent */
    uint64_t failed;      /* callbacks that got a NULL reply (incl. fail fast) */
    uint64_t fail_fast;   /* of which: refused while down or over max_pending */
    uint64_t timeouts;    /* command timeouts (each one drops the connection) */
    uint64_t connects;    /* successful handshakes */
    uint64_t disconnects; /* connections lost or dropped, failed connects included */
    uint64_t noscript;    /* EVALSHA answered NOSCRIPT and were resent as EVAL */
    uint64_t moved;       /* cluster: MOVED redirections followed */
    uint64_t ask;         /* cluster: ASK redirections followed */
    uint64_t refreshes;   /* cluster: slot map reads (CLUSTER SLOTS) */
    uint64_t err_replies; /* error replies passed to callers; commands refused as CROSSSLOT */
} redis_client_stats_t;

/** A Lua script and its SHA1, for redis_client_eval(). */
typedef struct st_redis_script_t {
    const char *source;
    char sha1[41];
} redis_script_t;

/**
 * Checks a REDIS_URL (same syntax as the config) without connecting. Returns 0, or -1 with a
 * reason in `errbuf` (which never contains the password).
 */
PROFILE_MUSTCHECK int redis_client_check_url(const char *url, char *errbuf, size_t errlen);

/** Checks a cluster-mode REDIS_URL: a comma list of redis:// seeds with database 0. */
PROFILE_MUSTCHECK int redis_client_check_cluster_url(const char *list, char *errbuf, size_t errlen);

/**
 * Creates a client on `loop` and starts connecting at once. Returns NULL with a reason in
 * `errbuf` when the URL is invalid (a Redis that is down is not an error: the client keeps
 * retrying). `cfg` is copied. Loop thread only.
 */
redis_client_t *redis_client_create(h2o_loop_t *loop, const redis_client_config_t *cfg,
                                    char *errbuf, size_t errlen);

/**
 * Closes the connection, runs every pending callback with NULL (before returning) and frees
 * the client. Disposes the client's h2o timeouts, so call it before h2o_evloop_destroy().
 * NULL-safe. Must not be called from inside one of this client's callbacks.
 */
void redis_client_destroy(redis_client_t *c);

/**
 * Sends one command given as `argc` strings (`argvlen` NULL = use strlen). Arguments are copied
 * before returning. Returns 0 when the command was sent, -1 when it fails fast; in both cases
 * `cb` runs exactly once, later (see the top of this file). `cb` may be NULL.
 */
int redis_client_command(redis_client_t *c, redis_client_cb_t cb, void *ud, int argc,
                         const char *const *argv, const size_t *argvlen);

/**
 * Runs `script` with EVALSHA, falling back once to EVAL (which also loads it) when Redis
 * answers NOSCRIPT (after a restart, SCRIPT FLUSH or a failover). `argv` holds the `nkeys`
 * keys followed by the other arguments. Same return and callback rules as
 * redis_client_command().
 */
int redis_client_eval(redis_client_t *c, const redis_script_t *script, int nkeys, int argc,
                      const char *const *argv, const size_t *argvlen, redis_client_cb_t cb,
                      void *ud);

/** See redis_client_add_flush_hook(). */
typedef void (*redis_client_hook_t)(void *data);

#define REDIS_CLIENT_MAX_FLUSH_HOOKS 4

/**
 * Commands issued in a loop iteration are written together at its end. `cb` runs right before
 * that write in every iteration that has one or that asked for it with
 * redis_client_want_flush(): the last moment to add commands to the write (e.g. decisions
 * collected during the iteration). Commands issued by `cb` go out in that write. Hooks run in
 * the order they were added; at most REDIS_CLIENT_MAX_FLUSH_HOOKS per client.
 */
void redis_client_add_flush_hook(redis_client_t *c, redis_client_hook_t cb, void *data);

/** Makes the flush hook run at the end of this loop iteration. */
void redis_client_want_flush(redis_client_t *c);

/**
 * True when connected with a completed handshake: commands will be sent, not refused. In
 * cluster mode: the slot map is known and every master in it is connected.
 */
bool redis_client_is_up(const redis_client_t *c);

/**
 * True when a command on `key` would be sent now or queued behind a connection being opened:
 * in cluster mode, the master of the key's slot is connected or on its way with no error
 * since (a fresh client's first commands), while other masters may be down; in standalone
 * mode redis_client_is_up().
 */
bool redis_client_is_up_for(const redis_client_t *c, const char *key);

/** True in cluster mode. */
bool redis_client_is_cluster(const redis_client_t *c);

/**
 * The slot of `key` in cluster mode (0..16383), 0 in standalone mode: keys of one multi-key
 * command (MGET, a script's KEYS) must share it. Split batches with
 * redis_cluster_group_by_slot() (common/redis_cluster.h).
 */
int redis_client_key_slot(const redis_client_t *c, const char *key);

/** The event loop the client runs on. */
h2o_loop_t *redis_client_loop(const redis_client_t *c);

/** Copies the client's counters. */
void redis_client_get_stats(const redis_client_t *c, redis_client_stats_t *out);

/**
 * Fills `s` for `source` (kept by pointer: pass a string that lives forever, such as the
 * cache_lua_* arrays) and computes its SHA1. Call once, before loop threads use it.
 */
void redis_script_init(redis_script_t *s, const char *source);

/** Number of outages of the whole process so far (first client down until all are up). */
uint64_t redis_client_outages(void);

#endif
