/*
 * The list path of GET watchlist, history and ratings: the query (limit, cursor, filters), the
 * read-through list cache with its prefetch beside the rate-limit check, the page statement,
 * and the page rendered into the response.
 */
#ifndef PROFILE_API_RESOURCES_LIST_H
#define PROFILE_API_RESOURCES_LIST_H

#include <stdbool.h>
#include "api/http/request_internal.h"
#include "api/data/cursor.h"
#include "api/resources/listquery.h"

/**
 * Parses the query (limit, cursor, and the parameters in `allow`) and decodes the cursor of
 * list `kind` ('h' becomes 'c' with view=continue). Returns 0, or -1 after answering 400.
 */
int api_parse_list_query(api_req_t *ar, unsigned allow, char kind, list_query_t *q, cursor_t *after,
                         bool *have_after);

/**
 * Submits a page statement (PGPOOL_STMT_PAGE_*: user, limit, after_ts, after_id; for
 * PGPOOL_STMT_PAGE_RATING_VIDEO `extra` is the videoId and takes the limit's place); the
 * result is rendered as {"items":[...],"nextCursor":...} (api/data/listrender.h).
 */
void api_submit_list(api_req_t *ar, pgpool_stmt_t stmt, const list_query_t *q,
                     const cursor_t *after, bool have_after, const char *extra);

/**
 * Read-through variant for watchlist and history (docs/cache.md): looks the page variant up in
 * the thread's list cache; a hit is answered from it, a miss goes to api_submit_list() and the
 * result is filled into the cache with the version PostgreSQL returned.
 */
void api_submit_list_cached(api_req_t *ar, cache_list_t list, pgpool_stmt_t stmt,
                            const list_query_t *q, const cursor_t *after, bool have_after,
                            const char *extra);

/**
 * Called right after the rate-limit script was sent for a request whose authorization and ids
 * are fine: when it is a cacheable GET watchlist/history with a valid query, sends the cache
 * read now, so that it shares the limiter's Redis round trip; api_submit_list_cached() then
 * uses its reply. Does nothing otherwise (the request takes the usual path).
 */
void api_list_prefetch(api_req_t *ar);

/** The request is going away: a prefetch still in flight drops its reply. */
void api_prefetch_detach(api_req_t *ar);

#endif
