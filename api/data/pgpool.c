/*
 * Asynchronous libpq on an h2o evloop. Each connection runs in pipeline mode: every request's
 * statement is sent with its own sync point, so several requests go out in one write and a
 * failing statement never aborts its neighbours. Results arrive strictly in send order.
 */
#include <assert.h>
#include <stdatomic.h>
#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <h2o.h>
#include "api/data/pgpool.h"
#include "api/http/metrics.h"
#include "api/data/pgpool_internal.h"
#include "common/clock.h"
#include "common/db.h"
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
#define READ_SHARE                                                                                 \
    4 /* one connection in READ_SHARE (at least one of two or more) serves reads only */

/*
 * Lanes: reads must not queue behind writes. When writes saturate PostgreSQL (each waits for its
 * commit's WAL flush), a read pipelined behind them on a connection, or queued behind them in
 * the pool, waits for all of them. So reads leave the queue first, go only on connections with
 * no write in flight, and a share of the connections never takes writes; writes take the rest.
 */
enum { LANE_READ = 0, LANE_WRITE, LANE__COUNT };

/* The relay partition of the write's user ($6 in every write statement), for the hint sent after
 * commit: computed by PostgreSQL's own outbox_partition so that it always matches the row's. */
#define WRITE_PARTITION "outbox_partition($6)"

/* readiness fails this long after a statement went missing on the server */
#define STMT_FAILURE_WINDOW_MS 5000

static const struct {
    const char *name;
    const char *sql;
    int result_format; /* 0 text, 1 binary (PQsendQueryPrepared's resultFormat) */
} stmts[PGPOOL_STMT__COUNT] = {
    [PGPOOL_STMT_GET_PROFILE] = {"get_profile",
                                 "SELECT status, body, etag FROM api_get_profile($1)", 0},
    [PGPOOL_STMT_PUT_PROFILE] =
        {"put_profile",
         "SELECT status, body, etag, location, replayed, seq, " WRITE_PARTITION " FROM "
         "api_put_profile($1, $2, decode($3, 'hex'), $4, $5, $6, $7, $8, "
         "$9::jsonb, $10)",
         0},
    [PGPOOL_STMT_WATCHLIST_ADD] =
        {"watchlist_add",
         "SELECT status, body, etag, location, replayed, seq, " WRITE_PARTITION " FROM "
         "api_watchlist_add($1, $2, decode($3, 'hex'), $4, $5, $6, $7)",
         0},
    [PGPOOL_STMT_WATCHLIST_REMOVE] =
        {"watchlist_remove",
         "SELECT status, body, etag, location, replayed, seq, " WRITE_PARTITION " FROM "
         "api_watchlist_remove($1, $2, decode($3, 'hex'), $4, $5, "
         "$6, $7)",
         0},
    [PGPOOL_STMT_HISTORY_ADD] =
        {"history_add",
         "SELECT status, body, etag, location, replayed, seq, " WRITE_PARTITION " FROM "
         "api_history_add($1, $2, decode($3, 'hex'), $4, $5, $6, $7, $8, "
         "$9, $10::timestamptz)",
         0},
    [PGPOOL_STMT_RATING_PUT] =
        {"rating_put",
         "SELECT status, body, etag, location, replayed, seq, " WRITE_PARTITION " FROM "
         "api_rating_put($1, $2, decode($3, 'hex'), $4, $5, $6, $7, $8, "
         "$9)",
         0},
    [PGPOOL_STMT_ERASE_PROFILE] =
        {"erase_profile",
         "SELECT status, body, etag, location, replayed, seq, " WRITE_PARTITION " FROM "
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
    /* One transaction of NOTIFYs, one per partition; its commit need not wait for the WAL flush
     * (a hint is only a wake-up), so the hint session commits asynchronously. */
    [PGPOOL_STMT_OUTBOX_HINT] = {"outbox_hint",
                                 "SELECT count(pg_notify('outbox_new', p::text)) FROM "
                                 "unnest($1::smallint[]) AS p WHERE "
                                 "set_config('synchronous_commit', 'off', true) IS NOT NULL",
                                 0},
};

typedef enum { CONN_DOWN = 0, CONN_CONNECTING, CONN_PREPARING, CONN_READY } conn_state_t;

typedef struct st_conn_t {
    pgpool_t *pool;
    int index;
    conn_state_t state;
    PGconn *pg;
    h2o_socket_t *sock;
    int sock_fd;       /* PQsocket() the h2o socket wraps a dup of */
    ino_t sock_ino;    /* its inode: libpq may reuse the fd number for the next host */
    int write_pending; /* h2o_socket_notify_write armed */
    int prep_failed;
    int not_primary;      /* a statement failed because the server is no writable primary */
    uint64_t state_since; /* ms, for connect/prepare timeouts */
    uint64_t retry_at;    /* CONN_DOWN: when to reconnect */
    uint64_t backoff;
    int was_up;              /* logged "connected" and counted, for reconnect metrics */
    h2o_linklist_t inflight; /* pgpool_op_t, in send order */
    int ninflight;
    int nwrites; /* of them, LANE_WRITE statements */
} conn_t;

struct st_pgpool_op_t {
    h2o_linklist_t link;
    pgpool_t *pool;
    pgpool_stmt_t stmt;
    int lane;
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
    int write_conns; /* conns[0..write_conns-1] take writes; the others only reads */
    h2o_linklist_t queue[LANE__COUNT];
    size_t queued; /* in both queues */
    size_t queue_max;
    h2o_timeout_t tick_timeout;
    h2o_timeout_entry_t tick;
    int destroying;
    int outage_logged;
    int prepared; /* 1: named statements prepared per connection; 0: unnamed (pooler) */
};

/* Process-wide (all threads' pools): when a statement last failed because the server did not
 * know it (monotonic ms, 0 = never). Readiness reads it (pgpool_statements_failing). */
static _Atomic uint64_t stmt_failure_at;

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
    c->sock_ino = 0;
    c->write_pending = 0;
}

static ino_t socket_inode(int fd)
{
    struct stat st;
    return fstat(fd, &st) == 0 ? st.st_ino : 0;
}

/* (Re)wraps PQsocket() in an h2o socket; libpq may switch sockets while connecting (with
 * several hosts in the connection string, the next host's socket may get the same number). */
static int watch_socket(conn_t *c)
{
    int fd = PQsocket(c->pg), dupfd;
    ino_t ino;
    if (fd < 0)
        return -1;
    ino = socket_inode(fd);
    if (c->sock != NULL && c->sock_fd == fd && c->sock_ino == ino)
        return 0;
    close_sock(c);
    if ((dupfd = dup(fd)) < 0)
        return -1;
    c->sock = h2o_evloop_socket_create(c->pool->loop, dupfd, H2O_SOCKET_FLAG_DONT_READ);
    c->sock->data = c;
    c->sock_fd = fd;
    c->sock_ino = ino;
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
    for (int lane = 0; lane < LANE__COUNT; lane++) {
        while (!h2o_linklist_is_empty(&pool->queue[lane])) {
            pgpool_op_t *op = H2O_STRUCT_FROM_MEMBER(pgpool_op_t, link, pool->queue[lane].next);
            h2o_linklist_unlink(&op->link);
            pool->queued--;
            op_complete(op, PGPOOL_ERR_CONN);
        }
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
    c->nwrites = 0;
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

int pgpool_send_prepares(PGconn *pg, int prepared)
{
    /* unnamed mode prepares nothing: the sync alone moves the connection to ready */
    for (int i = 0; prepared && i < PGPOOL_STMT__COUNT; i++)
        if (!PQsendPrepare(pg, stmts[i].name, stmts[i].sql, 0, NULL))
            return -1;
    return 0;
}

int pgpool_send_statement(PGconn *pg, int prepared, pgpool_stmt_t stmt, int nparams,
                          const char *const *values)
{
    int lengths[PGPOOL_MAX_PARAMS];
    for (int i = 0; i < nparams; i++)
        lengths[i] = values[i] != NULL ? (int)strlen(values[i]) : 0;
    if (prepared)
        return PQsendQueryPrepared(pg, stmts[stmt].name, nparams, values, lengths, NULL,
                                   stmts[stmt].result_format)
                   ? 0
                   : -1;
    /* unnamed statement: Parse/Bind/Execute in one go, nothing left on the server afterwards,
     * so any server connection of a transaction-mode pooler can run it */
    return PQsendQueryParams(pg, stmts[stmt].sql, nparams, NULL, values, lengths, NULL,
                             stmts[stmt].result_format)
               ? 0
               : -1;
}

bool pgpool_is_missing_statement(const PGresult *res)
{
    const char *state;
    if (res == NULL || PQresultStatus(res) != PGRES_FATAL_ERROR)
        return false;
    state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    /* 26000 invalid_sql_statement_name ("prepared statement ... does not exist"), 42P05
     * duplicate_prepared_statement: named statements on a server connection that is not ours */
    return state != NULL && (strcmp(state, "26000") == 0 || strcmp(state, "42P05") == 0);
}

/* A statement the server did not know: readiness fails for a while, and one line says why. */
static void note_statement_failure(const PGresult *res)
{
    if (!pgpool_is_missing_statement(res))
        return;
    uint64_t now = (uint64_t)clock_mono_ms(), prev = atomic_exchange(&stmt_failure_at, now);
    const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
    if (prev == 0 || now - prev > STMT_FAILURE_WINDOW_MS) /* once per outage */
        log_error("statements fail on the server (%s); /health/ready reports 503 (behind a "
                  "pooler in transaction mode set PG_PREPARED_STATEMENTS=off)",
                  msg != NULL ? msg : "no message");
}

bool pgpool_statements_failing(void)
{
    uint64_t at = atomic_load(&stmt_failure_at);
    if (at == 0 || (uint64_t)clock_mono_ms() - at > STMT_FAILURE_WINDOW_MS)
        return false;
    return true;
}

void pgpool_set_prepared(pgpool_t *pool, bool prepared)
{
    pool->prepared = prepared;
}

static void send_prepares(conn_t *c)
{
    if (pgpool_send_prepares(c->pg, c->pool->prepared) != 0) {
        conn_fail(c, "prepare could not be sent");
        return;
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
    c->not_primary = 0;
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

/* The statement failed because its server is no writable primary (read-only, a standby, going
 * down): the connection is of no further use. */
static bool is_failover(const PGresult *res)
{
    return PQresultStatus(res) == PGRES_FATAL_ERROR &&
           db_sqlstate_is_failover(PQresultErrorField(res, PG_DIAG_SQLSTATE));
}

/* Refused as read-only (25006) before it wrote anything, so it may run again on another
 * connection. Not so a shutdown (57P01): its commit may have happened (a synchronous-commit wait
 * cut short), and the retry is the client's, with its Idempotency-Key. */
static bool is_read_only_refusal(const PGresult *res)
{
    const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    return PQresultStatus(res) == PGRES_FATAL_ERROR && state != NULL && strcmp(state, "25006") == 0;
}

/* A finished op: retry serialization failures, deadlocks and read-only refusals, else hand the
 * result over. A failover error (once out of retries) is a connection error (503), not a
 * statement error. */
static void finish_op(pgpool_t *pool, pgpool_op_t *op)
{
    note_statement_failure(op->res);
    bool failover = op->res != NULL && is_failover(op->res);
    if (op->res != NULL && (is_retryable(op->res) || is_read_only_refusal(op->res)) &&
        op->retries < MAX_RETRIES && op->cb != NULL) {
        op->retries++;
        PQclear(op->res);
        op->res = NULL;
        op->phase = 0;
        metrics_count(pool->thread, METRICS_DB_RETRY);
        h2o_linklist_insert(pool->queue[op->lane].next, &op->link); /* front of its queue */
        pool->queued++;
        return;
    }
    op_complete(op, failover ? PGPOOL_ERR_CONN : PGPOOL_OK);
}

/* Long (85 lines): one reader for both connection phases (prepare, then pipelined statements). */
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
            metrics_count(pool->thread, METRICS_POOL_RECONNECT);
            break;
        case PGRES_COMMAND_OK:
            PQclear(res);
            break;
        default:
            note_statement_failure(res); /* "already exists": a server connection not ours */
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
            if (is_failover(res))
                c->not_primary = 1;
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
                if (op->lane == LANE_WRITE)
                    c->nwrites--;
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
    /* A demoted or recovering server must not keep a pooled connection: drop it, and the
     * reconnect (target_session_attrs=read-write) finds the current primary. */
    if (c->state == CONN_READY && (c->not_primary || db_conn_read_only(c->pg))) {
        pgpool_t *pool = c->pool;
        conn_fail(c, "the server is not a writable primary (read-only, standby or recovering)");
        /* Its idle siblings sit on the same server and would only learn it from a statement of
         * their own (a connection of the read lane may wait long for one): drop them too. */
        for (int i = 0; i < pool->nconns; i++) {
            conn_t *o = &pool->conns[i];
            if (o != c && o->state == CONN_READY && o->ninflight == 0)
                conn_fail(o, "another connection found the server not a writable primary");
        }
        pump(pool);
        return;
    }
    if (c->state == CONN_READY || c->state == CONN_PREPARING) {
        if (PQstatus(c->pg) == CONNECTION_BAD) {
            conn_fail(c, "server closed the connection");
        } else if (flush(c) != 0) {
            conn_fail(c, "flush failed");
        }
    }
    pump(c->pool);
}

static int lane_of(pgpool_stmt_t stmt)
{
    switch (stmt) {
    case PGPOOL_STMT_PUT_PROFILE:
    case PGPOOL_STMT_WATCHLIST_ADD:
    case PGPOOL_STMT_WATCHLIST_REMOVE:
    case PGPOOL_STMT_HISTORY_ADD:
    case PGPOOL_STMT_RATING_PUT:
    case PGPOOL_STMT_IDEM_CLEANUP:
    case PGPOOL_STMT_OUTBOX_HINT:
        return LANE_WRITE;
    default:
        return LANE_READ;
    }
}

/* The least loaded connection that may take a statement of `lane` now, or NULL. */
static conn_t *pick_conn(pgpool_t *pool, int lane)
{
    conn_t *best = NULL;
    int n = lane == LANE_WRITE ? pool->write_conns : pool->nconns;
    for (int i = 0; i < n; i++) {
        conn_t *c = &pool->conns[i];
        if (c->state != CONN_READY || c->ninflight >= MAX_DEPTH)
            continue;
        if (lane == LANE_READ && c->nwrites > 0 && pool->write_conns < pool->nconns)
            continue; /* it would wait for those writes' commits: a read-only one will do */
        if (best == NULL || c->ninflight < best->ninflight)
            best = c;
        if (best->ninflight == 0)
            break;
    }
    return best;
}

static int send_op(conn_t *c, pgpool_op_t *op)
{
    if (pgpool_send_statement(c->pg, c->pool->prepared, op->stmt, op->nparams,
                              (const char *const *)op->values) != 0)
        return -1;
    if (!PQpipelineSync(c->pg))
        return -1;
    return 0;
}

static void pump(pgpool_t *pool)
{
    conn_t *touched[64];
    int ntouched = 0;
    /* reads first: a read never waits in the queue behind a write */
    for (int lane = 0; lane < LANE__COUNT; lane++) {
        while (!h2o_linklist_is_empty(&pool->queue[lane])) {
            pgpool_op_t *op = H2O_STRUCT_FROM_MEMBER(pgpool_op_t, link, pool->queue[lane].next);
            conn_t *c;
            if (op->cb == NULL) { /* detached while waiting: never send it */
                h2o_linklist_unlink(&op->link);
                pool->queued--;
                op_free(op);
                continue;
            }
            if ((c = pick_conn(pool, lane)) == NULL)
                break;
            h2o_linklist_unlink(&op->link);
            pool->queued--;
            if (send_op(c, op) != 0) {
                h2o_linklist_insert(pool->queue[lane].next, &op->link);
                pool->queued++;
                conn_fail(c, "send failed");
                continue;
            }
            op->phase = 0;
            op->sent_at = h2o_now(pool->loop);
            h2o_linklist_insert(&c->inflight, &op->link);
            c->ninflight++;
            if (lane == LANE_WRITE)
                c->nwrites++;
            if (ntouched < 64) {
                int seen = 0;
                for (int i = 0; i < ntouched; i++)
                    seen |= touched[i] == c;
                if (!seen)
                    touched[ntouched++] = c;
            }
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
    for (int lane = 0; lane < LANE__COUNT; lane++) {
        while (!h2o_linklist_is_empty(&pool->queue[lane])) {
            pgpool_op_t *op = H2O_STRUCT_FROM_MEMBER(pgpool_op_t, link, pool->queue[lane].next);
            if (now - op->queued_at < QUEUE_TIMEOUT_MS)
                break;
            h2o_linklist_unlink(&op->link);
            pool->queued--;
            op_complete(op, PGPOOL_ERR_CONN);
        }
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
    pool->prepared = 1;
    pool->write_conns =
        nconns - (nconns >= 2 ? (nconns / READ_SHARE > 0 ? nconns / READ_SHARE : 1) : 0);
    for (int lane = 0; lane < LANE__COUNT; lane++)
        h2o_linklist_init_anchor(&pool->queue[lane]);
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
    for (int lane = 0; lane < LANE__COUNT; lane++) {
        while (!h2o_linklist_is_empty(&pool->queue[lane])) {
            pgpool_op_t *op = H2O_STRUCT_FROM_MEMBER(pgpool_op_t, link, pool->queue[lane].next);
            h2o_linklist_unlink(&op->link);
            op_complete(op, PGPOOL_ERR_CONN);
        }
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
        metrics_count(pool->thread, METRICS_POOL_REJECTED);
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
    op->lane = lane_of(stmt);
    op->nparams = nparams;
    op->cb = cb;
    op->data = data;
    op->queued_at = h2o_now(pool->loop);
    h2o_linklist_insert(&pool->queue[op->lane], &op->link);
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
