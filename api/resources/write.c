/*
 * The write path: common parameters of every write function, the statement, and its result
 * row mapped to the response once the user's cached lists are invalidated.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "common/stringify.h"
#include "api/resources/write.h"
#include "api/codec/hex.h"
#include "api/codec/ids.h"
#include "api/http/metrics.h"
#include "api/http/reqhash.h"
#include "api/http/headers.h"
#include "api/http/respond.h"
#include "api/data/dbcall.h"
#include "api/data/wait.h"

/* values[0..SQL_WRITE__COMMON-1]; -1 after answering 400 for a bad Idempotency-Key */
static int fill_common_params(api_req_t *ar, const char **values)
{
    h2o_req_t *req = ar->req;
    const h2o_iovec_t *key = headers_find(ar->req, H2O_STRLIT("idempotency-key"));
    char *ttl = h2o_mem_alloc_pool(&req->pool, 16);

    values[SQL_WRITE_CALLER] = ar->principal.sub;
    values[SQL_WRITE_IDEM_KEY] = NULL;
    values[SQL_WRITE_REQUEST_HASH] = NULL;
    if (key != NULL) {
        uint8_t digest[REQHASH_LEN];
        char *hex = h2o_mem_alloc_pool(&req->pool, 2 * REQHASH_LEN + 1);
        size_t pathlen = req->query_at != SIZE_MAX ? req->query_at : req->path.len;
        if (!ids_idempotency_key_valid(key->base, key->len)) {
            field_error_t e = {
                "Idempotency-Key",
                "must be 1-" PROFILE_STR(IDS_IDEMPOTENCY_KEY_MAX) " printable ASCII characters"};
            api_respond_validation(ar, &e, 1);
            return -1;
        }
        values[SQL_WRITE_IDEM_KEY] = h2o_strdup(&req->pool, key->base, key->len).base;
        reqhash_compute(req->method.base, req->method.len, req->path.base, pathlen,
                        req->entity.base, req->entity.len, digest);
        hex_encode(digest, REQHASH_LEN, hex);
        values[SQL_WRITE_REQUEST_HASH] = hex;
    }
    snprintf(ttl, 16, "%d", ar->thr->server->cfg->idempotency_ttl_seconds);
    values[SQL_WRITE_IDEM_TTL] = ttl;
    values[SQL_WRITE_TRACEPARENT] = ar->traceparent;
    return 0;
}

static void send_write_result(api_req_t *ar)
{
    int status = ar->pending_status;
    api_respond(ar, status,
                status >= 400 ? PROBLEM_CONTENT_TYPE : "application/json; charset=utf-8",
                ar->pending_body, ar->pending_len);
}

static void on_write_invalidated(bool ok, void *ud)
{
    api_req_t *ar = api_wait_finish(ud, !ok);
    if (ar != NULL)
        send_write_result(ar);
}

/* ETag, Location and Idempotent-Replayed from the result row. */
static void add_result_headers(api_req_t *ar, const PGresult *res)
{
    h2o_req_t *req = ar->req;

    if (!PQgetisnull(res, 0, SQL_WRITE_COL_ETAG)) {
        size_t n = (size_t)PQgetlength(res, 0, SQL_WRITE_COL_ETAG);
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ETAG, NULL,
                       h2o_strdup(&req->pool, PQgetvalue(res, 0, SQL_WRITE_COL_ETAG), n).base, n);
    }
    if (!PQgetisnull(res, 0, SQL_WRITE_COL_LOCATION))
        api_add_header(ar, "location", PQgetvalue(res, 0, SQL_WRITE_COL_LOCATION),
                       (size_t)PQgetlength(res, 0, SQL_WRITE_COL_LOCATION));
    if (!PQgetisnull(res, 0, SQL_WRITE_COL_REPLAYED) &&
        PQgetvalue(res, 0, SQL_WRITE_COL_REPLAYED)[0] == 't') {
        h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("idempotent-replayed"), 1,
                              NULL, H2O_STRLIT("true"));
        metrics_count(ar->thr->index, METRICS_IDEMPOTENT_REPLAY);
    }
}

static void on_write_result(void *data, const PGresult *res, pgpool_err_t err)
{
    api_req_t *ar = data;
    api_thread_t *thr = ar->thr;
    size_t len;

    if (!api_db_single_row(ar, res, err, SQL_WRITE_COL_REPLAYED + 1)) /* seq may be absent */
        return;
    add_result_headers(ar, res);
    len = (size_t)PQgetlength(res, 0, SQL_WRITE_COL_BODY);
    ar->pending_status = atoi(PQgetvalue(res, 0, SQL_WRITE_COL_STATUS));
    ar->pending_body = PQgetvalue(res, 0, SQL_WRITE_COL_BODY);
    ar->pending_len = len;
    /*
     * The write committed an event: wake the relays now, outside the transaction (V007), with
     * the others of this loop iteration. Never waits; a lost hint costs only relay latency.
     */
    if (thr->hint != NULL && PQnfields(res) > SQL_WRITE_COL_PARTITION &&
        !PQgetisnull(res, 0, SQL_WRITE_COL_SEQ) && !PQgetisnull(res, 0, SQL_WRITE_COL_PARTITION))
        hint_mark(thr->hint, atoi(PQgetvalue(res, 0, SQL_WRITE_COL_PARTITION)));
    /*
     * The write produced event `seq`: drop the user's cached lists before answering, so the
     * client's next read (on any thread or replica) cannot see the old page. If Redis is down
     * the module queues the invalidation and bypasses the cache meanwhile; the write stands.
     */
    if (PQnfields(res) >= SQL_WRITE__COLS && !PQgetisnull(res, 0, SQL_WRITE_COL_SEQ) &&
        thr->lc != NULL && !thr->redis_closing) {
        int64_t seq = strtoll(PQgetvalue(res, 0, SQL_WRITE_COL_SEQ), NULL, 10);
        api_wait_t *w;
        char *copy = h2o_mem_alloc_pool(&ar->req->pool, len + 1);
        memcpy(copy, ar->pending_body, len);
        copy[len] = '\0';
        ar->pending_body = copy; /* `res` is cleared when this callback returns */
        w = api_wait_begin(ar, METRICS_REDIS_CACHE_INVALIDATE);
        if (listcache_invalidate(thr->lc, ar->rm.user_id.value, seq, on_write_invalidated, w) ==
            LISTCACHE_PENDING)
            return;
        (void)api_wait_end(w);
    }
    send_write_result(ar);
}

int api_write_submit(api_req_t *ar, pgpool_stmt_t stmt, const char **values, int nparams)
{
    if (fill_common_params(ar, values) != 0)
        return -1;
    return api_db_submit(ar, stmt, nparams, values, on_write_result);
}
