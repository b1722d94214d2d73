/*
 * A request's PostgreSQL statement: submit through the thread's pool, time it into metrics and
 * a CLIENT span, and the common checks at the start of a completion callback.
 */
#ifndef PROFILE_API_DATA_DBCALL_H
#define PROFILE_API_DATA_DBCALL_H

#include <stdbool.h>
#include <libpq-fe.h>
#include "api/http/request_internal.h"

/** Submits a statement for `ar`, answering 503 itself when the pool refuses. Returns 0 when
 * queued (the callback then receives `ar`), -1 when a response was already sent. */
int api_db_submit(api_req_t *ar, pgpool_stmt_t stmt, int nparams, const char *const *values,
                  pgpool_cb cb);

/**
 * Common start of a statement's completion callback: clears ar->op, then answers 503 for a
 * pool error or 500 for a result that is not exactly one row of at least `min_fields`
 * columns. Returns true when the caller should go on and read row 0.
 */
bool api_db_single_row(api_req_t *ar, const PGresult *res, pgpool_err_t err, int min_fields);

#endif
