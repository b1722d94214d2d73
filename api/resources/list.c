/*
 * The list path: the list query, the read-through list cache and its prefetch beside the
 * rate-limit check, the page statement, and the rendered page as the response.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "api/resources/list.h"
#include "api/http/metrics.h"
#include "api/http/respond.h"
#include "api/http/span.h"
#include "api/data/dbcall.h"
#include "api/data/listrender.h"
#include "api/data/sql.h"
#include "api/data/wait.h"
#include "common/alloc.h"
#include "common/buf.h"
#include "common/clock.h"
#include "common/log.h"

#define LOG_MODULE "http"

/* GET watchlist/history: what a miss needs to query PostgreSQL and fill the cache. */
struct st_api_list_ctx_t {
    pgpool_stmt_t stmt;
    list_query_t q;
    cursor_t after;
    bool have_after;
    const char *extra;
    bool cacheable; /* false: no field (too long) or no cache for this list */
    cache_list_t list;
    char field[LISTCACHE_FIELD_MAX]; /* listcache_field() */
};

/* Reads the request's list query (limit, cursor and the parameters in `allow`) and decodes the
 * cursor of list `*kind` ('h' becomes 'c' with view=continue). Returns 0; 1 when the query is
 * invalid (`errs` says why); 2 when the cursor is. */
static int read_list_query(const api_req_t *ar, unsigned allow, char *kind, list_query_t *q,
                           cursor_t *after, bool *have_after, field_errors_t *errs)
{
    const h2o_req_t *req = ar->req;
    const char *qs = NULL;
    size_t qslen = 0;

    memset(errs, 0, sizeof(*errs));
    if (req->query_at != SIZE_MAX) {
        qs = req->path.base + req->query_at + 1;
        qslen = req->path.len - req->query_at - 1;
    }
    if (validate_list_query(qs, qslen, allow, q, errs) != 0)
        return 1;
    if (*kind == 'h' && q->view_continue)
        *kind = 'c';
    *have_after = q->cursor[0] != '\0';
    if (*have_after && cursor_decode(q->cursor, strlen(q->cursor), *kind, after) != 0)
        return 2;
    return 0;
}

int api_parse_list_query(api_req_t *ar, unsigned allow, char kind, list_query_t *q, cursor_t *after,
                         bool *have_after)
{
    field_errors_t errs;

    switch (read_list_query(ar, allow, &kind, q, after, have_after, &errs)) {
    case 0:
        ar->cursor_kind = kind;
        return 0;
    case 1:
        api_respond_validation(ar, errs.items, errs.count);
        return -1;
    default: {
        field_error_t e = {"cursor", "is not a valid cursor for this list"};
        api_respond_validation(ar, &e, 1);
        return -1;
    }
    }
}

/* The page's column layout, from the statement that produced it. */
static listrender_kind_t page_kind(pgpool_stmt_t stmt)
{
    switch (stmt) {
    case PGPOOL_STMT_PAGE_HISTORY:
    case PGPOOL_STMT_PAGE_CONTINUE:
        return LISTRENDER_HISTORY;
    case PGPOOL_STMT_PAGE_RATINGS:
    case PGPOOL_STMT_PAGE_RATING_VIDEO:
        return LISTRENDER_RATINGS;
    default:
        return LISTRENDER_WATCHLIST;
    }
}

static void on_list_result(void *data, const PGresult *res, pgpool_err_t err)
{
    api_req_t *ar = data;
    api_thread_t *thr = ar->thr;
    char mem[16384]; /* a page of 50 history entries fits without touching the heap */
    strbuf_t b;
    int64_t version;

    ar->op = NULL;
    if (err != PGPOOL_OK) {
        api_respond_unavailable(ar, err);
        return;
    }
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        api_respond_sql_error(ar, res);
        return;
    }
    strbuf_init_fixed(&b, mem, sizeof(mem));
    if (listrender_page(res, page_kind(ar->db_stmt), ar->list_limit, ar->cursor_kind, &b,
                        &version) != 0) {
        log_ctx_t ctx = {ar->request_id, ar->trace_id, NULL};
        log_error_ctx(&ctx, "statement %s returned a page of an unexpected shape",
                      pgpool_stmt_name(ar->db_stmt));
        strbuf_dispose(&b);
        api_respond_problem(ar, 500, "internal-error", "An unexpected error occurred.", NULL, 0);
        return;
    }
    /* the version was read in the same snapshot as the rows: the fill script refuses it when a
     * write committed meanwhile has already raised the user's version in Redis */
    if (ar->list != NULL && ar->list->cacheable && thr->lc != NULL && !thr->redis_closing) {
        struct timespec t0, t1;
        if (ar->sampled)
            clock_mono_ts(&t0);
        listcache_fill(thr->lc, ar->rm.user_id.value, ar->list->list, ar->list->field, b.data,
                       b.len, version);
        if (ar->sampled) {
            /* fire and forget (no completion callback): the span covers issuing the fill */
            clock_mono_ts(&t1);
            api_span_client(ar, "redis cache.fill", "redis", "cache.fill", &t0, &t1, false);
        }
    }
    api_respond(ar, 200, "application/json; charset=utf-8", b.data, b.len);
    strbuf_dispose(&b);
}

static void list_cache_answer(api_req_t *ar, const char *value, size_t len)
{
    api_list_ctx_t *l = ar->list;
    if (value != NULL) {
        api_respond(ar, 200, "application/json; charset=utf-8", value, len);
        return;
    }
    api_submit_list(ar, l->stmt, &l->q, &l->after, l->have_after, l->extra);
}

static void on_cache_get(const char *value, size_t len, void *ud)
{
    api_req_t *ar = api_wait_finish(ud, false);
    if (ar != NULL)
        list_cache_answer(ar, value, len);
}

/*
 * Prefetch: a cacheable list read whose authorization, ids and query are already known to be
 * fine sends its cache read right behind the rate-limit script, so both share one Redis round
 * trip. The limiter's reply comes first (replies keep their order): when it allows, the
 * request reaches api_submit_list_cached() and waits there for the read already in flight.
 * When it denies, the read's reply is dropped.
 */
struct st_api_prefetch_t {
    api_req_t *ar; /* NULL once the request is gone or no longer wants the reply */
    int thread;
    struct timespec t0;
    bool arrived; /* the reply came before the request was ready for it */
    bool waiting; /* the request waits in api_submit_list_cached() */
    char *value;  /* arrived: the cached body (request pool), NULL for a miss */
    size_t len;
    char field[LISTCACHE_FIELD_MAX]; /* listcache_field() of the page asked for */
};

static void on_prefetch(const char *value, size_t len, void *ud)
{
    api_prefetch_t *pf = ud;
    api_req_t *ar = pf->ar;
    struct timespec now;

    clock_mono_ts(&now);
    metrics_observe_redis(pf->thread, METRICS_REDIS_CACHE_GET,
                          clock_elapsed_s(&pf->t0, &now) * 1e3);
    if (ar == NULL || ar->responded) { /* denied by the limiter, or the client went away */
        if (ar != NULL)
            ar->prefetch = NULL;
        free(pf);
        return;
    }
    if (ar->sampled)
        api_span_client(ar, "redis cache.get", "redis", "cache.get", &pf->t0, &now, false);
    if (!pf->waiting) { /* keep it until the request gets there */
        pf->arrived = true;
        pf->value = value != NULL ? h2o_mem_alloc_pool(&ar->req->pool, len + 1) : NULL;
        if (value != NULL)
            memcpy(pf->value, value, len);
        pf->len = len;
        return;
    }
    ar->prefetch = NULL;
    free(pf);
    list_cache_answer(ar, value, len);
}

void api_prefetch_detach(api_req_t *ar)
{
    api_prefetch_t *pf = ar->prefetch;
    if (pf == NULL)
        return;
    ar->prefetch = NULL;
    if (pf->arrived)
        free(pf); /* its callback has run */
    else
        pf->ar = NULL; /* its callback frees it */
}

void api_list_prefetch(api_req_t *ar)
{
    api_thread_t *thr = ar->thr;
    list_query_t q;
    field_errors_t errs;
    cursor_t after;
    bool have_after;
    cache_list_t list;
    char kind;
    api_prefetch_t *pf;

    if (ar->rm.method != ROUTE_METHOD_GET || thr->lc == NULL || thr->redis_closing)
        return;
    if (ar->rm.route == ROUTE_WATCHLIST) {
        list = CACHE_LIST_WATCHLIST;
        kind = 'w';
    } else if (ar->rm.route == ROUTE_HISTORY) {
        list = CACHE_LIST_HISTORY;
        kind = 'h';
    } else {
        return;
    }
    if (read_list_query(ar, kind == 'h' ? VALIDATE_Q_VIEW : 0, &kind, &q, &after, &have_after,
                        &errs) != 0)
        return; /* the handler answers 400 after the limiter */
    pf = xcalloc(1, sizeof(*pf));
    if (listcache_field(pf->field, sizeof(pf->field), q.limit, q.view_continue ? "continue" : "",
                        q.cursor) == 0) {
        free(pf);
        return;
    }
    pf->ar = ar;
    pf->thread = thr->index;
    clock_mono_ts(&pf->t0);
    if (listcache_get(thr->lc, ar->rm.user_id.value, list, pf->field, on_prefetch, pf) !=
        LISTCACHE_PENDING) {
        free(pf); /* a miss now: the request reads PostgreSQL as usual */
        return;
    }
    ar->prefetch = pf;
}

void api_submit_list_cached(api_req_t *ar, cache_list_t list, pgpool_stmt_t stmt,
                            const list_query_t *q, const cursor_t *after, bool have_after,
                            const char *extra)
{
    api_thread_t *thr = ar->thr;
    api_list_ctx_t *l = h2o_mem_alloc_pool(&ar->req->pool, sizeof(*l));
    api_prefetch_t *pf = ar->prefetch;
    api_wait_t *w;

    memset(l, 0, sizeof(*l));
    l->stmt = stmt;
    l->q = *q;
    if (have_after)
        l->after = *after;
    l->have_after = have_after;
    l->extra = extra;
    l->list = list;
    l->cacheable = thr->lc != NULL && !thr->redis_closing &&
                   listcache_field(l->field, sizeof(l->field), q->limit,
                                   q->view_continue ? "continue" : "", q->cursor) > 0;
    ar->list = l;
    if (pf != NULL && l->cacheable && strcmp(pf->field, l->field) == 0) {
        if (!pf->arrived) {
            pf->waiting = true; /* continues in on_prefetch */
            return;
        }
        char *value = pf->value;
        size_t len = pf->len;
        ar->prefetch = NULL;
        free(pf);
        list_cache_answer(ar, value, len);
        return;
    }
    api_prefetch_detach(ar);
    if (!l->cacheable) {
        api_submit_list(ar, stmt, &l->q, &l->after, have_after, extra);
        return;
    }
    w = api_wait_begin(ar, METRICS_REDIS_CACHE_GET);
    if (listcache_get(thr->lc, ar->rm.user_id.value, list, l->field, on_cache_get, w) ==
        LISTCACHE_PENDING)
        return;
    (void)api_wait_end(w);
    api_submit_list(ar, stmt, &l->q, &l->after, have_after, extra);
}

void api_submit_list(api_req_t *ar, pgpool_stmt_t stmt, const list_query_t *q,
                     const cursor_t *after, bool have_after, const char *extra)
{
    h2o_req_t *req = ar->req;
    char *limit = h2o_mem_alloc_pool(&req->pool, 16), *ts = NULL;
    const char *values[SQL_PAGE__COUNT];

    snprintf(limit, 16, "%d", q->limit);
    if (have_after) {
        ts = h2o_mem_alloc_pool(&req->pool, 32);
        snprintf(ts, 32, "%lld", (long long)after->ts_us);
    }
    ar->list_limit = q->limit;
    values[SQL_PAGE_USER] = ar->rm.user_id.value;
    /* the videoId lookup takes the video instead of a limit (one row at most) */
    values[SQL_PAGE_LIMIT] = stmt == PGPOOL_STMT_PAGE_RATING_VIDEO ? extra : limit;
    values[SQL_PAGE_AFTER_TS] = ts;
    values[SQL_PAGE_AFTER_ID] = have_after ? after->id : NULL;
    (void)api_db_submit(ar, stmt, SQL_PAGE__COUNT, values, on_list_result);
}
