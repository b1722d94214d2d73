/*
 * GET and PUT /profiles/{userId}: one prepared call each (api_get_profile, api_put_profile).
 * ETag comes back from SQL; If-Match is passed through as sent.
 */
#include <stdlib.h>
#include <string.h>
#include "api/resources/handlers.h"
#include "api/resources/validate.h"
#include "api/resources/write.h"
#include "api/http/request.h"
#include "api/http/respond.h"
#include "api/data/dbcall.h"

static void on_get_result(void *data, const PGresult *res, pgpool_err_t err)
{
    api_req_t *ar = data;
    int status;
    if (!api_db_single_row(ar, res, err, SQL_GET_PROFILE__COLS))
        return;
    status = atoi(PQgetvalue(res, 0, SQL_GET_PROFILE_COL_STATUS));
    if (!PQgetisnull(res, 0, SQL_GET_PROFILE_COL_ETAG))
        api_add_header(ar, "etag", PQgetvalue(res, 0, SQL_GET_PROFILE_COL_ETAG),
                       (size_t)PQgetlength(res, 0, SQL_GET_PROFILE_COL_ETAG));
    api_respond(ar, status,
                status >= 400 ? PROBLEM_CONTENT_TYPE : "application/json; charset=utf-8",
                PQgetvalue(res, 0, SQL_GET_PROFILE_COL_BODY),
                (size_t)PQgetlength(res, 0, SQL_GET_PROFILE_COL_BODY));
}

static void put_profile(api_req_t *ar)
{
    h2o_req_t *req = ar->req;
    profile_input_t in;
    validate_errors_t errs;
    const char *values[SQL_PUT_PROFILE__COUNT];
    const h2o_iovec_t *if_match;

    if (api_check_body(ar) != 0)
        return;
    memset(&errs, 0, sizeof(errs));
    if (validate_profile_body(req->entity.base, req->entity.len, &in, &errs) != 0) {
        api_respond_validation(ar, errs.items, errs.count);
        return;
    }
    if_match = api_find_header(ar, H2O_STRLIT("if-match"));
    values[SQL_PUT_PROFILE_USER] = ar->rm.user_id.value;
    values[SQL_PUT_PROFILE_DISPLAY_NAME] = in.display_name;
    values[SQL_PUT_PROFILE_AVATAR_URL] = in.avatar_url;
    values[SQL_PUT_PROFILE_PREFERENCES] = in.preferences_json;
    values[SQL_PUT_PROFILE_IF_MATCH] =
        if_match != NULL ? h2o_strdup(&req->pool, if_match->base, if_match->len).base : NULL;
    (void)api_write_submit(ar, PGPOOL_STMT_PUT_PROFILE, values, SQL_PUT_PROFILE__COUNT);
    validate_profile_input_dispose(&in);
}

void handler_profiles(api_req_t *ar)
{
    if (ar->rm.method == ROUTE_METHOD_GET) {
        const char *values[SQL_GET_PROFILE__COUNT] = {[SQL_GET_PROFILE_USER] =
                                                          ar->rm.user_id.value};
        (void)api_db_submit(ar, PGPOOL_STMT_GET_PROFILE, SQL_GET_PROFILE__COUNT, values,
                            on_get_result);
        return;
    }
    put_profile(ar);
}
