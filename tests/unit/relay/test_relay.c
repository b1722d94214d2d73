/*
 * Unit tests for relay/relay.c's claim/produce/settle logic, with seams at every external
 * module (STYLE.md rule 23): the outbox SQL, the Kafka producer, the lease and Redis are fakes
 * defined here (the test includes relay.c, so the archive's real objects are never linked).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include "relay/relay.c"

/* ---- fakes --------------------------------------------------------------------------------- */

#define MAXN 64
static relay_event_t rows[MAXN];
static int nrows;
static producer_status_t send_status[MAXN]; /* per producer_send call; default OK */
static int nsends;
static void *sent[MAXN];
static void *outstanding[MAXN]; /* sent and not yet reported: owned by the fake producer */
static int noutstanding;
static struct {
    char user[16];
    int64_t seq;
} dead[MAXN], marked[MAXN];
static int ndead, nmarked;
static int mark_poll_status = 1; /* what outbox_mark_poll() answers next */
static char dummy;

PGconn *outbox_connect(const char *dsn, const char *app, char *errbuf, size_t errlen)
{
    return (PGconn *)&dummy;
}
bool outbox_conn_ok(PGconn *conn)
{
    return conn != NULL;
}
int outbox_session_init(PGconn *conn, bool listen)
{
    return 0;
}
int outbox_drain_notifies(PGconn *conn, uint64_t *partitions)
{
    return 0;
}
int outbox_claim(PGconn *conn, const int *parts, int nparts, const char *const *busy, int nbusy,
                 int lease_pid, int limit, outbox_batch_t *out)
{
    /* Honour the busy list as the SQL does. */
    static int order[MAXN];
    int n = 0;
    for (int i = 0; i < nrows && n < limit; ++i) {
        bool skip = false;
        for (int b = 0; b < nbusy; ++b)
            skip |= strcmp(busy[b], rows[i].user_id) == 0;
        if (!skip)
            order[n++] = i;
    }
    out->res = (PGresult *)order;
    out->n = n;
    return 0;
}
void outbox_batch_row(const outbox_batch_t *b, int i, relay_event_t *ev)
{
    *ev = rows[((int *)b->res)[i]];
}
void outbox_batch_dispose(outbox_batch_t *b)
{
    b->res = NULL;
    b->n = 0;
}
int outbox_mark_send(PGconn *conn, const char *const *users, const int64_t *seqs, int n)
{
    for (int i = 0; i < n; ++i) {
        snprintf(marked[nmarked].user, sizeof(marked[0].user), "%s", users[i]);
        marked[nmarked++].seq = seqs[i];
    }
    return 0;
}
int outbox_mark_poll(PGconn *conn)
{
    int st = mark_poll_status;
    mark_poll_status = 1;
    return st;
}
int outbox_dead_letter(PGconn *conn, const char *user_id, int64_t seq, const char *event_id,
                       const char *error)
{
    snprintf(dead[ndead].user, sizeof(dead[0].user), "%s", user_id);
    dead[ndead++].seq = seq;
    return 0;
}
int outbox_erase_user(PGconn *conn, const char *user_id, int64_t seq, int64_t *dead_letters)
{
    *dead_letters = 0;
    return 0;
}

int outbox_erase_pending(PGconn *conn, const int *parts, int nparts, outbox_erased_t *out, int max)
{
    return 0;
}

int outbox_purge_published(PGconn *conn, int retention_s, const int *parts, int nparts, int limit)
{
    return 0;
}
int outbox_stats(PGconn *conn, outbox_stats_t *out)
{
    memset(out, 0, sizeof(*out));
    return 0;
}
static int schema_version = OUTBOX_SCHEMA_VERSION; /* what the fake schema_version() says */
int outbox_schema_version(PGconn *conn)
{
    return schema_version;
}

producer_t *producer_create(const producer_conf_t *conf, producer_dr_cb_t dr_cb, void *app,
                            char *errbuf, size_t errlen)
{
    return (producer_t *)&dummy;
}
void producer_destroy(producer_t *p, int timeout_ms)
{
}
producer_status_t producer_send(producer_t *p, const relay_event_t *ev, void *opaque, char *errbuf,
                                size_t errlen)
{
    producer_status_t st = send_status[nsends];
    snprintf(errbuf, errlen, "Broker: Message size too large");
    if (st == PRODUCER_OK) {
        sent[nsends] = opaque;
        outstanding[noutstanding++] = opaque;
    }
    nsends++;
    return st;
}
int producer_poll(producer_t *p, int timeout_ms)
{
    return 0;
}
int producer_outq_len(producer_t *p)
{
    return 0;
}
bool producer_is_fatal(const producer_t *p)
{
    return false;
}
void producer_purge(producer_t *p, bool inflight)
{
}
bool producer_has_metadata(const producer_t *p)
{
    return true;
}
void producer_set_wakeup_fd(producer_t *p, int fd)
{
}

lease_t *lease_create(const char *dsn, int takeover_s)
{
    return (lease_t *)&dummy;
}
void lease_destroy(lease_t *l)
{
}
unsigned long long lease_peers_ended(const lease_t *l)
{
    return 0;
}
int lease_tick(lease_t *l, const int inflight[OUTBOX_PARTITIONS])
{
    return 0;
}
int lease_claimable(lease_t *l, int out[OUTBOX_PARTITIONS])
{
    out[0] = 5;
    return 1;
}
int lease_held_count(const lease_t *l)
{
    return 1;
}
uint64_t lease_claimable_mask(const lease_t *l)
{
    return (uint64_t)1 << 5;
}
int lease_backend_pid(const lease_t *l)
{
    return 4242;
}
bool lease_server_read_only(const lease_t *l)
{
    return false;
}

inval_t *inval_create(const char *url, int version_ttl_s, char *errbuf, size_t errlen)
{
    return (inval_t *)&dummy;
}
int inval_set_cluster(inval_t *iv, bool cluster, char *errbuf, size_t errlen)
{
    return 0;
}
void inval_destroy(inval_t *iv)
{
}
void inval_add(inval_t *iv, const char *user_id, int64_t seq)
{
}
int inval_flush(inval_t *iv)
{
    return 0;
}
int inval_pending(const inval_t *iv)
{
    return 0;
}

/* ---- helpers ------------------------------------------------------------------------------- */

static app_config_t cfg;

static void add_row(const char *user, int64_t seq)
{
    static char ids[MAXN][EVENT_UUID_LEN + 1];
    snprintf(ids[nrows], sizeof(ids[0]), "00000000-0000-0000-0000-%012d", nrows);
    rows[nrows] = (relay_event_t){.user_id = user,
                                  .seq = seq,
                                  .event_id = ids[nrows],
                                  .event_type = "WatchlistUpdated",
                                  .partition_no = 5,
                                  .payload = "{}",
                                  .payload_len = 2,
                                  .ce_time = "2026-01-01T00:00:00.000Z"};
    nrows++;
}

static relay_t *setup_relay(void)
{
    char err[256];
    memset(send_status, 0, sizeof(send_status));
    nrows = nsends = ndead = nmarked = noutstanding = 0;
    cfg.relay_batch_size = 100;
    cfg.cache_ttl_seconds = 300;
    cfg.relay_poll_interval_ms = 1000;
    relay_t *r = relay_create(&cfg, err, sizeof(err));
    assert_non_null(r);
    r->db = r->markdb = (PGconn *)&dummy;
    r->producer = (producer_t *)&dummy;
    return r;
}

static void forget_outstanding(void *opaque)
{
    for (int i = 0; i < noutstanding; ++i) {
        if (outstanding[i] == opaque) {
            outstanding[i] = outstanding[--noutstanding];
            return;
        }
    }
}

static void teardown_relay(relay_t *r)
{
    /* as a purge at producer_destroy() would: report what is still out as failed */
    while (noutstanding > 0) {
        void *m = outstanding[0];
        forget_outstanding(m);
        on_delivery(r, m, false, false, "purged");
    }
    r->db = r->markdb = NULL;
    r->producer = NULL;
    relay_destroy(r);
}

static void report(relay_t *r, int send_index, bool ok, bool permanent)
{
    forget_outstanding(sent[send_index]);
    on_delivery(r, sent[send_index], ok, permanent, ok ? "" : "Broker: Message size too large");
}

/* ---- tests --------------------------------------------------------------------------------- */

static void test_mark_only_after_report(void **state)
{
    relay_t *r = setup_relay();
    add_row("a", 1);
    add_row("a", 2);
    add_row("b", 1);
    assert_int_equal(claim_and_produce(r), 3);
    assert_int_equal(keycount_total(r->inflight), 3);
    assert_int_equal(r->part_inflight[5], 3);
    settle(r);
    assert_int_equal(nmarked, 0); /* nothing reported yet */

    report(r, 0, true, false);
    report(r, 2, true, false);
    settle(r);
    assert_int_equal(nmarked, 2);
    assert_string_equal(marked[0].user, "a");
    assert_int_equal(marked[0].seq, 1);
    assert_string_equal(marked[1].user, "b");
    settle(r); /* the mark completed: a1 and b1 leave the window, a2 keeps "a" busy */
    assert_int_equal(keycount_total(r->inflight), 1);
    assert_int_equal(keycount_count(r->inflight, "a"), 1);
    assert_int_equal(keycount_count(r->inflight, "b"), 0);

    /* a is busy: a new claim must not send a's rows again */
    nsends = 0;
    assert_int_equal(claim_and_produce(r), 1); /* only b1 is offered (the fake keeps rows) */
    assert_ptr_not_equal(sent[0], NULL);
    teardown_relay(r);
}

static void test_produce_time_permanent_holds_user_back(void **state)
{
    relay_t *r = setup_relay();
    add_row("a", 1);
    add_row("a", 2);
    add_row("a", 3);
    add_row("b", 1);
    send_status[1] = PRODUCER_PERMANENT; /* a2 too large */
    assert_int_equal(claim_and_produce(r), 4);
    assert_int_equal(nsends, 3); /* a1, a2 (refused), b1: a3 is not even tried */
    assert_int_equal(ndead, 1);
    assert_string_equal(dead[0].user, "a");
    assert_int_equal(dead[0].seq, 2);
    assert_int_equal(metrics_get(METRIC_DEAD_LETTERED) >= 1, 1);
    assert_int_equal(keycount_count(r->inflight, "a"), 1);
    teardown_relay(r);
}

static void test_broker_permanent_needs_two_strikes_lowest_seq_only(void **state)
{
    relay_t *r = setup_relay();
    add_row("a", 1);
    add_row("a", 2);
    add_row("b", 7);
    assert_int_equal(claim_and_produce(r), 3);
    /* first strike: the broker failed the whole request; nothing is dead-lettered */
    report(r, 0, false, true);
    report(r, 1, false, true);
    report(r, 2, false, true);
    settle(r);
    assert_int_equal(ndead, 0);
    assert_int_equal(keycount_total(r->inflight), 0);
    assert_true(r->claim_not_before_ms > 0); /* retried with backoff */

    /* second strike for the same events: only a1 and b7 become dead letters */
    nsends = 0;
    assert_int_equal(claim_and_produce(r), 3);
    report(r, 0, false, true);
    report(r, 1, false, true);
    report(r, 2, false, true);
    settle(r);
    assert_int_equal(ndead, 2);
    assert_string_equal(dead[0].user, "a");
    assert_int_equal(dead[0].seq, 1);
    assert_string_equal(dead[1].user, "b");
    assert_int_equal(dead[1].seq, 7);
    assert_int_equal(nmarked, 0);
    teardown_relay(r);
}

static void test_window_bounds_claims(void **state)
{
    relay_t *r = setup_relay();
    r->window = 2;
    add_row("a", 1);
    add_row("b", 1);
    add_row("c", 1);
    assert_int_equal(claim_and_produce(r), 2);
    assert_int_equal(claim_and_produce(r), 0); /* window full: no claim at all */
    teardown_relay(r);
}

/* A one-off mark failure sends the same rows again, ahead of rows delivered since. */
static void test_failed_mark_is_sent_again_in_order(void **state)
{
    relay_t *r = setup_relay();
    add_row("a", 1);
    add_row("b", 1);
    add_row("c", 1);
    assert_int_equal(claim_and_produce(r), 3);
    report(r, 0, true, false);
    report(r, 1, true, false);
    settle(r);
    assert_int_equal(nmarked, 2); /* a1, b1 sent; their mark is running */
    assert_int_equal(r->marking.n, 2);
    report(r, 2, true, false);
    mark_poll_status = -1; /* the running mark failed; the connection is fine */
    settle(r);
    assert_int_equal(r->to_mark.n, 0);
    assert_int_equal(r->marking.n, 3);
    assert_int_equal(nmarked, 5);
    assert_string_equal(marked[2].user, "a");
    assert_string_equal(marked[3].user, "b");
    assert_string_equal(marked[4].user, "c");
    assert_int_equal(keycount_total(r->inflight), 3); /* nothing leaves before its mark */
    settle(r);
    assert_int_equal(keycount_total(r->inflight), 0);
    assert_int_equal(r->part_inflight[5], 0);
    teardown_relay(r);
}

static void test_schema_version_decides_readiness(void **state)
{
    relay_t *r = setup_relay();
    static const struct {
        int version;
        long long ok;
    } steps[] = {
        {OUTBOX_SCHEMA_VERSION - 1, 0},
        {OUTBOX_SCHEMA_VERSION, 1},
        {-1, 0},                        /* unreadable */
        {OUTBOX_SCHEMA_VERSION + 5, 1}, /* newer: old relays keep working */
        {0, 0},
    };
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); ++i) {
        schema_version = steps[i].version;
        check_schema(r);
        assert_int_equal(metrics_get(METRIC_SCHEMA_OK), steps[i].ok);
    }
    schema_version = OUTBOX_SCHEMA_VERSION;
    teardown_relay(r);
}

int main(void)
{
    log_threshold = LOG_LEVEL_ERROR + 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mark_only_after_report),
        cmocka_unit_test(test_failed_mark_is_sent_again_in_order),
        cmocka_unit_test(test_produce_time_permanent_holds_user_back),
        cmocka_unit_test(test_broker_permanent_needs_two_strikes_lowest_seq_only),
        cmocka_unit_test(test_window_bounds_claims),
        cmocka_unit_test(test_schema_version_decides_readiness),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
