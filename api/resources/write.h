/*
 * The write path shared by every resource: the common parameters of a write function
 * (caller, Idempotency-Key, request hash, TTL, traceparent), the statement, and its result
 * mapped to the response after the user's cached lists are invalidated.
 */
#ifndef PROFILE_API_RESOURCES_WRITE_H
#define PROFILE_API_RESOURCES_WRITE_H

#include "api/http/request_internal.h"
#include "api/data/sql.h"

/**
 * Submits write statement `stmt` with `nparams` parameters. The caller has filled its own
 * parameters from values[SQL_WRITE__COMMON] on; this fills values[0..SQL_WRITE__COMMON-1]
 * (strings in the request pool), or answers 400 for a bad Idempotency-Key. The result
 * (status, body, etag, location, replayed, seq) becomes the response. Returns 0 when queued,
 * -1 when a response was already sent.
 */
int api_write_submit(api_req_t *ar, pgpool_stmt_t stmt, const char **values, int nparams);

#endif
