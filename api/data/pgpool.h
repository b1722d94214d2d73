/*
 * Per-thread asynchronous PostgreSQL pool on an h2o event loop: non-blocking connects,
 * pipeline mode, statements prepared once per connection, a bounded wait queue, reconnect
 * with backoff. One pool per event-loop thread; never shared between threads.
 */
#ifndef PROFILE_API_DATA_PGPOOL_H
#define PROFILE_API_DATA_PGPOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <libpq-fe.h>
#include "common/alloc.h"

/* Forward declaration keeps h2o out of this header. */
struct st_h2o_evloop_t;

/** The prepared statements (see docs/sql-api.md). */
typedef enum {
    PGPOOL_STMT_GET_PROFILE = 0,
    PGPOOL_STMT_PUT_PROFILE,
    PGPOOL_STMT_WATCHLIST_ADD,
    PGPOOL_STMT_WATCHLIST_REMOVE,
    PGPOOL_STMT_HISTORY_ADD,
    PGPOOL_STMT_RATING_PUT,
    PGPOOL_STMT_ERASE_PROFILE,
    PGPOOL_STMT_PAGE_WATCHLIST, /* list pages: binary results (api/data/listrender.h) */
    PGPOOL_STMT_PAGE_HISTORY,
    PGPOOL_STMT_PAGE_CONTINUE,
    PGPOOL_STMT_PAGE_RATINGS,
    PGPOOL_STMT_PAGE_RATING_VIDEO,
    PGPOOL_STMT_IDEM_CLEANUP,
    PGPOOL_STMT_SCHEMA_VERSION,
    PGPOOL_STMT_OUTBOX_HINT, /* the relay's wake-up after commit (api/data/hint.c) */
    PGPOOL_STMT__COUNT
} pgpool_stmt_t;

#define PGPOOL_MAX_PARAMS 12

typedef enum {
    PGPOOL_OK = 0,          /* `res` holds the statement's result (possibly an SQL error) */
    PGPOOL_ERR_CONN,        /* the connection broke or the statement timed out: answer 503 */
    PGPOOL_ERR_BUSY,        /* wait queue full: 503 with Retry-After */
    PGPOOL_ERR_UNAVAILABLE, /* no connection is up: 503 */
} pgpool_err_t;

typedef struct st_pgpool_t pgpool_t;
typedef struct st_pgpool_op_t pgpool_op_t;

/**
 * Completion callback, on the pool's loop thread. `res` is valid only during the call (the pool
 * clears it) and NULL unless err == PGPOOL_OK. Never called for a detached operation. Its
 * values are text, except for the PGPOOL_STMT_PAGE_* statements (binary).
 */
typedef void (*pgpool_cb)(void *data, const PGresult *res, pgpool_err_t err);

/**
 * Creates a pool of `nconns` connections to `conninfo` on `loop` and starts connecting them.
 * `thread` indexes the metrics slot. `queue_max` bounds the wait queue. Never NULL.
 */
pgpool_t *pgpool_create(struct st_h2o_evloop_t *loop, const char *conninfo, int nconns, int thread,
                        size_t queue_max);

/** Fails everything pending (callbacks get PGPOOL_ERR_CONN), closes connections. NULL-safe. */
void pgpool_destroy(pgpool_t *pool);

/**
 * Queues statement `stmt` with `nparams` text parameters (values[i] NULL = SQL NULL; copied).
 * Returns PGPOOL_OK and sets *handle (for pgpool_detach) when queued; the callback then runs
 * later, exactly once, unless detached. Returns PGPOOL_ERR_BUSY or PGPOOL_ERR_UNAVAILABLE
 * without calling the callback.
 */
PROFILE_MUSTCHECK pgpool_err_t pgpool_submit(pgpool_t *pool, pgpool_stmt_t stmt, int nparams,
                                             const char *const *values, pgpool_cb cb, void *data,
                                             pgpool_op_t **handle);

/**
 * The requester went away: the operation still runs (its result is consumed and dropped) but
 * its callback is never called. Safe until the callback has started.
 */
void pgpool_detach(pgpool_op_t *op);

/** The statement's name ("watchlist_add", ...): span names and metric labels. */
const char *pgpool_stmt_name(pgpool_stmt_t stmt);

/**
 * Chooses named prepared statements (`prepared`, the default) or unnamed ones, which a pooler in
 * transaction mode can run on any server connection (PG_PREPARED_STATEMENTS=off). Call right
 * after pgpool_create(), before the loop runs.
 */
void pgpool_set_prepared(pgpool_t *pool, bool prepared);

/**
 * True while statements fail because the server does not know them (a named statement sent to a
 * server connection that never prepared it, e.g. through a transaction-mode pooler): from such
 * a failure in any thread's pool until 5 s without another. Thread-safe. Readiness uses it.
 */
bool pgpool_statements_failing(void);

/** Connections currently connected and prepared. */
int pgpool_ready_count(const pgpool_t *pool);

#endif
