/*
 * Writing the response: status, the headers every response carries (request id, nosniff,
 * no-store, CORS, RateLimit), problem+json bodies, and after sending, the request's metrics,
 * its SERVER span and the access log line.
 */
#ifndef PROFILE_API_HTTP_RESPOND_H
#define PROFILE_API_HTTP_RESPOND_H

#include <stddef.h>
#include <libpq-fe.h>
#include "api/http/request_internal.h"
#include "api/http/problem.h"

/** Adds a response header (name lower-case literal, value copied into the request pool). */
void api_add_header(api_req_t *ar, const char *name, const char *value, size_t len);

/**
 * Sends the response: sets status, Content-Type (when `ctype` not NULL), the common headers,
 * then the body (copied). Records metrics and the sampled access log. Exactly once per request.
 */
void api_respond(api_req_t *ar, int status, const char *ctype, const char *body, size_t len);

/**
 * Starts a streamed response (h2o_start_response with `gen`; the body follows with h2o_send):
 * the common headers as api_respond, plus `ctype`. The request's metrics, SERVER span and access
 * line are recorded now, so their duration is the time to the first byte. Headers the caller
 * adds must be added before. Loop thread only.
 */
void api_respond_stream(api_req_t *ar, int status, const char *ctype, h2o_generator_t *gen);

/** api_respond with a problem+json body (problem_render). */
void api_respond_problem(api_req_t *ar, int status, const char *slug, const char *detail,
                         const field_error_t *errors, size_t nerrors);

/** Responds 400 validation-error with the given field errors. */
void api_respond_validation(api_req_t *ar, const field_error_t *errors, size_t n);

/** A 503 problem with Retry-After for pool errors (busy, unavailable, connection lost). */
void api_respond_unavailable(api_req_t *ar, pgpool_err_t err);

/** A 500 problem for an unexpected SQL error; logs the server-side message (never sent). */
void api_respond_sql_error(api_req_t *ar, const PGresult *res);

#endif
