/*
 * GET /profiles/{userId}/export: the user's profile and every list in one JSON document,
 * streamed. Each chunk is one keyset page (EXPORT_PAGE items) fetched through the pool when h2o
 * asks for more, so memory stays bounded and no pool connection is held between pages.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "api/resources/handlers.h"
#include "api/http/respond.h"
#include "api/data/dbcall.h"
#include "api/data/listrender.h"
#include "api/data/sql.h"
#include "common/buf.h"
#include "common/clock.h"

#define EXPORT_PAGE 500 /* items per page (and per chunk sent) */

/* Where the document is: the stage's list is being written. */
typedef enum {
    EXPORT_WATCHLIST = 0,
    EXPORT_HISTORY,
    EXPORT_RATINGS,
    EXPORT_DONE,
} export_stage_t;

static const struct {
    pgpool_stmt_t stmt;
    listrender_kind_t kind;
    const char *close; /* written after the stage's last item */
} stages[EXPORT_DONE] = {
    [EXPORT_WATCHLIST] = {PGPOOL_STMT_PAGE_WATCHLIST, LISTRENDER_WATCHLIST, "],\"history\":["},
    [EXPORT_HISTORY] = {PGPOOL_STMT_PAGE_HISTORY, LISTRENDER_HISTORY, "],\"ratings\":["},
    [EXPORT_RATINGS] = {PGPOOL_STMT_PAGE_RATINGS, LISTRENDER_RATINGS, "]}"},
};

/* One export in flight; in the request pool (disposed with it). `gen` is what h2o calls. */
typedef struct st_api_export_t {
    h2o_generator_t gen;
    api_req_t *ar;
    export_stage_t stage;
    bool any;        /* the stage's list has an item already (next one needs a comma) */
    bool have_after; /* `after` holds the keyset of the stage's last item sent */
    cursor_t after;
    strbuf_t chunk; /* the bytes h2o is sending: kept until proceed */
} api_export_t;

static void export_dispose(void *p)
{
    api_export_t *ex = p;
    strbuf_dispose(&ex->chunk);
}

/* Ends the body. A failure after the status went out can only cut the stream short. */
static void send_chunk(api_export_t *ex, h2o_send_state_t state)
{
    h2o_iovec_t v = h2o_iovec_init(ex->chunk.data, ex->chunk.len);
    h2o_send(ex->ar->req, &v, 1, state);
}

static void fail_stream(api_export_t *ex)
{
    ex->chunk.len = 0;
    ex->ar->export = NULL;
    send_chunk(ex, H2O_SEND_STATE_ERROR);
}

static void on_page(void *data, const PGresult *res, pgpool_err_t err)
{
    api_req_t *ar = data;
    api_export_t *ex = ar->export;
    int nitems;
    bool more;
    cursor_t next;

    ar->op = NULL;
    if (ex == NULL)
        return;
    ex->chunk.len = 0;
    if (err != PGPOOL_OK || listrender_items(res, stages[ex->stage].kind, EXPORT_PAGE, ex->any,
                                             &ex->chunk, &nitems, &next, &more) != 0) {
        fail_stream(ex);
        return;
    }
    ex->any = ex->any || nitems > 0;
    if (more) {
        ex->after = next;
        ex->have_after = true;
        send_chunk(ex, H2O_SEND_STATE_IN_PROGRESS);
        return;
    }
    strbuf_append_str(&ex->chunk, stages[ex->stage].close);
    ex->stage++;
    ex->any = false;
    ex->have_after = false;
    if (ex->stage == EXPORT_DONE) {
        ar->export = NULL;
        send_chunk(ex, H2O_SEND_STATE_FINAL);
        return;
    }
    send_chunk(ex, H2O_SEND_STATE_IN_PROGRESS);
}

/* h2o sent the previous chunk: fetch the next page. */
static void on_proceed(h2o_generator_t *gen, h2o_req_t *req)
{
    api_export_t *ex = (api_export_t *)gen;
    api_req_t *ar = ex->ar;
    char limit[16], ts[24];
    const char *values[SQL_PAGE__COUNT];

    if (ex->stage == EXPORT_DONE)
        return;
    snprintf(limit, sizeof(limit), "%d", EXPORT_PAGE);
    values[SQL_PAGE_USER] = ar->rm.user_id.value;
    values[SQL_PAGE_LIMIT] = limit;
    values[SQL_PAGE_AFTER_TS] = NULL;
    values[SQL_PAGE_AFTER_ID] = NULL;
    if (ex->have_after) {
        snprintf(ts, sizeof(ts), "%lld", (long long)ex->after.ts_us);
        values[SQL_PAGE_AFTER_TS] = ts;
        values[SQL_PAGE_AFTER_ID] = ex->after.id;
    }
    if (api_db_submit(ar, stages[ex->stage].stmt, SQL_PAGE__COUNT, values, on_page) != 0)
        fail_stream(ex); /* the pool refused: the status is out, so the stream is cut */
}

static void on_stop(h2o_generator_t *gen, h2o_req_t *req)
{
    api_export_t *ex = (api_export_t *)gen;
    ex->ar->export = NULL; /* a page in flight is detached with the request */
}

/* The profile (or null) is in: the status goes out with the document's head. */
static void on_profile(void *data, const PGresult *res, pgpool_err_t err)
{
    api_req_t *ar = data;
    h2o_req_t *req = ar->req;
    api_export_t *ex;
    int status;
    char disp[128];
    int n;

    if (!api_db_single_row(ar, res, err, SQL_GET_PROFILE__COLS))
        return;
    status = atoi(PQgetvalue(res, 0, SQL_GET_PROFILE_COL_STATUS));
    ex = h2o_mem_alloc_shared(&req->pool, sizeof(*ex), export_dispose);
    memset(ex, 0, sizeof(*ex));
    strbuf_init(&ex->chunk);
    ex->gen.proceed = on_proceed;
    ex->gen.stop = on_stop;
    ex->ar = ar;
    ex->stage = EXPORT_WATCHLIST;
    ar->export = ex;

    strbuf_append_str(&ex->chunk, "{\"userId\":");
    strbuf_append_json_string(&ex->chunk, ar->rm.user_id.value, ar->rm.user_id.len);
    strbuf_append_str(&ex->chunk, ",\"exportedAt\":\"");
    if (listrender_timestamp(&ex->chunk, clock_wall_ns() / 1000 - LISTRENDER_PG_EPOCH_UNIX_US) != 0)
        PROFILE_FATAL("wall clock before the year 2000");
    strbuf_append_str(&ex->chunk, "\",\"profile\":");
    if (status == 200)
        strbuf_append(&ex->chunk, PQgetvalue(res, 0, SQL_GET_PROFILE_COL_BODY),
                      (size_t)PQgetlength(res, 0, SQL_GET_PROFILE_COL_BODY));
    else
        strbuf_append_str(&ex->chunk, "null");
    strbuf_append_str(&ex->chunk, ",\"watchlist\":[");

    /* the id matched ^[A-Za-z0-9._-]{1,64}$: safe in a quoted filename */
    n = snprintf(disp, sizeof(disp), "attachment; filename=\"profile-%s.json\"",
                 ar->rm.user_id.value);
    api_add_header(ar, "content-disposition", disp, (size_t)n);
    api_respond_stream(ar, 200, "application/json; charset=utf-8", &ex->gen);
    send_chunk(ex, H2O_SEND_STATE_IN_PROGRESS);
}

void handler_export(api_req_t *ar)
{
    const char *values[SQL_GET_PROFILE__COUNT] = {[SQL_GET_PROFILE_USER] = ar->rm.user_id.value};
    (void)api_db_submit(ar, PGPOOL_STMT_GET_PROFILE, SQL_GET_PROFILE__COUNT, values, on_profile);
}
