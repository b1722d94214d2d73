/*
 * /profiles/{userId}/ratings: GET (newest first, optional videoId filter) and POST (one rating
 * per user and video: 201 new, 200 replaced).
 */
#include <stdio.h>
#include <string.h>
#include "api/resources/handlers.h"
#include "api/resources/list.h"
#include "api/resources/validate.h"
#include "api/resources/write.h"
#include "api/http/request.h"
#include "api/http/respond.h"

static void put_rating(api_req_t *ar)
{
    h2o_req_t *req = ar->req;
    const char *values[SQL_RATING_PUT__COUNT];
    rating_input_t in;
    field_errors_t errs;
    char *rating;

    if (api_check_body(ar) != 0)
        return;
    memset(&errs, 0, sizeof(errs));
    if (validate_rating_body(req->entity.base, req->entity.len, &in, &errs) != 0) {
        api_respond_validation(ar, errs.items, errs.count);
        return;
    }
    rating = h2o_mem_alloc_pool(&req->pool, 16);
    snprintf(rating, 16, "%d", in.rating);
    values[SQL_RATING_PUT_USER] = ar->rm.user_id.value;
    values[SQL_RATING_PUT_VIDEO] = h2o_strdup(&req->pool, in.video_id, strlen(in.video_id)).base;
    values[SQL_RATING_PUT_RATING] = rating;
    values[SQL_RATING_PUT_REVIEW] = in.review;
    (void)api_write_submit(ar, PGPOOL_STMT_RATING_PUT, values, SQL_RATING_PUT__COUNT);
    validate_rating_input_dispose(&in);
}

void handler_ratings(api_req_t *ar)
{
    h2o_req_t *req = ar->req;

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
    put_rating(ar);
}
