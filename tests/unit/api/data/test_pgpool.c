/*
 * api/data/pgpool.c behind a fake libpq: this file defines the PQ* functions the pool calls (the
 * executable's definitions win over the shared libpq), scripts the results PQgetResult hands
 * out, and drives the pool's callbacks (on_read, on_tick) directly on a real h2o loop.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <sys/socket.h>

#include "api/data/pgpool.c"

/* ---- the fake libpq ---- */

struct pg_result {
    ExecStatusType status;
    char sqlstate[8]; /* "" for none */
};

struct pg_conn {
    int fd;
};

#define SCRIPT_MAX 256
#define SENT_MAX 64

static struct {
    int sv[2]; /* PQsocket() is sv[0]; sv[1] stays open so the fd is valid */
    struct pg_conn conn;
    bool connect_start_fails; /* PQconnectStart returns NULL */
    PostgresPollingStatusType poll;
    bool consume_fails;
    bool send_fails;
    int finished; /* PQfinish calls */
    int prepares; /* PQsendPrepare calls */
    /* PQgetResult hands these out in order; NULL entries are PQgetResult's NULL */
    PGresult *script[SCRIPT_MAX];
    int head, tail;
    /* what PQsendQueryPrepared was given */
    int nsent;
    char sent_name[SENT_MAX][32];
    int sent_nparams[SENT_MAX];
    char sent_first[SENT_MAX][64];
    int live_results; /* created and not yet cleared */
} fake;

static PGresult *new_result(ExecStatusType st, const char *sqlstate)
{
    PGresult *r = calloc(1, sizeof(*r));
    r->status = st;
    snprintf(r->sqlstate, sizeof(r->sqlstate), "%s", sqlstate != NULL ? sqlstate : "");
    fake.live_results++;
    return r;
}

static void script(PGresult *r)
{
    assert_true(fake.tail < SCRIPT_MAX);
    fake.script[fake.tail++] = r;
}

PGconn *PQconnectStart(const char *conninfo)
{
    return fake.connect_start_fails ? NULL : &fake.conn;
}

ConnStatusType PQstatus(const PGconn *conn)
{
    return CONNECTION_OK;
}

PostgresPollingStatusType PQconnectPoll(PGconn *conn)
{
    return fake.poll;
}

/* a writable primary: reports neither in_hot_standby nor default_transaction_read_only */
const char *PQparameterStatus(const PGconn *conn, const char *name)
{
    return NULL;
}

int PQsocket(const PGconn *conn)
{
    return fake.sv[0];
}

int PQsetnonblocking(PGconn *conn, int arg)
{
    return 0;
}

int PQenterPipelineMode(PGconn *conn)
{
    return 1;
}

int PQsendPrepare(PGconn *conn, const char *name, const char *query, int nparams, const Oid *types)
{
    fake.prepares++;
    return 1;
}

int PQpipelineSync(PGconn *conn)
{
    return 1;
}

int PQflush(PGconn *conn)
{
    return 0;
}

int PQsendQueryPrepared(PGconn *conn, const char *name, int nparams, const char *const *values,
                        const int *lengths, const int *formats, int result_format)
{
    if (fake.send_fails)
        return 0;
    assert_true(fake.nsent < SENT_MAX);
    snprintf(fake.sent_name[fake.nsent], sizeof(fake.sent_name[0]), "%s", name);
    fake.sent_nparams[fake.nsent] = nparams;
    snprintf(fake.sent_first[fake.nsent], sizeof(fake.sent_first[0]), "%s",
             nparams > 0 && values[0] != NULL ? values[0] : "(null)");
    fake.nsent++;
    return 1;
}

int PQconsumeInput(PGconn *conn)
{
    return fake.consume_fails ? 0 : 1;
}

int PQisBusy(PGconn *conn)
{
    return 0;
}

PGresult *PQgetResult(PGconn *conn)
{
    return fake.head < fake.tail ? fake.script[fake.head++] : NULL;
}

ExecStatusType PQresultStatus(const PGresult *res)
{
    return res->status;
}

char *PQresultErrorField(const PGresult *res, int field)
{
    if (field != PG_DIAG_SQLSTATE || res->sqlstate[0] == '\0')
        return NULL;
    /* libpq's prototype hands out char * into the result it owns */
    return ((PGresult *)(uintptr_t)res)->sqlstate;
}

char *PQresultErrorMessage(const PGresult *res)
{
    static char msg[] = "fake error";
    return msg;
}

void PQclear(PGresult *res)
{
    if (res == NULL)
        return;
    fake.live_results--;
    free(res);
}

void PQfinish(PGconn *conn)
{
    fake.finished++;
}

/* ---- helpers ---- */

typedef struct {
    int calls;
    pgpool_err_t err;
    ExecStatusType status; /* of the result handed over, when err == PGPOOL_OK */
    bool had_res;
} outcome_t;

static pgpool_t *live_pool; /* the test's pool until it destroys it */
static bool tearing_down;   /* a failed test left its pool: its outcomes are out of scope */

static void on_done(void *data, const PGresult *res, pgpool_err_t err)
{
    outcome_t *o = data;
    if (tearing_down)
        return;
    o->calls++;
    o->err = err;
    o->had_res = res != NULL;
    if (res != NULL)
        o->status = PQresultStatus(res);
}

static h2o_evloop_t *loop;

static pgpool_t *create_pool(int nconns, size_t queue_max)
{
    return live_pool = pgpool_create(loop, "host=fake", nconns, 0, queue_max);
}

static void destroy_pool(pgpool_t *pool)
{
    live_pool = NULL;
    pgpool_destroy(pool);
}

static int setup(void **state)
{
    memset(&fake, 0, sizeof(fake));
    fake.poll = PGRES_POLLING_OK;
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, fake.sv), 0);
    fake.conn.fd = fake.sv[0];
    loop = h2o_evloop_create();
    return 0;
}

static int teardown(void **state)
{
    if (live_pool != NULL) { /* the test failed before destroying it */
        tearing_down = true;
        pgpool_destroy(live_pool);
        live_pool = NULL;
        tearing_down = false;
    }
    while (fake.head < fake.tail)
        PQclear(fake.script[fake.head++]);
    h2o_evloop_run(loop, 0); /* lets h2o finish closing sockets */
    h2o_evloop_destroy(loop);
    close(fake.sv[0]);
    close(fake.sv[1]);
    assert_int_equal(fake.live_results, 0); /* the pool clears every result it took */
    return 0;
}

/* The prepare round of one connection: a COMMAND_OK and a NULL per statement, then the sync. */
static void script_prepares(const char *fail_sqlstate)
{
    for (int i = 0; i < PGPOOL_STMT__COUNT; i++) {
        if (i == 0 && fail_sqlstate != NULL)
            script(new_result(PGRES_FATAL_ERROR, fail_sqlstate));
        else
            script(new_result(PGRES_COMMAND_OK, NULL));
        script(NULL);
    }
    script(new_result(PGRES_PIPELINE_SYNC, NULL));
}

/* One statement's results in pipeline mode: its result, the NULL that ends it, the sync. */
static void script_statement(ExecStatusType st, const char *sqlstate)
{
    script(new_result(st, sqlstate));
    script(NULL);
    script(new_result(PGRES_PIPELINE_SYNC, NULL));
}

static void readable(pgpool_t *pool, int conn)
{
    on_read(pool->conns[conn].sock, NULL);
}

static pgpool_t *ready_pool(int nconns, size_t queue_max)
{
    pgpool_t *pool = create_pool(nconns, queue_max);
    for (int i = 0; i < nconns; i++) {
        script_prepares(NULL);
        readable(pool, i);
    }
    assert_int_equal(pgpool_ready_count(pool), nconns);
    return pool;
}

/* Runs the housekeeping tick now (it is linked while the pool lives). */
static void tick(pgpool_t *pool)
{
    h2o_timeout_unlink(&pool->tick);
    on_tick(&pool->tick);
}

/* ---- tests ---- */

static void test_connect_prepare_ready(void **state)
{
    pgpool_t *pool = create_pool(2, 4);
    const char *v[1] = {"u1"};
    outcome_t o = {0};
    pgpool_op_t *h;

    /* connected, statements sent for preparing, not ready until the sync comes back */
    assert_int_equal(fake.prepares, 2 * PGPOOL_STMT__COUNT);
    assert_int_equal(pool->conns[0].state, CONN_PREPARING);
    assert_int_equal(pgpool_ready_count(pool), 0);
    /* a starting pool queues the request instead of answering 503 */
    assert_int_equal(pgpool_submit(pool, PGPOOL_STMT_GET_PROFILE, 1, v, on_done, &o, &h),
                     PGPOOL_OK);
    assert_int_equal(fake.nsent, 0);
    script_prepares(NULL);
    readable(pool, 0);
    assert_int_equal(pgpool_ready_count(pool), 1);
    assert_int_equal(pool->conns[0].backoff, 0);
    assert_int_equal(fake.nsent, 1); /* sent as soon as the connection is ready */
    destroy_pool(pool);
    assert_int_equal(o.calls, 1); /* the pool closed under it: a 503, never a hang */
    assert_int_equal(o.err, PGPOOL_ERR_CONN);
}

static void test_all_down_refuses_at_submit(void **state)
{
    pgpool_t *pool = create_pool(1, 4);
    const char *v[1] = {"u1"};
    outcome_t o = {0};
    pgpool_op_t *h;

    /* queued while the only connection prepares, then that connection fails: the queue is
     * answered at once rather than after the queue timeout */
    assert_int_equal(pgpool_submit(pool, PGPOOL_STMT_GET_PROFILE, 1, v, on_done, &o, &h),
                     PGPOOL_OK);
    script_prepares("42883");
    readable(pool, 0);
    assert_int_equal(pool->conns[0].state, CONN_DOWN);
    assert_int_equal(o.calls, 1);
    assert_int_equal(o.err, PGPOOL_ERR_CONN);
    /* nothing serves and nothing is on its way: refused at submit */
    assert_int_equal(pgpool_submit(pool, PGPOOL_STMT_GET_PROFILE, 1, v, on_done, &o, &h),
                     PGPOOL_ERR_UNAVAILABLE);
    assert_int_equal(o.calls, 1);
    destroy_pool(pool);
}

static void test_prepare_failure_drops_connection(void **state)
{
    pgpool_t *pool = create_pool(1, 4);

    script_prepares("42883"); /* e.g. a function missing: schema not migrated */
    readable(pool, 0);
    assert_int_equal(pool->conns[0].state, CONN_DOWN);
    assert_int_equal(pool->conns[0].backoff, BACKOFF_MIN_MS);
    assert_int_equal(fake.finished, 1);
    assert_int_equal(pgpool_ready_count(pool), 0);
    destroy_pool(pool);
}

static void test_submit_copies_params_and_completes(void **state)
{
    pgpool_t *pool = ready_pool(1, 4);
    char user[8] = "alice";
    const char *v[3] = {user, NULL, "x"};
    outcome_t o = {0};
    pgpool_op_t *h = NULL;

    assert_int_equal(pgpool_submit(pool, PGPOOL_STMT_WATCHLIST_ADD, 3, v, on_done, &o, &h),
                     PGPOOL_OK);
    assert_non_null(h);
    strcpy(user, "mallory"); /* the pool copied the values at submit */
    assert_int_equal(fake.nsent, 1);
    assert_string_equal(fake.sent_name[0], "watchlist_add");
    assert_int_equal(fake.sent_nparams[0], 3);
    assert_string_equal(fake.sent_first[0], "alice");
    assert_string_equal(h->values[0], "alice");
    assert_null(h->values[1]);
    assert_int_equal(pool->conns[0].ninflight, 1);
    assert_int_equal(o.calls, 0);

    script_statement(PGRES_TUPLES_OK, NULL);
    readable(pool, 0);
    assert_int_equal(o.calls, 1);
    assert_int_equal(o.err, PGPOOL_OK);
    assert_true(o.had_res);
    assert_int_equal(o.status, PGRES_TUPLES_OK);
    assert_int_equal(pool->conns[0].ninflight, 0);
    destroy_pool(pool);
    assert_int_equal(o.calls, 1); /* exactly once */
}

static void test_results_in_send_order(void **state)
{
    pgpool_t *pool = ready_pool(1, 4);
    const char *v[1] = {"u"};
    outcome_t a = {0}, b = {0};
    pgpool_op_t *h;

    assert_int_equal(pgpool_submit(pool, PGPOOL_STMT_GET_PROFILE, 1, v, on_done, &a, &h),
                     PGPOOL_OK);
    assert_int_equal(pgpool_submit(pool, PGPOOL_STMT_GET_PROFILE, 1, v, on_done, &b, &h),
                     PGPOOL_OK);
    /* the first statement failed, the second did not: the failure stays with the first */
    script_statement(PGRES_FATAL_ERROR, "23505");
    readable(pool, 0);
    assert_int_equal(a.calls, 1);
    assert_int_equal(a.status, PGRES_FATAL_ERROR);
    assert_int_equal(b.calls, 0);
    script_statement(PGRES_TUPLES_OK, NULL);
    readable(pool, 0);
    assert_int_equal(b.calls, 1);
    assert_int_equal(b.status, PGRES_TUPLES_OK);
    destroy_pool(pool);
}

static void test_queue_when_connections_full(void **state)
{
    pgpool_t *pool = ready_pool(1, 2);
    const char *v[1] = {"u"};
    outcome_t o[MAX_DEPTH + 3];
    pgpool_op_t *h;

    memset(o, 0, sizeof(o));
    for (int i = 0; i < MAX_DEPTH; i++)
        assert_int_equal(pgpool_submit(pool, PGPOOL_STMT_GET_PROFILE, 1, v, on_done, &o[i], &h),
                         PGPOOL_OK);
    assert_int_equal(fake.nsent, MAX_DEPTH);
    assert_int_equal(pool->queued, 0);
    /* the connection is at its depth: two more wait in the queue, the next is refused */
    assert_int_equal(pgpool_submit(pool, PGPOOL_STMT_GET_PROFILE, 1, v, on_done, &o[MAX_DEPTH], &h),
                     PGPOOL_OK);
    assert_int_equal(
        pgpool_submit(pool, PGPOOL_STMT_GET_PROFILE, 1, v, on_done, &o[MAX_DEPTH + 1], &h),
        PGPOOL_OK);
    assert_int_equal(pool->queued, 2);
    assert_int_equal(fake.nsent, MAX_DEPTH);
    assert_int_equal(
        pgpool_submit(pool, PGPOOL_STMT_GET_PROFILE, 1, v, on_done, &o[MAX_DEPTH + 2], &h),
        PGPOOL_ERR_BUSY);
    /* one result frees a slot: the oldest queued statement goes out */
    script_statement(PGRES_TUPLES_OK, NULL);
    readable(pool, 0);
    assert_int_equal(o[0].calls, 1);
    assert_int_equal(pool->queued, 1);
    assert_int_equal(fake.nsent, MAX_DEPTH + 1);
    destroy_pool(pool);
    for (int i = 1; i < MAX_DEPTH + 2; i++) {
        assert_int_equal(o[i].calls, 1); /* in flight or queued: 503 at close */
        assert_int_equal(o[i].err, PGPOOL_ERR_CONN);
    }
    assert_int_equal(o[MAX_DEPTH + 2].calls, 0);
}

static void test_least_loaded_connection(void **state)
{
    pgpool_t *pool = ready_pool(2, 4);
    const char *v[1] = {"u"};
    outcome_t o[3];
    pgpool_op_t *h;

    memset(o, 0, sizeof(o));
    for (int i = 0; i < 3; i++)
        assert_int_equal(pgpool_submit(pool, PGPOOL_STMT_GET_PROFILE, 1, v, on_done, &o[i], &h),
                         PGPOOL_OK);
    assert_int_equal(pool->conns[0].ninflight, 2);
    assert_int_equal(pool->conns[1].ninflight, 1);
    destroy_pool(pool);
}

static void test_detached_ops(void **state)
{
    pgpool_t *pool = ready_pool(1, 4);
    const char *v[1] = {"u"};
    outcome_t o[MAX_DEPTH + 1];
    pgpool_op_t *h[MAX_DEPTH + 1];

    memset(o, 0, sizeof(o));
    for (int i = 0; i <= MAX_DEPTH; i++)
        assert_int_equal(pgpool_submit(pool, PGPOOL_STMT_GET_PROFILE, 1, v, on_done, &o[i], &h[i]),
                         PGPOOL_OK);
    assert_int_equal(pool->queued, 1);
    pgpool_detach(h[0]);         /* in flight: the result is consumed and dropped */
    pgpool_detach(h[MAX_DEPTH]); /* queued: never sent */
    pgpool_detach(NULL);         /* NULL-safe */
    script_statement(PGRES_TUPLES_OK, NULL);
    readable(pool, 0);
    assert_int_equal(o[0].calls, 0);
    assert_int_equal(pool->queued, 0);
    assert_int_equal(fake.nsent, MAX_DEPTH); /* the detached queued one was dropped */
    destroy_pool(pool);
    assert_int_equal(o[MAX_DEPTH].calls, 0);
}

static void test_connection_lost_fails_inflight_and_queue(void **state)
{
    pgpool_t *pool = ready_pool(1, 4);
    const char *v[1] = {"u"};
    outcome_t o[MAX_DEPTH + 1];
    pgpool_op_t *h;

    memset(o, 0, sizeof(o));
    for (int i = 0; i <= MAX_DEPTH; i++)
        assert_int_equal(pgpool_submit(pool, PGPOOL_STMT_GET_PROFILE, 1, v, on_done, &o[i], &h),
                         PGPOOL_OK);
    fake.consume_fails = true;
    readable(pool, 0);
    fake.consume_fails = false;
    assert_int_equal(pool->conns[0].state, CONN_DOWN);
    /* in flight and queued alike get a 503: no connection is left to serve the queue */
    for (int i = 0; i <= MAX_DEPTH; i++) {
        assert_int_equal(o[i].calls, 1);
        assert_int_equal(o[i].err, PGPOOL_ERR_CONN);
        assert_false(o[i].had_res);
    }
    assert_int_equal(pool->queued, 0);
    assert_int_equal(pgpool_submit(pool, PGPOOL_STMT_GET_PROFILE, 1, v, on_done, &o[0], &h),
                     PGPOOL_ERR_UNAVAILABLE);
    destroy_pool(pool);
}

static void test_reconnect_with_backoff(void **state)
{
    pgpool_t *pool = ready_pool(1, 4);
    conn_t *c = &pool->conns[0];
    uint64_t expect = BACKOFF_MIN_MS;

    fake.consume_fails = true;
    readable(pool, 0);
    fake.consume_fails = false;
    assert_int_equal(c->state, CONN_DOWN);
    assert_int_equal(c->backoff, BACKOFF_MIN_MS);
    /* before retry_at the tick leaves it down */
    c->retry_at = h2o_now(loop) + 60000;
    tick(pool);
    assert_int_equal(c->state, CONN_DOWN);
    /* failing connects double the backoff up to its cap */
    fake.poll = PGRES_POLLING_FAILED;
    for (int i = 0; i < 8; i++) {
        c->retry_at = 0;
        tick(pool);
        expect = expect * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : expect * 2;
        assert_int_equal(c->state, CONN_DOWN);
        assert_int_equal(c->backoff, expect);
    }
    assert_int_equal(c->backoff, BACKOFF_MAX_MS);
    /* the server is back: connect, prepare, ready, and the backoff starts over */
    fake.poll = PGRES_POLLING_OK;
    c->retry_at = 0;
    tick(pool);
    assert_int_equal(c->state, CONN_PREPARING);
    script_prepares(NULL);
    readable(pool, 0);
    assert_int_equal(c->state, CONN_READY);
    assert_int_equal(c->backoff, 0);
    destroy_pool(pool);
}

static void test_connect_start_failure(void **state)
{
    pgpool_t *pool;

    fake.connect_start_fails = true;
    pool = create_pool(1, 4);
    assert_int_equal(pool->conns[0].state, CONN_DOWN);
    assert_int_equal(pool->conns[0].backoff, BACKOFF_MIN_MS);
    assert_int_equal(pgpool_ready_count(pool), 0);
    destroy_pool(pool);
}

static void test_serialization_failure_retried(void **state)
{
    pgpool_t *pool = ready_pool(1, 4);
    const char *v[1] = {"u"};
    outcome_t o = {0};
    pgpool_op_t *h;

    assert_int_equal(pgpool_submit(pool, PGPOOL_STMT_RATING_PUT, 1, v, on_done, &o, &h), PGPOOL_OK);
    /* 40001 and 40P01 go back to the front of the queue and are sent again */
    for (int i = 0; i < MAX_RETRIES; i++) {
        script_statement(PGRES_FATAL_ERROR, i % 2 == 0 ? "40001" : "40P01");
        readable(pool, 0);
        assert_int_equal(o.calls, 0);
        assert_int_equal(fake.nsent, 2 + i);
        assert_string_equal(fake.sent_name[1 + i], "rating_put");
    }
    /* out of retries: the caller gets the error result */
    script_statement(PGRES_FATAL_ERROR, "40001");
    readable(pool, 0);
    assert_int_equal(o.calls, 1);
    assert_int_equal(o.err, PGPOOL_OK);
    assert_int_equal(o.status, PGRES_FATAL_ERROR);
    assert_int_equal(fake.nsent, 1 + MAX_RETRIES);
    destroy_pool(pool);
}

static void test_other_errors_not_retried(void **state)
{
    pgpool_t *pool = ready_pool(1, 4);
    const char *v[1] = {"u"};
    outcome_t o = {0};
    pgpool_op_t *h;

    assert_int_equal(pgpool_submit(pool, PGPOOL_STMT_RATING_PUT, 1, v, on_done, &o, &h), PGPOOL_OK);
    script_statement(PGRES_FATAL_ERROR, "23505");
    readable(pool, 0);
    assert_int_equal(o.calls, 1);
    assert_int_equal(o.status, PGRES_FATAL_ERROR);
    assert_int_equal(fake.nsent, 1);
    destroy_pool(pool);
}

static void test_timeouts(void **state)
{
    pgpool_t *pool = ready_pool(2, 4);
    const char *v[1] = {"u"};
    outcome_t o[2 * MAX_DEPTH + 1];
    pgpool_op_t *h;
    pgpool_op_t *queued;

    memset(o, 0, sizeof(o));
    for (int i = 0; i <= 2 * MAX_DEPTH; i++)
        assert_int_equal(pgpool_submit(pool, PGPOOL_STMT_GET_PROFILE, 1, v, on_done, &o[i], &h),
                         PGPOOL_OK);
    queued = h;
    assert_int_equal(pool->queued, 1);
    /* a queued statement that waited too long gets 503 */
    queued->queued_at = h2o_now(loop) - QUEUE_TIMEOUT_MS;
    tick(pool);
    assert_int_equal(o[2 * MAX_DEPTH].calls, 1);
    assert_int_equal(o[2 * MAX_DEPTH].err, PGPOOL_ERR_CONN);
    assert_int_equal(pool->queued, 0);
    /* a statement without a result for too long breaks its connection only */
    {
        pgpool_op_t *first =
            H2O_STRUCT_FROM_MEMBER(pgpool_op_t, link, pool->conns[0].inflight.next);
        first->sent_at = h2o_now(loop) - STMT_TIMEOUT_MS - 1;
    }
    tick(pool);
    assert_int_equal(pool->conns[0].state, CONN_DOWN);
    assert_int_equal(pool->conns[1].state, CONN_READY);
    for (int i = 0; i < 2 * MAX_DEPTH; i++)
        assert_int_equal(o[i].calls, i % 2 == 0 ? 1 : 0); /* conn 0 took the even ones */
    destroy_pool(pool);
}

static void test_connect_timeout(void **state)
{
    pgpool_t *pool = create_pool(1, 4);
    assert_int_equal(pool->conns[0].state, CONN_PREPARING);
    pool->conns[0].state_since = h2o_now(loop) - CONNECT_TIMEOUT_MS - 1;
    tick(pool);
    assert_int_equal(pool->conns[0].state, CONN_DOWN);
    destroy_pool(pool);
}

static void test_send_failure(void **state)
{
    pgpool_t *pool = ready_pool(1, 4);
    const char *v[1] = {"u"};
    outcome_t o = {0};
    pgpool_op_t *h;

    fake.send_fails = true;
    /* the send fails: the connection is dropped, and with none left the statement gets 503 */
    assert_int_equal(pgpool_submit(pool, PGPOOL_STMT_GET_PROFILE, 1, v, on_done, &o, &h),
                     PGPOOL_OK);
    assert_int_equal(pool->conns[0].state, CONN_DOWN);
    assert_int_equal(o.calls, 1);
    assert_int_equal(o.err, PGPOOL_ERR_CONN);
    destroy_pool(pool);
}

static const char *wv[7] = {"caller", NULL, NULL, "60", NULL, "u", "v"};

static pgpool_err_t submit_write(pgpool_t *pool, outcome_t *o)
{
    pgpool_op_t *h;
    return pgpool_submit(pool, PGPOOL_STMT_WATCHLIST_ADD, 7, wv, on_done, o, &h);
}

static pgpool_err_t submit_read(pgpool_t *pool, outcome_t *o)
{
    const char *v[1] = {"u"};
    pgpool_op_t *h;
    return pgpool_submit(pool, PGPOOL_STMT_GET_PROFILE, 1, v, on_done, o, &h);
}

static void test_lanes_reads_keep_connections_of_their_own(void **state)
{
    pgpool_t *pool = ready_pool(4, 8); /* one in four serves reads only */
    outcome_t o[3 * MAX_DEPTH + 2];

    memset(o, 0, sizeof(o));
    assert_int_equal(pool->write_conns, 3);
    /* writes fill their three connections; the next one waits although conn 3 is idle */
    for (int i = 0; i < 3 * MAX_DEPTH + 1; i++)
        assert_int_equal(submit_write(pool, &o[i]), PGPOOL_OK);
    assert_int_equal(fake.nsent, 3 * MAX_DEPTH);
    assert_int_equal(pool->queued, 1);
    assert_int_equal(pool->conns[3].ninflight, 0);
    /* a read goes out at once, on the read-only connection */
    assert_int_equal(submit_read(pool, &o[3 * MAX_DEPTH + 1]), PGPOOL_OK);
    assert_int_equal(fake.nsent, 3 * MAX_DEPTH + 1);
    assert_string_equal(fake.sent_name[3 * MAX_DEPTH], "get_profile");
    assert_int_equal(pool->conns[3].ninflight, 1);
    assert_int_equal(pool->queued, 1);
    /* its result comes back while every write is still waiting for its commit */
    script_statement(PGRES_TUPLES_OK, NULL);
    readable(pool, 3);
    assert_int_equal(o[3 * MAX_DEPTH + 1].calls, 1);
    assert_int_equal(o[0].calls, 0);
    destroy_pool(pool);
}

static void test_lanes_reads_not_pipelined_behind_writes(void **state)
{
    pgpool_t *pool = ready_pool(2, 8); /* conn 0 takes writes, conn 1 reads only */
    outcome_t o[4];

    memset(o, 0, sizeof(o));
    assert_int_equal(submit_read(pool, &o[0]), PGPOOL_OK); /* idle conns: the first one */
    assert_int_equal(pool->conns[0].ninflight, 1);
    assert_int_equal(submit_write(pool, &o[1]), PGPOOL_OK);
    assert_int_equal(pool->conns[0].ninflight, 2);
    assert_int_equal(pool->conns[0].nwrites, 1);
    /* conn 0 has a write in flight: reads go to conn 1 even when it is the busier one */
    assert_int_equal(submit_read(pool, &o[2]), PGPOOL_OK);
    assert_int_equal(submit_read(pool, &o[3]), PGPOOL_OK);
    assert_int_equal(pool->conns[1].ninflight, 2);
    assert_int_equal(pool->conns[0].ninflight, 2);
    /* the read, then the write complete on conn 0: it takes reads again */
    script_statement(PGRES_TUPLES_OK, NULL);
    script_statement(PGRES_TUPLES_OK, NULL);
    readable(pool, 0);
    assert_int_equal(o[0].calls + o[1].calls, 2);
    assert_int_equal(pool->conns[0].nwrites, 0);
    assert_int_equal(submit_read(pool, &o[0]), PGPOOL_OK);
    assert_int_equal(pool->conns[0].ninflight, 1);
    destroy_pool(pool);
}

static void test_lanes_reads_leave_the_queue_first(void **state)
{
    pgpool_t *pool = ready_pool(1, 4); /* one connection: no read-only share, reads go first */
    outcome_t o[MAX_DEPTH + 2];

    memset(o, 0, sizeof(o));
    assert_int_equal(pool->write_conns, 1);
    for (int i = 0; i < MAX_DEPTH; i++)
        assert_int_equal(submit_write(pool, &o[i]), PGPOOL_OK);
    assert_int_equal(submit_write(pool, &o[MAX_DEPTH]), PGPOOL_OK);
    assert_int_equal(submit_read(pool, &o[MAX_DEPTH + 1]), PGPOOL_OK);
    assert_int_equal(pool->queued, 2);
    /* a slot frees: the read queued after the write goes out before it */
    script_statement(PGRES_TUPLES_OK, NULL);
    readable(pool, 0);
    assert_int_equal(fake.nsent, MAX_DEPTH + 1);
    assert_string_equal(fake.sent_name[MAX_DEPTH], "get_profile");
    assert_int_equal(pool->queued, 1);
    script_statement(PGRES_TUPLES_OK, NULL);
    readable(pool, 0);
    assert_int_equal(fake.nsent, MAX_DEPTH + 2);
    assert_string_equal(fake.sent_name[MAX_DEPTH + 1], "watchlist_add");
    destroy_pool(pool);
}

static void test_stmt_names(void **state)
{
    assert_string_equal(pgpool_stmt_name(PGPOOL_STMT_WATCHLIST_ADD), "watchlist_add");
    assert_string_equal(pgpool_stmt_name(PGPOOL_STMT_PAGE_WATCHLIST), "list_watchlist");
    assert_string_equal(pgpool_stmt_name(PGPOOL_STMT__COUNT), "unknown");
    assert_string_equal(pgpool_stmt_name((pgpool_stmt_t)-1), "unknown");
    for (int i = 0; i < PGPOOL_STMT__COUNT; i++) {
        assert_non_null(stmts[i].name);
        assert_non_null(stmts[i].sql);
    }
    pgpool_destroy(NULL); /* NULL-safe */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_connect_prepare_ready, setup, teardown),
        cmocka_unit_test_setup_teardown(test_all_down_refuses_at_submit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prepare_failure_drops_connection, setup, teardown),
        cmocka_unit_test_setup_teardown(test_submit_copies_params_and_completes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_results_in_send_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queue_when_connections_full, setup, teardown),
        cmocka_unit_test_setup_teardown(test_least_loaded_connection, setup, teardown),
        cmocka_unit_test_setup_teardown(test_detached_ops, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connection_lost_fails_inflight_and_queue, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_reconnect_with_backoff, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connect_start_failure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_serialization_failure_retried, setup, teardown),
        cmocka_unit_test_setup_teardown(test_other_errors_not_retried, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeouts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connect_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_send_failure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lanes_reads_keep_connections_of_their_own, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_lanes_reads_not_pipelined_behind_writes, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_lanes_reads_leave_the_queue_first, setup, teardown),
        cmocka_unit_test(test_stmt_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
