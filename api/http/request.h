/*
 * Reading a request: header lookup, random ids from the thread's generator, and the body checks
 * every write makes before its rules run (size 413, media type 415).
 */
#ifndef PROFILE_API_HTTP_REQUEST_H
#define PROFILE_API_HTTP_REQUEST_H

#include <stddef.h>
#include "api/http/request_internal.h"

/** Finds a request header (lower-case name); returns NULL when absent. */
const h2o_iovec_t *api_find_header(const api_req_t *ar, const char *name, size_t name_len);

/** Fills `out` (2*n+1 bytes) with 2*n random lowercase hex digits from the thread's rng. */
void api_random_hex(api_thread_t *thr, char *out, size_t n);

/** Common body checks for writes (413, 415); returns 0 or -1 when a response was sent. */
int api_check_body(api_req_t *ar);

#endif
