/*
 * GET and PUT /profiles/{userId}: one prepared call each (api_get_profile, api_put_profile).
 * ETag comes back from SQL; If-Match is passed through as sent.
 */
#include <stdlib.h>
#include <string.h>
#include "api/http/respond.h"

static void on_get_result(void *data, const PGresult *res, pgpool_err_t err)
{
    api_req_t *ar = data;
    int status;
    if (!api_db_single_row(ar, res, err, 3))
        return;
    status = atoi(PQgetvalue(res, 0, 0));
    if (!PQgetisnull(res, 0, 2))
        api_add_header(ar, "etag", PQgetvalue(res, 0, 2), (size_t)PQgetlength(res, 0, 2));
    api_respond(ar, status,
                status >= 400 ? PROBLEM_CONTENT_TYPE : "application/json; charset=utf-8",
                PQgetvalue(res, 0, 1), (size_t)PQgetlength(res, 0, 1));
}

static void put_profile(api_req_t *ar)
{
    h2o_req_t *req = ar->req;
    profile_input_t in;
    validate_errors_t errs;
    const char *values[10];
    const h2o_iovec_t *if_match;

    if (api_check_body(ar) != 0)
        return;
    memset(&errs, 0, sizeof(errs));
    if (validate_profile_body(req->entity.base, req->entity.len, &in, &errs) != 0) {
        api_respond_validation(ar, errs.items, errs.count);
        return;
    }
    if (api_write_common_params(ar, values) != 0) {
        validate_profile_input_dispose(&in);
        return;
    }
    if_match = api_find_header(ar, H2O_STRLIT("if-match"));
    values[5] = ar->rm.user_id.value;
    values[6] = in.display_name;
    values[7] = in.avatar_url;
    values[8] = in.preferences_json;
    values[9] =
        if_match != NULL ? h2o_strdup(&req->pool, if_match->base, if_match->len).base : NULL;
    (void)api_db_submit(ar, PGPOOL_STMT_PUT_PROFILE, 10, values, api_on_write_result);
    validate_profile_input_dispose(&in);
}

void handler_profiles(api_req_t *ar)
{
    if (ar->rm.method == ROUTE_METHOD_GET) {
        const char *values[1] = {ar->rm.user_id.value};
        (void)api_db_submit(ar, PGPOOL_STMT_GET_PROFILE, 1, values, on_get_result);
        return;
    }
    put_profile(ar);
}
