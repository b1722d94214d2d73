/*
 * GET, PUT and DELETE /profiles/{userId}: one prepared call each (api_get_profile,
 * api_put_profile, api_erase_profile). ETag comes back from SQL; If-Match is passed through as
 * sent; If-None-Match on GET is compared here (304).
 */
#include <stdlib.h>
#include <string.h>
#include "api/resources/handlers.h"
#include "api/resources/validate.h"
#include "api/resources/write.h"
#include "api/http/headers.h"
#include "api/http/request.h"
#include "api/http/respond.h"
#include "api/data/dbcall.h"

/* Skips optional whitespace and commas of a list header (RFC 9110 section 5.6.1). */
static const char *skip_ows_commas(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == ','))
        ++p;
    return p;
}

/*
 * If-None-Match (RFC 9110 section 13.1.2) against the current `etag` ("\"<version>\""): "*"
 * matches any current representation; otherwise a comma list of entity tags compared with the
 * weak function, so W/"3" matches "3". A malformed member ends the scan (no match from it on).
 */
static bool none_match_hits(const h2o_iovec_t *hdr, const char *etag, size_t etag_len)
{
    const char *p = hdr->base, *end = hdr->base + hdr->len;
    p = skip_ows_commas(p, end);
    if (p < end && *p == '*') {
        const char *q = skip_ows_commas(p + 1, end);
        return q == end;
    }
    while (p < end) {
        const char *tag;
        if (end - p >= 2 && p[0] == 'W' && p[1] == '/')
            p += 2;
        if (p >= end || *p != '"')
            return false;
        tag = p;
        for (++p; p < end && *p != '"'; ++p) {
        }
        if (p >= end)
            return false;
        ++p; /* closing quote */
        if ((size_t)(p - tag) == etag_len && memcmp(tag, etag, etag_len) == 0)
            return true;
        p = skip_ows_commas(p, end);
    }
    return false;
}

static void on_get_result(void *data, const PGresult *res, pgpool_err_t err)
{
    api_req_t *ar = data;
    int status;
    const h2o_iovec_t *inm;
    if (!api_db_single_row(ar, res, err, SQL_GET_PROFILE__COLS))
        return;
    status = atoi(PQgetvalue(res, 0, SQL_GET_PROFILE_COL_STATUS));
    if (!PQgetisnull(res, 0, SQL_GET_PROFILE_COL_ETAG))
        api_add_header(ar, "etag", PQgetvalue(res, 0, SQL_GET_PROFILE_COL_ETAG),
                       (size_t)PQgetlength(res, 0, SQL_GET_PROFILE_COL_ETAG));
    inm = headers_find(ar->req, H2O_STRLIT("if-none-match"));
    if (status == 200 && inm != NULL && !PQgetisnull(res, 0, SQL_GET_PROFILE_COL_ETAG) &&
        none_match_hits(inm, PQgetvalue(res, 0, SQL_GET_PROFILE_COL_ETAG),
                        (size_t)PQgetlength(res, 0, SQL_GET_PROFILE_COL_ETAG))) {
        api_respond(ar, 304, NULL, NULL, 0);
        return;
    }
    api_respond(ar, status,
                status >= 400 ? PROBLEM_CONTENT_TYPE : "application/json; charset=utf-8",
                PQgetvalue(res, 0, SQL_GET_PROFILE_COL_BODY),
                (size_t)PQgetlength(res, 0, SQL_GET_PROFILE_COL_BODY));
}

static void put_profile(api_req_t *ar)
{
    h2o_req_t *req = ar->req;
    profile_input_t in;
    field_errors_t errs;
    const char *values[SQL_PUT_PROFILE__COUNT];
    const h2o_iovec_t *if_match;

    if (api_check_body(ar) != 0)
        return;
    memset(&errs, 0, sizeof(errs));
    if (validate_profile_body(req->entity.base, req->entity.len, &in, &errs) != 0) {
        api_respond_validation(ar, errs.items, errs.count);
        return;
    }
    if_match = headers_find(ar->req, H2O_STRLIT("if-match"));
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
    if (ar->rm.method == ROUTE_METHOD_DELETE) {
        const char *values[SQL_ERASE_PROFILE__COUNT];
        values[SQL_ERASE_PROFILE_USER] = ar->rm.user_id.value;
        (void)api_write_submit(ar, PGPOOL_STMT_ERASE_PROFILE, values, SQL_ERASE_PROFILE__COUNT);
        return;
    }
    put_profile(ar);
}
