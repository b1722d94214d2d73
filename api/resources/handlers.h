/*
 * The resource handlers, one file per resource (api/resources/handler_<resource>.c). The
 * server's pipeline (api/http/server.c) calls them after routing, authentication, the rate
 * limit, authorization and the path ids have passed.
 */
#ifndef PROFILE_API_RESOURCES_HANDLERS_H
#define PROFILE_API_RESOURCES_HANDLERS_H

#include "api/http/request_internal.h"

/** GET and PUT /profiles/{userId}. */
void handler_profiles(api_req_t *ar);
/** GET and POST /profiles/{userId}/watchlist, DELETE .../watchlist/{videoId}. */
void handler_watchlist(api_req_t *ar);
/** GET and POST /profiles/{userId}/history. */
void handler_history(api_req_t *ar);
/** GET /profiles/{userId}/export: everything of the user, streamed. */
void handler_export(api_req_t *ar);
/** GET and POST /profiles/{userId}/ratings. */
void handler_ratings(api_req_t *ar);
/** /health, /health/live, /health/ready and /metrics (no authentication). */
void handler_health(api_req_t *ar);

#endif
