/*
 * /profiles/{userId}/history: GET (newest first, or view=continue) and POST (append).
 */
#include <stdio.h>
#include <string.h>
#include "api/resources/handlers.h"
#include "api/resources/list.h"
#include "api/resources/validate.h"
#include "api/resources/write.h"
#include "api/http/request.h"
#include "api/http/respond.h"

static void add_entry(api_req_t *ar)
{
    h2o_req_t *req = ar->req;
    const char *values[SQL_HISTORY_ADD__COUNT];
    history_input_t in;
    field_errors_t errs;
    char *pos, *dur = NULL;

    if (api_check_body(ar) != 0)
        return;
    memset(&errs, 0, sizeof(errs));
    if (validate_history_body(req->entity.base, req->entity.len, &in, &errs) != 0) {
        api_respond_validation(ar, errs.items, errs.count);
        return;
    }
    pos = h2o_mem_alloc_pool(&req->pool, 16);
    snprintf(pos, 16, "%d", in.position_seconds);
    if (in.duration_seconds >= 0) {
        dur = h2o_mem_alloc_pool(&req->pool, 16);
        snprintf(dur, 16, "%d", in.duration_seconds);
    }
    values[SQL_HISTORY_ADD_USER] = ar->rm.user_id.value;
    values[SQL_HISTORY_ADD_VIDEO] = h2o_strdup(&req->pool, in.video_id, strlen(in.video_id)).base;
    values[SQL_HISTORY_ADD_POSITION] = pos;
    values[SQL_HISTORY_ADD_DURATION] = dur;
    values[SQL_HISTORY_ADD_WATCHED_AT] =
        in.watched_at[0] != '\0' ? h2o_strdup(&req->pool, in.watched_at, strlen(in.watched_at)).base
                                 : NULL;
    (void)api_write_submit(ar, PGPOOL_STMT_HISTORY_ADD, values, SQL_HISTORY_ADD__COUNT);
}

void handler_history(api_req_t *ar)
{
    if (ar->rm.method == ROUTE_METHOD_GET) {
        list_query_t q;
        cursor_t after;
        bool have_after;
        if (api_parse_list_query(ar, VALIDATE_Q_VIEW, 'h', &q, &after, &have_after) != 0)
            return;
        api_submit_list_cached(ar, CACHE_LIST_HISTORY,
                               q.view_continue ? PGPOOL_STMT_PAGE_CONTINUE
                                               : PGPOOL_STMT_PAGE_HISTORY,
                               &q, &after, have_after, NULL);
        return;
    }
    add_entry(ar);
}
