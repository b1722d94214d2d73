/*
 * /profiles/{userId}/ratings: GET (newest first, optional videoId filter) and POST (one rating
 * per user and video: 201 new, 200 replaced).
 */
#include <stdio.h>
#include <string.h>
#include "api/http/respond.h"

void handler_ratings(api_req_t *ar)
{
    h2o_req_t *req = ar->req;
    const char *values[9];
    rating_input_t in;
    validate_errors_t errs;
    char *rating;

    if (ar->rm.method == ROUTE_METHOD_GET) {
        list_query_t q;
        cursor_t after;
        bool have_after;
        if (api_parse_list_query(ar, VALIDATE_Q_VIDEO_ID, 'r', &q, &after, &have_after) != 0)
            return;
        if (q.video_id[0] != '\0')
            api_submit_list(ar, PGPOOL_STMT_PAGE_RATING_VIDEO, &q, &after, have_after,
                            h2o_strdup(&req->pool, q.video_id, strlen(q.video_id)).base);
        else
            api_submit_list(ar, PGPOOL_STMT_PAGE_RATINGS, &q, &after, have_after, NULL);
        return;
    }
    if (api_check_body(ar) != 0)
        return;
    memset(&errs, 0, sizeof(errs));
    if (validate_rating_body(req->entity.base, req->entity.len, &in, &errs) != 0) {
        api_respond_validation(ar, errs.items, errs.count);
        return;
    }
    if (api_write_common_params(ar, values) != 0) {
        validate_rating_input_dispose(&in);
        return;
    }
    rating = h2o_mem_alloc_pool(&req->pool, 16);
    snprintf(rating, 16, "%d", in.rating);
    values[5] = ar->rm.user_id.value;
    values[6] = h2o_strdup(&req->pool, in.video_id, strlen(in.video_id)).base;
    values[7] = rating;
    values[8] = in.review;
    (void)api_db_submit(ar, PGPOOL_STMT_RATING_PUT, 9, values, api_on_write_result);
    validate_rating_input_dispose(&in);
}
