/*
 * Asynchronous libpq on an h2o evloop. Each connection runs in pipeline mode: every request's
 * statement is sent with its own sync point, so several requests go out in one write and a
 * failing statement never aborts its neighbours. Results arrive strictly in send order.
 */
#include <assert.h>
#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <h2o.h>
#include "api/data/pgpool.h"
#include "api/http/metrics.h"
#include "common/log.h"

#define LOG_MODULE "pgpool"

#define MAX_DEPTH 8             /* statements in flight per connection */
#define TICK_MS 100             /* housekeeping period */
#define STMT_TIMEOUT_MS 10000   /* a statement without a result for this long breaks the conn */
#define QUEUE_TIMEOUT_MS 5000   /* a queued request waits at most this long */
#define CONNECT_TIMEOUT_MS 5000 /* a connect or prepare step may take this long */
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 3000
#define MAX_RETRIES 3 /* serialization failure / deadlock */

static const struct {
    const char *name;
    const char *sql;
    int result_format; /* 0 text, 1 binary (PQsendQueryPrepared's resultFormat) */
} stmts[PGPOOL_STMT__COUNT] = {
    [PGPOOL_STMT_GET_PROFILE] = {"get_profile",
                                 "SELECT status, body, etag FROM api_get_profile($1)", 0},
    [PGPOOL_STMT_PUT_PROFILE] = {"put_profile",
                                 "SELECT status, body, etag, location, replayed, seq FROM "
                                 "api_put_profile($1, $2, decode($3, 'hex'), $4, $5, $6, $7, $8, "
                                 "$9::jsonb, $10)",
                                 0},
    [PGPOOL_STMT_WATCHLIST_ADD] = {"watchlist_add",
                                   "SELECT status, body, etag, location, replayed, seq FROM "
                                   "api_watchlist_add($1, $2, decode($3, 'hex'), $4, $5, $6, $7)",
                                   0},
    [PGPOOL_STMT_WATCHLIST_REMOVE] = {"watchlist_remove",
                                      "SELECT status, body, etag, location, replayed, seq FROM "
                                      "api_watchlist_remove($1, $2, decode($3, 'hex'), $4, $5, "
                                      "$6, $7)",
                                      0},
    [PGPOOL_STMT_HISTORY_ADD] = {"history_add",
                                 "SELECT status, body, etag, location, replayed, seq FROM "
                                 "api_history_add($1, $2, decode($3, 'hex'), $4, $5, $6, $7, $8, "
                                 "$9, $10::timestamptz)",
                                 0},
    [PGPOOL_STMT_RATING_PUT] = {"rating_put",
                                "SELECT status, body, etag, location, replayed, seq FROM "
                                "api_rating_put($1, $2, decode($3, 'hex'), $4, $5, $6, $7, $8, "
                                "$9)",
                                0},
    [PGPOOL_STMT_ERASE_PROFILE] = {"erase_profile",
                                   "SELECT status, body, etag, location, replayed, seq FROM "
                                   "api_erase_profile($1, $2, decode($3, 'hex'), $4, $5, $6)",
                                   0},
    /* The pages (V003) come back in binary format, rendered by api/data/listrender.c; parameters
     * stay text. Names (span names, metric labels) keep the list_ prefix of the old statements
     * so dashboards carry on. */
    [PGPOOL_STMT_PAGE_WATCHLIST] = {"list_watchlist",
                                    "SELECT version, video_id, added_at FROM "
                                    "api_page_watchlist($1, $2, timestamptz 'epoch' + "
                                    "$3::bigint * interval '1 microsecond', $4)",
                                    1},
    [PGPOOL_STMT_PAGE_HISTORY] = {"list_history",
                                  "SELECT version, entry_id, video_id, position_seconds, "
                                  "duration_seconds, watched_at FROM "
                                  "api_page_history($1, $2, timestamptz 'epoch' + "
                                  "$3::bigint * interval '1 microsecond', $4::uuid)",
                                  1},
    [PGPOOL_STMT_PAGE_CONTINUE] = {"list_continue",
                                   "SELECT version, entry_id, video_id, position_seconds, "
                                   "duration_seconds, watched_at FROM "
                                   "api_page_continue($1, $2, timestamptz 'epoch' + "
                                   "$3::bigint * interval '1 microsecond', $4::uuid)",
                                   1},
    [PGPOOL_STMT_PAGE_RATINGS] = {"list_ratings",
                                  "SELECT version, video_id, rating, review, created_at, "
                                  "updated_at FROM "
                                  "api_page_ratings($1, $2, timestamptz 'epoch' + "
                                  "$3::bigint * interval '1 microsecond', $4)",
                                  1},
    [PGPOOL_STMT_PAGE_RATING_VIDEO] = {"list_rating_video",
                                       "SELECT version, video_id, rating, review, created_at, "
                                       "updated_at FROM "
                                       "api_page_rating_video($1, $2, timestamptz 'epoch' + "
                                       "$3::bigint * interval '1 microsecond', $4)",
                                       1},
    [PGPOOL_STMT_IDEM_CLEANUP] = {"idem_cleanup", "SELECT api_idempotency_cleanup($1)", 0},
    [PGPOOL_STMT_SCHEMA_VERSION] = {"schema_version", "SELECT schema_version()", 0},
};

typedef enum { CONN_DOWN = 0, CONN_CONNECTING, CONN_PREPARING, CONN_READY } conn_state_t;

typedef struct st_conn_t {
    pgpool_t *pool;
    int index;
    conn_state_t state;
    PGconn *pg;
    h2o_socket_t *sock;
    int sock_fd;       /* PQsocket() the h2o socket wraps a dup of */
    int write_pending; /* h2o_socket_notify_write armed */
    int prep_failed;
    uint64_t state_since; /* ms, for connect/prepare timeouts */
    uint64_t retry_at;    /* CONN_DOWN: when to reconnect */
    uint64_t backoff;
    int was_up;              /* logged "connected" and counted, for reconnect metrics */
    h2o_linklist_t inflight; /* pgpool_op_t, in send order */
    int ninflight;
} conn_t;

struct st_pgpool_op_t {
    h2o_linklist_t link;
    pgpool_t *pool;
    pgpool_stmt_t stmt;
    int nparams;
    char *values[PGPOOL_MAX_PARAMS];
    pgpool_cb cb; /* NULL once detached */
    void *data;
    int phase; /* 0 awaiting result, 1 awaiting end of results, 2 awaiting sync */
    PGresult *res;
    int retries;
    uint64_t queued_at, sent_at;
};

struct st_pgpool_t {
    h2o_loop_t *loop;
    char *conninfo;
    int thread;
    conn_t *conns;
    int nconns;
    h2o_linklist_t queue;
    size_t queued;
    size_t queue_max;
    h2o_timeout_t tick_timeout;
    h2o_timeout_entry_t tick;
    int destroying;
    int outage_logged;
};

static void conn_start(conn_t *c);
static void conn_fail(conn_t *c, const char *why);
static void on_read(h2o_socket_t *sock, const char *err);
static void pump(pgpool_t *pool);

static void op_free(pgpool_op_t *op)
{
    if (op->res != NULL)
        PQclear(op->res);
    free(op);
}

/* Calls the callback (unless detached) and frees the op. */
static void op_complete(pgpool_op_t *op, pgpool_err_t err)
{
    if (op->cb != NULL) {
        pgpool_cb cb = op->cb;
        op->cb = NULL;
        cb(op->data, err == PGPOOL_OK ? op->res : NULL, err);
    }
    op_free(op);
}

static void close_sock(conn_t *c)
{
    if (c->sock != NULL) {
        h2o_socket_close(c->sock);
        c->sock = NULL;
    }
    c->sock_fd = -1;
    c->write_pending = 0;
}

/* (Re)wraps PQsocket() in an h2o socket; libpq may switch sockets while connecting. */
static int watch_socket(conn_t *c)
{
    int fd = PQsocket(c->pg), dupfd;
    if (fd < 0)
        return -1;
    if (c->sock != NULL && c->sock_fd == fd)
        return 0;
    close_sock(c);
    if ((dupfd = dup(fd)) < 0)
        return -1;
    c->sock = h2o_evloop_socket_create(c->pool->loop, dupfd, H2O_SOCKET_FLAG_DONT_READ);
    c->sock->data = c;
    c->sock_fd = fd;
    return 0;
}

static void publish_gauges(pgpool_t *pool)
{
    metrics_pool_gauges_t g = {pool->nconns, 0, 0, (int)pool->queued};
    for (int i = 0; i < pool->nconns; i++) {
        if (pool->conns[i].state == CONN_READY)
            g.conns_ready++;
        g.inflight += pool->conns[i].ninflight;
    }
    metrics_set_pool(pool->thread, &g);
}

const char *pgpool_stmt_name(pgpool_stmt_t stmt)
{
    return (unsigned)stmt < PGPOOL_STMT__COUNT ? stmts[stmt].name : "unknown";
}

int pgpool_ready_count(const pgpool_t *pool)
{
    int n = 0;
    for (int i = 0; i < pool->nconns; i++)
        if (pool->conns[i].state == CONN_READY)
            n++;
    return n;
}

/* Connections that serve or soon will (connecting or preparing): a pool that is starting, or
 * reconnecting after a restart, holds requests in its queue (bounded by QUEUE_TIMEOUT_MS)
 * instead of answering 503 while its first connection is a few milliseconds away. */
static int live_count(const pgpool_t *pool)
{
    int n = 0;
    for (int i = 0; i < pool->nconns; i++)
        if (pool->conns[i].state != CONN_DOWN)
            n++;
    return n;
}

/* Fails every queued op when no connection serves or is on its way: callers get 503, never a
 * hang. */
static void fail_queue_if_no_conn(pgpool_t *pool)
{
    if (live_count(pool) > 0)
        return;
    while (!h2o_linklist_is_empty(&pool->queue)) {
        pgpool_op_t *op = H2O_STRUCT_FROM_MEMBER(pgpool_op_t, link, pool->queue.next);
        h2o_linklist_unlink(&op->link);
        pool->queued--;
        op_complete(op, PGPOOL_ERR_CONN);
    }
}

static void on_write_ready(h2o_socket_t *sock, const char *err);

/* Pushes libpq's output buffer; arms a write notification when the kernel buffer is full. */
static int flush(conn_t *c)
{
    int r = PQflush(c->pg);
    if (r < 0)
        return -1;
    if (r > 0 && !c->write_pending && c->sock != NULL) {
        c->write_pending = 1;
        h2o_socket_notify_write(c->sock, on_write_ready);
    }
    return 0;
}

static void on_write_ready(h2o_socket_t *sock, const char *err)
{
    conn_t *c = sock->data;
    c->write_pending = 0;
    if (err != NULL || flush(c) != 0)
        conn_fail(c, "write failed");
}

static void conn_fail(conn_t *c, const char *why)
{
    pgpool_t *pool = c->pool;
    h2o_linklist_t failed;

    if (pool->destroying) {
        /* orderly close: nothing to report */
    } else if (c->state == CONN_READY || c->was_up) {
        log_warn("connection %d to PostgreSQL lost (%s); %d in-flight requests get 503", c->index,
                 why, c->ninflight);
    } else if (!pool->outage_logged) {
        log_warn("cannot connect to PostgreSQL (%s); retrying with backoff", why);
        pool->outage_logged = 1;
    }
    close_sock(c);
    if (c->pg != NULL) {
        PQfinish(c->pg);
        c->pg = NULL;
    }
    /* move first: callbacks may submit again and must not see this connection's ops */
    h2o_linklist_init_anchor(&failed);
    h2o_linklist_insert_list(&failed, &c->inflight);
    c->ninflight = 0;
    c->state = CONN_DOWN;
    c->was_up = 0;
    c->backoff = c->backoff == 0 ? BACKOFF_MIN_MS : c->backoff * 2;
    if (c->backoff > BACKOFF_MAX_MS)
        c->backoff = BACKOFF_MAX_MS;
    c->retry_at = h2o_now(pool->loop) + c->backoff;
    while (!h2o_linklist_is_empty(&failed)) {
        pgpool_op_t *op = H2O_STRUCT_FROM_MEMBER(pgpool_op_t, link, failed.next);
        h2o_linklist_unlink(&op->link);
        op_complete(op, PGPOOL_ERR_CONN);
    }
    if (!pool->destroying)
        fail_queue_if_no_conn(pool);
    publish_gauges(pool);
}

static void send_prepares(conn_t *c)
{
    for (int i = 0; i < PGPOOL_STMT__COUNT; i++) {
        if (!PQsendPrepare(c->pg, stmts[i].name, stmts[i].sql, 0, NULL)) {
            conn_fail(c, "prepare could not be sent");
            return;
        }
    }
    if (!PQpipelineSync(c->pg)) {
        conn_fail(c, "pipeline sync failed");
        return;
    }
    c->state = CONN_PREPARING;
    c->prep_failed = 0;
    c->state_since = h2o_now(c->pool->loop);
    if (flush(c) != 0) {
        conn_fail(c, "flush failed");
        return;
    }
    h2o_socket_read_start(c->sock, on_read);
}

static void on_connect_io(h2o_socket_t *sock, const char *err);

static void connect_step(conn_t *c)
{
    PostgresPollingStatusType st = PQconnectPoll(c->pg);
    if (st == PGRES_POLLING_FAILED) {
        conn_fail(c, "connect failed");
        return;
    }
    if (watch_socket(c) != 0) {
        conn_fail(c, "no socket");
        return;
    }
    switch (st) {
    case PGRES_POLLING_READING:
        h2o_socket_read_start(c->sock, on_connect_io);
        break;
    case PGRES_POLLING_WRITING:
        h2o_socket_read_stop(c->sock);
        if (!c->write_pending) {
            c->write_pending = 1;
            h2o_socket_notify_write(c->sock, on_connect_io);
        }
        break;
    case PGRES_POLLING_OK:
        h2o_socket_read_stop(c->sock);
        if (PQsetnonblocking(c->pg, 1) != 0 || !PQenterPipelineMode(c->pg)) {
            conn_fail(c, "cannot enter pipeline mode");
            return;
        }
        send_prepares(c);
        break;
    default:
        conn_fail(c, "unexpected connect state");
        break;
    }
}

static void on_connect_io(h2o_socket_t *sock, const char *err)
{
    conn_t *c = sock->data;
    c->write_pending = 0;
    if (c->state != CONN_CONNECTING)
        return;
    connect_step(c);
}

static void conn_start(conn_t *c)
{
    c->state = CONN_CONNECTING;
    c->state_since = h2o_now(c->pool->loop);
    c->pg = PQconnectStart(c->pool->conninfo);
    if (c->pg == NULL || PQstatus(c->pg) == CONNECTION_BAD) {
        conn_fail(c, "connect failed");
        return;
    }
    connect_step(c);
}

static bool is_retryable(const PGresult *res)
{
    const char *state;
    if (PQresultStatus(res) != PGRES_FATAL_ERROR)
        return false;
    state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    return state != NULL && (strcmp(state, "40001") == 0 || strcmp(state, "40P01") == 0);
}

/* A finished op: retry serialization failures and deadlocks, else hand the result over. */
static void finish_op(pgpool_t *pool, pgpool_op_t *op)
{
    if (op->res != NULL && is_retryable(op->res) && op->retries < MAX_RETRIES && op->cb != NULL) {
        op->retries++;
        PQclear(op->res);
        op->res = NULL;
        op->phase = 0;
        metrics_inc_db_retry(pool->thread);
        h2o_linklist_insert(pool->queue.next, &op->link); /* front of the queue */
        pool->queued++;
        return;
    }
    op_complete(op, PGPOOL_OK);
}

static void read_results(conn_t *c)
{
    pgpool_t *pool = c->pool;
    int nulls = 0;
    while (c->state == CONN_PREPARING) {
        PGresult *res;
        if (PQisBusy(c->pg))
            return;
        if ((res = PQgetResult(c->pg)) == NULL) {
            /* one NULL ends each prepare's results; two in a row: wait for more input */
            if (++nulls > 1)
                return;
            continue;
        }
        nulls = 0;
        switch (PQresultStatus(res)) {
        case PGRES_PIPELINE_SYNC:
            PQclear(res);
            if (c->prep_failed) {
                conn_fail(c, "statements could not be prepared (schema not migrated?)");
                return;
            }
            c->state = CONN_READY;
            c->backoff = 0;
            c->was_up = 1;
            if (pool->outage_logged) {
                log_info("PostgreSQL connection restored");
                pool->outage_logged = 0;
            }
            metrics_inc_pool_reconnect(pool->thread);
            break;
        case PGRES_COMMAND_OK:
            PQclear(res);
            break;
        default:
            if (!c->prep_failed)
                log_warn("prepare failed: %s", PQresultErrorMessage(res));
            c->prep_failed = 1;
            PQclear(res);
            break;
        }
    }
    while (c->state == CONN_READY && !h2o_linklist_is_empty(&c->inflight)) {
        pgpool_op_t *op = H2O_STRUCT_FROM_MEMBER(pgpool_op_t, link, c->inflight.next);
        PGresult *res;
        if (PQisBusy(c->pg))
            return;
        res = PQgetResult(c->pg);
        switch (op->phase) {
        case 0:
            if (res == NULL)
                return; /* nothing yet: wait for input (never spin) */
            if (PQresultStatus(res) == PGRES_PIPELINE_SYNC) {
                PQclear(res);
                conn_fail(c, "protocol desynchronised");
                return;
            }
            op->res = res;
            op->phase = 1;
            break;
        case 1:
            if (res != NULL) {
                PQclear(res); /* extra result sets: none expected */
                break;
            }
            op->phase = 2;
            break;
        default:
            if (res == NULL)
                return;
            if (PQresultStatus(res) == PGRES_PIPELINE_SYNC) {
                PQclear(res);
                h2o_linklist_unlink(&op->link);
                c->ninflight--;
                finish_op(pool, op);
            } else {
                PQclear(res);
            }
            break;
        }
    }
}

static void on_read(h2o_socket_t *sock, const char *err)
{
    conn_t *c = sock->data;
    if (err != NULL || !PQconsumeInput(c->pg)) {
        conn_fail(c, "read failed");
        return;
    }
    read_results(c);
    if (c->state == CONN_READY || c->state == CONN_PREPARING) {
        if (PQstatus(c->pg) == CONNECTION_BAD) {
            conn_fail(c, "server closed the connection");
        } else if (flush(c) != 0) {
            conn_fail(c, "flush failed");
        }
    }
    pump(c->pool);
}

static conn_t *pick_conn(pgpool_t *pool)
{
    conn_t *best = NULL;
    for (int i = 0; i < pool->nconns; i++) {
        conn_t *c = &pool->conns[i];
        if (c->state != CONN_READY || c->ninflight >= MAX_DEPTH)
            continue;
        if (best == NULL || c->ninflight < best->ninflight)
            best = c;
        if (best->ninflight == 0)
            break;
    }
    return best;
}

static int send_op(conn_t *c, pgpool_op_t *op)
{
    int lengths[PGPOOL_MAX_PARAMS];
    for (int i = 0; i < op->nparams; i++)
        lengths[i] = op->values[i] != NULL ? (int)strlen(op->values[i]) : 0;
    if (!PQsendQueryPrepared(c->pg, stmts[op->stmt].name, op->nparams,
                             (const char *const *)op->values, lengths, NULL,
                             stmts[op->stmt].result_format))
        return -1;
    if (!PQpipelineSync(c->pg))
        return -1;
    return 0;
}

static void pump(pgpool_t *pool)
{
    conn_t *touched[64];
    int ntouched = 0;
    while (!h2o_linklist_is_empty(&pool->queue)) {
        pgpool_op_t *op = H2O_STRUCT_FROM_MEMBER(pgpool_op_t, link, pool->queue.next);
        conn_t *c;
        if (op->cb == NULL) { /* detached while waiting: never send it */
            h2o_linklist_unlink(&op->link);
            pool->queued--;
            op_free(op);
            continue;
        }
        if ((c = pick_conn(pool)) == NULL)
            break;
        h2o_linklist_unlink(&op->link);
        pool->queued--;
        if (send_op(c, op) != 0) {
            h2o_linklist_insert(pool->queue.next, &op->link);
            pool->queued++;
            conn_fail(c, "send failed");
            continue;
        }
        op->phase = 0;
        op->sent_at = h2o_now(pool->loop);
        h2o_linklist_insert(&c->inflight, &op->link);
        c->ninflight++;
        if (ntouched < 64) {
            int seen = 0;
            for (int i = 0; i < ntouched; i++)
                seen |= touched[i] == c;
            if (!seen)
                touched[ntouched++] = c;
        }
    }
    /* one flush per connection: statements queued together go out in one write */
    for (int i = 0; i < ntouched; i++)
        if (touched[i]->state == CONN_READY && flush(touched[i]) != 0)
            conn_fail(touched[i], "flush failed");
    publish_gauges(pool);
}

static void on_tick(h2o_timeout_entry_t *entry)
{
    pgpool_t *pool = H2O_STRUCT_FROM_MEMBER(pgpool_t, tick, entry);
    uint64_t now = h2o_now(pool->loop);

    for (int i = 0; i < pool->nconns; i++) {
        conn_t *c = &pool->conns[i];
        switch (c->state) {
        case CONN_DOWN:
            if (now >= c->retry_at)
                conn_start(c);
            break;
        case CONN_CONNECTING:
        case CONN_PREPARING:
            if (now - c->state_since > CONNECT_TIMEOUT_MS)
                conn_fail(c, "connect timed out");
            break;
        case CONN_READY:
            if (!h2o_linklist_is_empty(&c->inflight)) {
                pgpool_op_t *op = H2O_STRUCT_FROM_MEMBER(pgpool_op_t, link, c->inflight.next);
                if (now - op->sent_at > STMT_TIMEOUT_MS)
                    conn_fail(c, "statement timed out");
            }
            break;
        }
    }
    /* queued requests that waited too long get 503 */
    while (!h2o_linklist_is_empty(&pool->queue)) {
        pgpool_op_t *op = H2O_STRUCT_FROM_MEMBER(pgpool_op_t, link, pool->queue.next);
        if (now - op->queued_at < QUEUE_TIMEOUT_MS)
            break;
        h2o_linklist_unlink(&op->link);
        pool->queued--;
        op_complete(op, PGPOOL_ERR_CONN);
    }
    pump(pool);
    h2o_timeout_link(pool->loop, &pool->tick_timeout, &pool->tick);
}

pgpool_t *pgpool_create(h2o_loop_t *loop, const char *conninfo, int nconns, int thread,
                        size_t queue_max)
{
    pgpool_t *pool = xcalloc(1, sizeof(*pool));
    pool->loop = loop;
    pool->conninfo = xstrdup(conninfo);
    pool->thread = thread;
    pool->nconns = nconns;
    pool->queue_max = queue_max;
    h2o_linklist_init_anchor(&pool->queue);
    pool->conns = xcalloc((size_t)nconns, sizeof(conn_t));
    for (int i = 0; i < nconns; i++) {
        conn_t *c = &pool->conns[i];
        c->pool = pool;
        c->index = i;
        c->sock_fd = -1;
        h2o_linklist_init_anchor(&c->inflight);
        conn_start(c);
    }
    h2o_timeout_init(loop, &pool->tick_timeout, TICK_MS);
    pool->tick.cb = on_tick;
    h2o_timeout_link(loop, &pool->tick_timeout, &pool->tick);
    publish_gauges(pool);
    return pool;
}

void pgpool_destroy(pgpool_t *pool)
{
    if (pool == NULL)
        return;
    pool->destroying = 1;
    if (h2o_timeout_is_linked(&pool->tick))
        h2o_timeout_unlink(&pool->tick);
    for (int i = 0; i < pool->nconns; i++) {
        conn_t *c = &pool->conns[i];
        c->was_up = 0;
        pool->outage_logged = 1; /* no warning lines for an orderly close */
        if (c->state != CONN_DOWN || c->pg != NULL)
            conn_fail(c, "pool closed");
    }
    while (!h2o_linklist_is_empty(&pool->queue)) {
        pgpool_op_t *op = H2O_STRUCT_FROM_MEMBER(pgpool_op_t, link, pool->queue.next);
        h2o_linklist_unlink(&op->link);
        op_complete(op, PGPOOL_ERR_CONN);
    }
    h2o_timeout_dispose(pool->loop, &pool->tick_timeout);
    free(pool->conns);
    free(pool->conninfo);
    free(pool);
}

pgpool_err_t pgpool_submit(pgpool_t *pool, pgpool_stmt_t stmt, int nparams,
                           const char *const *values, pgpool_cb cb, void *data,
                           pgpool_op_t **handle)
{
    pgpool_op_t *op;
    size_t total = 0;
    char *p;

    if (live_count(pool) == 0)
        return PGPOOL_ERR_UNAVAILABLE;
    if (pool->queued >= pool->queue_max) {
        metrics_inc_pool_rejected(pool->thread);
        return PGPOOL_ERR_BUSY;
    }
    assert(nparams <= PGPOOL_MAX_PARAMS);
    for (int i = 0; i < nparams; i++)
        if (values[i] != NULL)
            total += strlen(values[i]) + 1;
    op = xcalloc(1, sizeof(*op) + total);
    p = (char *)(op + 1);
    for (int i = 0; i < nparams; i++) {
        if (values[i] == NULL)
            continue;
        size_t l = strlen(values[i]) + 1;
        memcpy(p, values[i], l);
        op->values[i] = p;
        p += l;
    }
    op->pool = pool;
    op->stmt = stmt;
    op->nparams = nparams;
    op->cb = cb;
    op->data = data;
    op->queued_at = h2o_now(pool->loop);
    h2o_linklist_insert(&pool->queue, &op->link);
    pool->queued++;
    *handle = op;
    pump(pool);
    return PGPOOL_OK;
}

void pgpool_detach(pgpool_op_t *op)
{
    if (op != NULL)
        op->cb = NULL;
}
