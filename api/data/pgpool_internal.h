/*
 * Private to api/data/pgpool.c and its unit tests: the libpq calls behind the pool's choice between
 * named prepared statements and unnamed ones (PG_PREPARED_STATEMENTS).
 */
#ifndef PROFILE_API_DATA_PGPOOL_INTERNAL_H
#define PROFILE_API_DATA_PGPOOL_INTERNAL_H

#include <stdbool.h>
#include <libpq-fe.h>
#include "api/data/pgpool.h"

/**
 * Queues (pipeline mode, no sync) what a new connection sends before it is ready: with
 * `prepared`, a PQsendPrepare of every statement; without, nothing. Returns 0, or -1 when libpq
 * refused a call.
 */
int pgpool_send_prepares(PGconn *pg, int prepared);

/**
 * Queues statement `stmt` with `nparams` text parameters (no sync): PQsendQueryPrepared by name
 * with `prepared`, else PQsendQueryParams with the statement's SQL (an unnamed statement). The
 * result format is the statement's. Returns 0, or -1 when libpq refused the call.
 */
int pgpool_send_statement(PGconn *pg, int prepared, pgpool_stmt_t stmt, int nparams,
                          const char *const *values);

/** True for an error result saying the server does not know (or already has) a named statement. */
bool pgpool_is_missing_statement(const PGresult *res);

#endif
