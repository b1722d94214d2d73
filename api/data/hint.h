/*
 * The relay's wake-up, sent after the write commits: `NOTIFY outbox_new` per partition that got
 * events, coalesced per event-loop iteration, on a connection of its own. One per thread.
 */
#ifndef PROFILE_API_DATA_HINT_H
#define PROFILE_API_DATA_HINT_H

#include <stdbool.h>
#include <stdint.h>

struct st_h2o_evloop_t;

typedef struct st_hint_t hint_t;

/**
 * Sends the hint for `partitions`, a PostgreSQL smallint[] literal ("{3,17}"), valid during the
 * call only. Returns 0 when the hint went out (the sender then calls hint_sent once, whatever
 * the outcome) or -1 when it was dropped (nothing to call): a lost hint costs relay latency up
 * to its poll interval, never an event.
 */
typedef int (*hint_send_fn)(hint_t *h, void *ctx, const char *partitions);

/** Number of relay partitions (V001's outbox_partition: modulo 64). */
#define HINT_PARTITIONS 64

/**
 * A hint sender on `loop` that hands each coalesced set to `send` (with `ctx`). Never NULL.
 * Thread: the loop's.
 */
hint_t *hint_create(struct st_h2o_evloop_t *loop, hint_send_fn send, void *ctx);

/**
 * A hint sender over its own one-connection pool to `conninfo` (the API role: NOTIFY needs no
 * grant), never blocking the loop; `prepared` as PG_PREPARED_STATEMENTS (pgpool_set_prepared).
 * Never NULL.
 */
hint_t *hint_create_pg(struct st_h2o_evloop_t *loop, const char *conninfo, bool prepared);

/** Stops sending; a hint still in flight is dropped. NULL-safe. */
void hint_destroy(hint_t *h);

/**
 * A write that produced an event in `partition` committed: the hint goes out at the end of this
 * loop iteration, together with every other partition marked until then. At most one hint is
 * in flight; partitions marked meanwhile go out, again coalesced, when it completes. A
 * partition out of range wakes every relay (an empty set is never sent).
 */
void hint_mark(hint_t *h, int partition);

/** The hint handed to the sender completed (sent, failed or timed out). */
void hint_sent(hint_t *h);

/** Hints handed to the sender so far (tests, metrics). */
uint64_t hint_sent_count(const hint_t *h);

#endif
