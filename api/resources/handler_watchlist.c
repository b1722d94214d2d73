/*
 * /profiles/{userId}/watchlist (GET list, POST add) and .../watchlist/{videoId} (DELETE).
 * GET goes through the read-through list cache (api_submit_list_cached).
 * Add and remove are idempotent by meaning in SQL (no duplicate rows, no event on no-op).
 */
#include <string.h>
#include "api/resources/handlers.h"
#include "api/resources/list.h"
#include "api/resources/validate.h"
#include "api/resources/write.h"
#include "api/http/request.h"
#include "api/http/respond.h"

static void add_item(api_req_t *ar)
{
    h2o_req_t *req = ar->req;
    const char *values[SQL_WATCHLIST__COUNT];
    watchlist_input_t in;
    field_errors_t errs;

    if (api_check_body(ar) != 0)
        return;
    memset(&errs, 0, sizeof(errs));
    if (validate_watchlist_body(req->entity.base, req->entity.len, &in, &errs) != 0) {
        api_respond_validation(ar, errs.items, errs.count);
        return;
    }
    values[SQL_WATCHLIST_USER] = ar->rm.user_id.value;
    values[SQL_WATCHLIST_VIDEO] = in.video_id;
    (void)api_write_submit(ar, PGPOOL_STMT_WATCHLIST_ADD, values, SQL_WATCHLIST__COUNT);
}

void handler_watchlist(api_req_t *ar)
{
    if (ar->rm.route == ROUTE_WATCHLIST_ITEM) { /* DELETE */
        const char *values[SQL_WATCHLIST__COUNT];
        values[SQL_WATCHLIST_USER] = ar->rm.user_id.value;
        values[SQL_WATCHLIST_VIDEO] = ar->rm.video_id.value;
        (void)api_write_submit(ar, PGPOOL_STMT_WATCHLIST_REMOVE, values, SQL_WATCHLIST__COUNT);
        return;
    }
    if (ar->rm.method == ROUTE_METHOD_GET) {
        list_query_t q;
        cursor_t after;
        bool have_after;
        if (api_parse_list_query(ar, 0, 'w', &q, &after, &have_after) != 0)
            return;
        api_submit_list_cached(ar, CACHE_LIST_WATCHLIST, PGPOOL_STMT_PAGE_WATCHLIST, &q, &after,
                               have_after, NULL);
        return;
    }
    add_item(ar);
}
