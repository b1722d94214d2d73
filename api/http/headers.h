/*
 * Request headers: lookup by name and the Content-Type a JSON body needs. Depends on h2o only,
 * nothing else of api/.
 */
#ifndef PROFILE_API_HTTP_HEADERS_H
#define PROFILE_API_HTTP_HEADERS_H

#include <stdbool.h>
#include <stddef.h>
#include <h2o.h>

/**
 * The value of the first request header called `name` (`name_len` bytes, lower case), or NULL
 * when absent. The value lives in the request's pool.
 */
const h2o_iovec_t *headers_find(const h2o_req_t *req, const char *name, size_t name_len);

/**
 * True when a Content-Type value is `application/json` with optional parameters
 * (case-insensitive, optional white space around the media type); false for NULL.
 */
bool headers_is_json(const char *s, size_t len);

#endif
