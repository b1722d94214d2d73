/*
 * Reading a request body: the checks every write makes before its rules run (size 413, media
 * type 415).
 */
#ifndef PROFILE_API_HTTP_REQUEST_H
#define PROFILE_API_HTTP_REQUEST_H

#include "api/http/request_internal.h"

/** Common body checks for writes (413, 415); returns 0 or -1 when a response was sent. */
int api_check_body(api_req_t *ar);

#endif
