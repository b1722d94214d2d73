/*
 * The relay loop (claim → produce → poll → mark), single-threaded: PostgreSQL calls are
 * synchronous, librdkafka reports wake the loop through a pipe, NOTIFY through the PG socket.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "common/cache.h"
#include "common/clock.h"
#include "common/log.h"
#include "relay/keycount.h"
#include "relay/inval.h"
#include "relay/lease.h"
#include "relay/metrics.h"
#include "relay/outbox.h"
#include "relay/producer.h"
#include "relay/relay.h"
#include "relay/snapshot.h"
#include "relay/history_retention.h"
#include "relay/span.h"

#define LOG_MODULE "relay"

#define LEASE_TICK_MS 1000
#define STATS_TICK_MS 5000
#define RETENTION_TICK_MS 10000
#define RETENTION_BATCH 5000
#define ERASE_SWEEP_BATCH 64
#define PG_BACKOFF_MIN_MS 100
#define PG_BACKOFF_MAX_MS 5000
#define CLAIM_BACKOFF_MAX_MS 5000
#define FATAL_DRAIN_MS 5000
#define LINGER_MS 1
#define MESSAGE_TIMEOUT_MS 300000
/*
 * A broker fails a whole ProduceRequest (several users' messages) with one error, so a
 * "permanent" error reported by a broker is trusted only when the same event fails so again.
 */
#define PERMANENT_STRIKES 2

/*
 * A message's stage (STYLE rule 31). Each stage but NEW and GONE is one list of relay_t, and
 * msg_move() is the only code that changes a message's stage, its list or the window counts.
 */
typedef enum {
    MSG_NEW,      /* made from a claimed row, not yet taken by the producer: on no list */
    MSG_PRODUCED, /* librdkafka holds it until its delivery report: r->produced */
    MSG_REPORTED, /* report in, not yet settled: r->reports */
    MSG_TO_MARK,  /* delivered, mark not yet sent: r->to_mark */
    MSG_MARKING,  /* delivered, mark running on markdb: r->marking */
    MSG_GONE,     /* left the window (marked, failed or dropped): freed */
} msg_state_t;

/* What a delivery report said. */
typedef enum {
    OUTCOME_DELIVERED,
    OUTCOME_RETRIABLE, /* released at once; the row is claimed again after a backoff */
    OUTCOME_PERMANENT, /* dead-lettered once classify_failures() confirms it */
} msg_outcome_t;

/* One message, from its claimed row until it leaves the window. */
typedef struct st_relay_msg_t {
    struct st_relay_msg_t *prev, *next; /* on the list of `state` */
    msg_state_t state;
    char *user_id;
    int64_t seq;
    char event_id[EVENT_UUID_LEN + 1];
    event_type_t type;
    int partition;
    int64_t created_us;
    msg_outcome_t outcome;
    bool classified;     /* permanent failure already counted in strikes */
    long long report_us; /* wall clock of the delivery report */
    char *error;
    bool traced; /* `span` started and sampled: exported at the delivery report */
    span_publish_t span;
} relay_msg_t;

typedef struct st_relay_msg_list_t {
    relay_msg_t *head, *tail;
    int n;
} msg_list_t;

struct st_relay_t {
    const app_config_t *cfg;
    PGconn *db;     /* claims, dead letters, NOTIFY, housekeeping */
    PGconn *markdb; /* marks, sent without waiting so claims overlap them */
    lease_t *lease;
    producer_t *producer;
    inval_t *inval;
    keycount_t *inflight; /* user id -> messages in the window (PRODUCED to MARKING) */
    keycount_t *strikes;  /* event id -> permanent failures reported by a broker */
    int part_inflight[OUTBOX_PARTITIONS];
    msg_list_t produced, reports, to_mark, marking; /* one per stage: see msg_state_t */
    long long mark_sent_us;
    int wake_pipe[2]; /* librdkafka writes here when reports are ready */
    int stop_pipe[2]; /* relay_request_stop() writes here */
    atomic_bool stop;
    int window; /* max messages in flight */
    bool more;  /* claim again without waiting */
    long long next_poll_ms, next_lease_ms, next_stats_ms, next_retention_ms;
    long long db_next_attempt_ms, claim_not_before_ms;
    int db_backoff_ms, claim_backoff_ms;
    bool db_down_logged, db_ever_up;
    int schema_seen; /* last schema_version() read, -2 before the first */
    long long retry_log_ms;
    bool tracing;                /* OTEL_EXPORTER_OTLP_ENDPOINT set: publish spans are made */
    history_retention_t history; /* HISTORY_RETENTION_DAYS (relay/history_retention.c) */
};

/* Ends a traced message's publish span; `error` NULL when Kafka stored it. */
static void end_span(relay_t *r, relay_msg_t *m, const char *error)
{
    span_info_t info = {
        .topic = r->cfg->kafka_topic,
        .user_id = m->user_id,
        .event_id = m->event_id,
        .event_type = event_type_name(m->type),
        .seq = m->seq,
    };
    span_end(&m->span, &info, error);
    m->traced = false;
}

static void msg_free(relay_msg_t *m)
{
    if (m == NULL)
        return;
    free(m->user_id);
    free(m->error);
    free(m);
}

static msg_list_t *list_of(relay_t *r, msg_state_t st)
{
    switch (st) {
    case MSG_NEW:
    case MSG_GONE:
        return NULL;
    case MSG_PRODUCED:
        return &r->produced;
    case MSG_REPORTED:
        return &r->reports;
    case MSG_TO_MARK:
        return &r->to_mark;
    case MSG_MARKING:
        return &r->marking;
    default:
        PROFILE_FATAL("relay message in an unknown stage");
    }
}

static bool in_window(msg_state_t st)
{
    return st == MSG_PRODUCED || st == MSG_REPORTED || st == MSG_TO_MARK || st == MSG_MARKING;
}

/* The stage changes of a message's life; any other is a bug. */
static bool legal_move(msg_state_t from, msg_state_t to)
{
    switch (to) {
    case MSG_PRODUCED:
        return from == MSG_NEW;
    case MSG_REPORTED:
        return from == MSG_PRODUCED;
    case MSG_TO_MARK:
        return from == MSG_REPORTED || from == MSG_MARKING; /* marking again after a failure */
    case MSG_MARKING:
        return from == MSG_TO_MARK;
    case MSG_GONE:
        return true; /* settled, never sent, or dropped by relay_destroy() */
    default:
        return false;
    }
}

/*
 * Moves `m` to stage `to`, appending it to that stage's list: the only code that changes list
 * membership. Entering the window (PRODUCED) counts the message for its user and partition;
 * leaving it (GONE) releases both, and frees `m`.
 */
static void msg_move(relay_t *r, relay_msg_t *m, msg_state_t to)
{
    msg_list_t *from = list_of(r, m->state), *dest = list_of(r, to);

    if (!legal_move(m->state, to))
        PROFILE_FATAL("relay message: illegal stage change");
    if (from != NULL) {
        *(m->prev != NULL ? &m->prev->next : &from->head) = m->next;
        *(m->next != NULL ? &m->next->prev : &from->tail) = m->prev;
        from->n--;
    }
    if (!in_window(m->state) && in_window(to)) {
        keycount_inc(r->inflight, m->user_id);
        r->part_inflight[m->partition]++;
    } else if (in_window(m->state) && !in_window(to)) {
        keycount_dec(r->inflight, m->user_id);
        r->part_inflight[m->partition]--;
        metrics_set(METRIC_INFLIGHT, keycount_total(r->inflight));
    }
    m->state = to;
    m->prev = m->next = NULL;
    if (to == MSG_GONE) {
        msg_free(m);
        return;
    }
    if (dest != NULL) {
        m->prev = dest->tail;
        *(dest->tail != NULL ? &dest->tail->next : &dest->head) = m;
        dest->tail = m;
        dest->n++;
    }
}

/* Delivery report: called from producer_poll() on the loop thread; settled later in batches. */
static void on_delivery(void *app, void *opaque, bool ok, bool permanent, const char *errstr)
{
    relay_t *r = app;
    relay_msg_t *m = opaque;
    m->outcome = ok ? OUTCOME_DELIVERED : permanent ? OUTCOME_PERMANENT : OUTCOME_RETRIABLE;
    m->error = ok ? NULL : xstrdup(errstr);
    m->report_us = clock_wall_ns() / 1000;
    if (m->traced)
        end_span(r, m, ok ? NULL : errstr);
    msg_move(r, m, MSG_REPORTED);
}

relay_t *relay_create(const app_config_t *cfg, char *errbuf, size_t errlen)
{
    relay_t *r = xcalloc(1, sizeof(*r));
    int vttl = 2 * cfg->cache_ttl_seconds;
    if (vttl < CACHE_VERSION_TTL_SECONDS)
        vttl = CACHE_VERSION_TTL_SECONDS;
    r->cfg = cfg;
    r->tracing = cfg->otel_exporter_otlp_endpoint != NULL && cfg->otel_exporter_otlp_endpoint[0];
    r->inval = inval_create(cfg->redis_url, vttl, errbuf, errlen);
    if (r->inval == NULL || inval_set_cluster(r->inval, cfg->redis_cluster, errbuf, errlen) != 0) {
        inval_destroy(r->inval);
        free(r);
        return NULL;
    }
    r->lease = lease_create(cfg->database_url, cfg->relay_takeover_seconds);
    r->inflight = keycount_create();
    r->strikes = keycount_create();
    r->window = cfg->relay_batch_size * 4 < 2000 ? 2000 : cfg->relay_batch_size * 4;
    r->db_backoff_ms = PG_BACKOFF_MIN_MS;
    r->schema_seen = -2;
    history_retention_init(&r->history, cfg->history_retention_days, cfg->history_retention_batch);
    atomic_init(&r->stop, false);
    if (pipe2(r->wake_pipe, O_CLOEXEC | O_NONBLOCK) != 0 ||
        pipe2(r->stop_pipe, O_CLOEXEC | O_NONBLOCK) != 0)
        PROFILE_FATAL("pipe2 failed");
    return r;
}

void relay_request_stop(relay_t *r)
{
    int saved = errno;
    atomic_store(&r->stop, true);
    if (write(r->stop_pipe[1], "s", 1) < 0) {
        /* the pipe is full: a stop is already pending */
    }
    errno = saved;
}

void relay_destroy(relay_t *r)
{
    if (r == NULL)
        return;
    /* The producer is gone or never polled again: no report can reach these any more. */
    msg_list_t *lists[] = {&r->produced, &r->reports, &r->to_mark, &r->marking};
    for (size_t i = 0; i < sizeof(lists) / sizeof(lists[0]); ++i) {
        while (lists[i]->head != NULL)
            msg_move(r, lists[i]->head, MSG_GONE);
    }
    if (r->db != NULL)
        PQfinish(r->db);
    if (r->markdb != NULL)
        PQfinish(r->markdb);
    lease_destroy(r->lease);
    inval_destroy(r->inval);
    keycount_destroy(r->inflight);
    keycount_destroy(r->strikes);
    close(r->wake_pipe[0]);
    close(r->wake_pipe[1]);
    close(r->stop_pipe[0]);
    close(r->stop_pipe[1]);
    free(r);
}

/* Puts the rows of the mark in progress back in front of the mark queue, to be sent again
 * (marking is idempotent): the queued rows join the running mark, then all of them go back. */
static void requeue_marking(relay_t *r)
{
    for (int queued = r->to_mark.n; queued > 0; --queued)
        msg_move(r, r->to_mark.head, MSG_MARKING);
    while (r->marking.head != NULL)
        msg_move(r, r->marking.head, MSG_TO_MARK);
}

static void db_lost(relay_t *r)
{
    if (r->db != NULL)
        PQfinish(r->db);
    if (r->markdb != NULL)
        PQfinish(r->markdb);
    r->db = r->markdb = NULL;
    /* A mark that was running is sent again after the reconnect (it is idempotent). */
    requeue_marking(r);
    metrics_set(METRIC_PG_UP, 0);
    if (!r->db_down_logged)
        log_error("lost the PostgreSQL connection; reconnecting with backoff");
    r->db_down_logged = true;
    r->db_next_attempt_ms = clock_mono_ms() + r->db_backoff_ms;
}

/* After a failed statement: drop the connection if it is gone, else it was a one-off error. */
static void db_check(relay_t *r)
{
    if (!outbox_conn_ok(r->db))
        db_lost(r);
}

/* Readiness needs the schema this binary was written for: checked at every connect and every
 * STATS_TICK_MS, so it turns ready by itself once profile-migrate has run. */
static void check_schema(relay_t *r)
{
    int v = outbox_schema_version(r->db);
    if (v < 0 && !outbox_conn_ok(r->db))
        return; /* the caller's next statement notices the lost connection */
    metrics_set(METRIC_SCHEMA_OK, v >= OUTBOX_SCHEMA_VERSION);
    if (v != r->schema_seen && v < OUTBOX_SCHEMA_VERSION)
        log_error("database schema version %s%d is older than %d, which this relay needs; "
                  "/health/ready answers 503 until profile-migrate has run",
                  v < 0 ? "unreadable, " : "", v, OUTBOX_SCHEMA_VERSION);
    else if (v != r->schema_seen && r->schema_seen != -2)
        log_info("database schema version %d: ready", v);
    r->schema_seen = v;
}

static void ensure_db(relay_t *r)
{
    char err[512];
    if (r->db != NULL || clock_mono_ms() < r->db_next_attempt_ms)
        return;
    r->db = outbox_connect(r->cfg->database_url, "profile-relay-worker", err, sizeof(err));
    if (r->db != NULL)
        r->markdb = outbox_connect(r->cfg->database_url, "profile-relay-worker", err, sizeof(err));
    if (r->db == NULL || r->markdb == NULL || outbox_session_init(r->db, true) != 0 ||
        outbox_session_init(r->markdb, false) != 0) {
        if ((r->db == NULL || r->markdb == NULL) && !r->db_down_logged)
            log_error("PostgreSQL connection failed: %s; retrying with backoff", err);
        if (r->db != NULL)
            PQfinish(r->db);
        if (r->markdb != NULL)
            PQfinish(r->markdb);
        r->db = r->markdb = NULL;
        r->db_down_logged = true;
        r->db_next_attempt_ms = clock_mono_ms() + r->db_backoff_ms;
        r->db_backoff_ms =
            r->db_backoff_ms * 2 > PG_BACKOFF_MAX_MS ? PG_BACKOFF_MAX_MS : r->db_backoff_ms * 2;
        return;
    }
    if (r->db_ever_up) {
        log_info("PostgreSQL connection restored");
        metrics_add(METRIC_PG_RECONNECTS, 1);
    }
    r->db_ever_up = true;
    r->db_down_logged = false;
    r->db_backoff_ms = PG_BACKOFF_MIN_MS;
    r->more = true; /* anything may have been missed while away */
    metrics_set(METRIC_PG_UP, 1);
    check_schema(r);
}

static void ensure_producer(relay_t *r)
{
    char err[512];
    producer_conf_t pc = {
        .bootstrap_servers = r->cfg->kafka_bootstrap_servers,
        .topic = r->cfg->kafka_topic,
        .ce_source = r->cfg->ce_source,
        .linger_ms = LINGER_MS,
        .message_timeout_ms = MESSAGE_TIMEOUT_MS,
        .security_protocol = r->cfg->kafka_security_protocol,
        .sasl_mechanism = r->cfg->kafka_sasl_mechanism,
        .sasl_username = r->cfg->kafka_sasl_username,
        .sasl_password = r->cfg->kafka_sasl_password,
        .ssl_ca_file = r->cfg->kafka_ssl_ca_file,
    };
    if (r->producer != NULL)
        return;
    r->producer = producer_create(&pc, on_delivery, r, err, sizeof(err));
    if (r->producer == NULL) {
        log_error("cannot create the Kafka producer: %s", err);
        return;
    }
    producer_set_wakeup_fd(r->producer, r->wake_pipe[1]);
    r->more = true;
}

/* Counts and logs a dead letter just recorded for `m`. */
static void dead_lettered(const relay_msg_t *m, const char *error)
{
    metrics_add(METRIC_DEAD_LETTERED, 1);
    log_error("event %s (%s:%" PRId64 ") can never be published: %s; dead-lettered, user held "
              "back until requeue or skip",
              m->event_id, m->user_id, m->seq, error);
}

/*
 * Decides which permanent failures become dead letters: an event needs PERMANENT_STRIKES
 * broker-reported failures, and per user only the lowest sequence is dead-lettered (the later
 * ones are held back by it and retried after a requeue). Runs once per report.
 */
static void classify_failures(relay_t *r)
{
    keycount_t *dead_users = keycount_create();
    for (relay_msg_t *m = r->reports.head; m != NULL; m = m->next) {
        if (m->outcome != OUTCOME_PERMANENT)
            continue;
        if (!m->classified) {
            m->classified = true;
            keycount_inc(r->strikes, m->event_id);
            if (keycount_count(r->strikes, m->event_id) < PERMANENT_STRIKES) {
                log_warn("event %s (%s:%" PRId64 ") failed: %s; retrying once before "
                         "dead-lettering",
                         m->event_id, m->user_id, m->seq, m->error);
                m->outcome = OUTCOME_RETRIABLE;
                continue;
            }
        }
        /* Reports of one partition come in produce order: the first is the lowest seq. */
        if (keycount_count(dead_users, m->user_id) > 0) {
            m->outcome = OUTCOME_RETRIABLE;
            continue;
        }
        keycount_inc(dead_users, m->user_id);
    }
    keycount_destroy(dead_users);
}

static void forget_strikes(relay_t *r, const char *event_id)
{
    while (keycount_total(r->strikes) > 0 && keycount_dec(r->strikes, event_id) > 0) {
    }
}

/* Counts and logs one erased user's removed rows. */
static void erased(const char *user_id, int64_t seq, int64_t rows, int64_t dead)
{
    metrics_add(METRIC_ERASED_USERS, 1);
    if (dead > 0) {
        metrics_add(METRIC_ERASED_DEAD_LETTERS, (unsigned long long)dead);
        log_warn("user %s erased: discarded %" PRId64
                 " dead letter(s) before ProfileDeleted %" PRId64 " (consumers see a gap)",
                 user_id, dead, seq);
    }
    log_info("user %s erased: removed %" PRId64 " outbox row(s) up to sequence %" PRId64, user_id,
             rows, seq);
}

/*
 * The user's ProfileDeleted is published: their earlier rows (payloads with personal data) and
 * dead letters go now rather than after the retention. After a failure (logged) the sweep in
 * housekeeping() removes them on a later tick.
 */
static void erase_user_rows(relay_t *r, const relay_msg_t *m)
{
    int64_t dead = 0;
    int n;
    if (r->db == NULL)
        return; /* the sweep does it once the database is back */
    n = outbox_erase_user(r->db, m->user_id, m->seq, &dead);
    if (n < 0) {
        db_check(r);
        return;
    }
    erased(m->user_id, m->seq, n, dead);
}

/* Erasures whose removal failed when their ProfileDeleted was published. */
static int sweep_erased(relay_t *r, const int *parts, int nparts)
{
    outbox_erased_t done[ERASE_SWEEP_BATCH];
    int n = outbox_erase_pending(r->db, parts, nparts, done, ERASE_SWEEP_BATCH);
    for (int i = 0; i < n; ++i)
        erased(done[i].user_id, done[i].seq, done[i].rows, done[i].dead_letters);
    return n;
}

/* A delivered and marked message leaves the window. */
static void finish_delivered(relay_t *r, relay_msg_t *m)
{
    metrics_published(m->type, m->report_us - m->created_us);
    if (m->type == EVENT_TYPE_PROFILE_DELETED)
        erase_user_rows(r, m);
    inval_add(r->inval, m->user_id, m->seq);
    forget_strikes(r, m->event_id);
    msg_move(r, m, MSG_GONE);
}

/*
 * Marks delivered rows: one UPDATE for everything delivered since the last one, running on
 * markdb while the loop goes on claiming. A user stays "in flight" until its rows are marked,
 * so it is never re-claimed early.
 */
static void pump_marks(relay_t *r)
{
    if (r->markdb == NULL)
        return;
    if (r->marking.head != NULL) {
        int st = outbox_mark_poll(r->markdb);
        if (st == 0)
            return;
        if (st < 0) {
            if (!outbox_conn_ok(r->markdb)) {
                db_lost(r);
                return;
            }
            /* a one-off failure: send the same rows again below */
            requeue_marking(r);
        } else {
            log_debug("mark: %d row(s) done in %lld us", r->marking.n,
                      (long long)(clock_mono_us() - r->mark_sent_us));
            while (r->marking.head != NULL)
                finish_delivered(r, r->marking.head);
            r->claim_backoff_ms = 0;
            r->more = true; /* users released: their later rows may be claimable */
        }
    }
    if (r->to_mark.head == NULL)
        return;
    int n = r->to_mark.n, i = 0;
    const char **users = xmalloc(sizeof(*users) * (size_t)n);
    int64_t *seqs = xmalloc(sizeof(*seqs) * (size_t)n);
    for (relay_msg_t *m = r->to_mark.head; m != NULL; m = m->next) {
        users[i] = m->user_id;
        seqs[i++] = m->seq;
    }
    int rc = outbox_mark_send(r->markdb, users, seqs, n);
    free(users);
    free(seqs);
    if (rc != 0) {
        if (!outbox_conn_ok(r->markdb))
            db_lost(r);
        return;
    }
    while (r->to_mark.head != NULL)
        msg_move(r, r->to_mark.head, MSG_MARKING);
    r->mark_sent_us = clock_mono_us();
}

/*
 * Settles delivery reports: delivered messages queue for the next mark; a permanent failure
 * gets its dead letter (synchronously, before its user is released); retriable failures are
 * released at once and claims back off. When PostgreSQL is away the reports wait here.
 */
static void settle(relay_t *r)
{
    int nfail = 0;
    if (r->reports.head == NULL || r->db == NULL) {
        pump_marks(r);
        return;
    }
    for (relay_msg_t *m = r->reports.head; m != NULL; m = m->next)
        nfail += m->outcome != OUTCOME_DELIVERED;
    if (nfail > 0) {
        classify_failures(r);
        for (relay_msg_t *m = r->reports.head; m != NULL; m = m->next) {
            if (m->outcome != OUTCOME_PERMANENT)
                continue;
            if (outbox_dead_letter(r->db, m->user_id, m->seq, m->event_id, m->error) != 0) {
                db_check(r); /* settled again later; inserting twice is a no-op */
                return;
            }
        }
    }

    bool retriable = false;
    relay_msg_t *m;
    while ((m = r->reports.head) != NULL) {
        if (m->outcome == OUTCOME_DELIVERED) {
            msg_move(r, m, MSG_TO_MARK);
            continue;
        }
        metrics_failed(m->type);
        if (m->outcome == OUTCOME_PERMANENT) {
            forget_strikes(r, m->event_id);
            dead_lettered(m, m->error);
        } else {
            retriable = true;
            if (clock_mono_ms() >= r->retry_log_ms) {
                log_warn("delivery of %s:%" PRId64 " failed: %s; will retry", m->user_id, m->seq,
                         m->error);
                r->retry_log_ms = clock_mono_ms() + 1000;
            }
        }
        msg_move(r, m, MSG_GONE);
        r->more = true;
    }
    if (retriable) {
        r->claim_backoff_ms = r->claim_backoff_ms == 0 ? 100 : r->claim_backoff_ms * 2;
        if (r->claim_backoff_ms > CLAIM_BACKOFF_MAX_MS)
            r->claim_backoff_ms = CLAIM_BACKOFF_MAX_MS;
        r->claim_not_before_ms = clock_mono_ms() + r->claim_backoff_ms;
    }
    pump_marks(r);
}

static void drain_fd(int fd)
{
    char buf[256];
    while (read(fd, buf, sizeof(buf)) > 0) {
    }
}

static void serve_reports(relay_t *r, int timeout_ms)
{
    if (r->producer != NULL)
        producer_poll(r->producer, timeout_ms);
    settle(r);
}

/* Fatal producer error: let in-flight reports arrive (bounded), then recreate the producer. */
static void reset_producer(relay_t *r)
{
    long long deadline = clock_mono_ms() + FATAL_DRAIN_MS;
    metrics_set(METRIC_PRODUCER_UP, 0);
    producer_purge(r->producer, false);
    while (producer_outq_len(r->producer) > 0 && clock_mono_ms() < deadline)
        serve_reports(r, 100);
    producer_purge(r->producer, true);
    serve_reports(r, 0);
    producer_destroy(r->producer, 0);
    r->producer = NULL;
    settle(r);
    metrics_add(METRIC_PRODUCER_RESETS, 1);
    log_warn("producer recreated after a fatal error; pending rows are re-read (same ce_id)");
}

/* A message for a claimed row, in stage NEW. With tracing on, its publish span begins and `ev`
 * carries the span's traceparent (written into `traceparent`) to the producer. */
static relay_msg_t *make_msg(relay_t *r, relay_event_t *ev, char *traceparent)
{
    relay_msg_t *m = xcalloc(1, sizeof(*m));
    m->state = MSG_NEW;
    m->user_id = xstrdup(ev->user_id);
    m->seq = ev->seq;
    snprintf(m->event_id, sizeof(m->event_id), "%s", ev->event_id);
    m->type = event_type_from_name(ev->event_type);
    m->partition = ev->partition_no;
    m->created_us = ev->created_us;
    if (r->tracing)
        m->traced = span_begin(ev, traceparent, &m->span);
    return m;
}

/*
 * The producer refused `m` (stage NEW) with `st`: a permanent refusal becomes a dead letter,
 * anything else is retried from the next claim. Frees `m`.
 */
static void on_send_failure(relay_t *r, relay_msg_t *m, producer_status_t st, const char *err)
{
    metrics_failed(m->type);
    if (m->traced && st != PRODUCER_QUEUE_FULL) /* queue full: stopping, nothing sent */
        end_span(r, m, err);
    if (st == PRODUCER_PERMANENT) {
        if (outbox_dead_letter(r->db, m->user_id, m->seq, m->event_id, err) == 0)
            dead_lettered(m, err);
        else
            db_check(r);
    } else if (st != PRODUCER_QUEUE_FULL) {
        log_warn("cannot produce %s:%" PRId64 ": %s; will retry", m->user_id, m->seq, err);
    }
    msg_move(r, m, MSG_GONE);
}

/* Returns the number of rows claimed, or -1. */
static int claim_and_produce(relay_t *r)
{
    int parts[OUTBOX_PARTITIONS];
    int nparts = lease_claimable(r->lease, parts);
    int room = r->window - keycount_total(r->inflight);
    int limit = room < r->cfg->relay_batch_size ? room : r->cfg->relay_batch_size;
    outbox_batch_t batch = {NULL, 0};

    if (nparts == 0 || limit <= 0 || lease_backend_pid(r->lease) == 0)
        return 0;
    int nbusy = keycount_keys(r->inflight);
    const char **busy = xmalloc(sizeof(*busy) * (size_t)(nbusy + 1));
    nbusy = keycount_list(r->inflight, busy, nbusy);
    int64_t t0 = clock_mono_us();
    int rc =
        outbox_claim(r->db, parts, nparts, busy, nbusy, lease_backend_pid(r->lease), limit, &batch);
    log_debug("claim: %d row(s) in %lld us (%d busy users, %d in flight)", batch.n,
              (long long)(clock_mono_us() - t0), nbusy, keycount_total(r->inflight));
    free(busy);
    metrics_add(METRIC_CLAIMS, 1);
    if (rc != 0) {
        db_check(r);
        return -1;
    }

    const char *blocked = NULL; /* a user whose earlier row could not be sent in this batch */
    for (int i = 0; i < batch.n && !atomic_load(&r->stop); ++i) {
        relay_event_t ev;
        char err[512], tp[EVENT_TRACEPARENT_LEN + 1];
        outbox_batch_row(&batch, i, &ev);
        if (blocked != NULL && strcmp(blocked, ev.user_id) == 0)
            continue;
        relay_msg_t *m = make_msg(r, &ev, tp);
        producer_status_t st;
        while ((st = producer_send(r->producer, &ev, m, err, sizeof(err))) == PRODUCER_QUEUE_FULL &&
               !atomic_load(&r->stop))
            producer_poll(r->producer, 1000);
        if (st == PRODUCER_OK) {
            msg_move(r, m, MSG_PRODUCED);
            continue;
        }
        blocked = ev.user_id;
        on_send_failure(r, m, st, err);
        if (r->db == NULL || producer_is_fatal(r->producer))
            break;
    }
    metrics_set(METRIC_INFLIGHT, keycount_total(r->inflight));
    int n = batch.n;
    outbox_batch_dispose(&batch);
    return n;
}

/* Half the retention, between 1 s and RETENTION_TICK_MS: short retentions are honoured. */
static long long retention_tick(const relay_t *r)
{
    long long t = (long long)r->cfg->outbox_retention_seconds * 500;
    return t < 1000 ? 1000 : t > RETENTION_TICK_MS ? RETENTION_TICK_MS : t;
}

static void housekeeping(relay_t *r, long long now)
{
    if (r->db == NULL)
        return;
    if (now >= r->next_stats_ms) {
        outbox_stats_t s;
        r->next_stats_ms = now + STATS_TICK_MS;
        check_schema(r);
        if (outbox_stats(r->db, &s) == 0) {
            metrics_set(METRIC_PENDING, s.pending);
            metrics_set(METRIC_HELD_BACK, s.held_back);
            metrics_set(METRIC_OLDEST_PENDING_MS, (long long)(s.oldest_age_seconds * 1000.0));
            metrics_set(METRIC_DEAD_LETTERS, s.dead_letters);
        } else {
            db_check(r);
            return;
        }
        /* Every relay exports the snapshot progress: the command serves no /metrics itself. */
        snapshot_status_t snap;
        if (r->schema_seen >= OUTBOX_SCHEMA_VERSION) {
            if (snapshot_read_status(r->db, &snap) != 0) {
                db_check(r);
                return;
            }
            metrics_set_snapshot(&snap);
        }
    }
    if (history_retention_tick(&r->history, r->db, now) != 0) {
        db_check(r);
        return;
    }
    if (now >= r->next_retention_ms && lease_held_count(r->lease) > 0) {
        int claimable[OUTBOX_PARTITIONS];
        int nc = lease_claimable(r->lease, claimable);
        if (sweep_erased(r, claimable, nc) < 0) {
            db_check(r);
            r->next_retention_ms = now + retention_tick(r);
            return;
        }
        int deleted = outbox_purge_published(r->db, r->cfg->outbox_retention_seconds, claimable, nc,
                                             RETENTION_BATCH);
        if (deleted < 0) {
            db_check(r);
            r->next_retention_ms = now + retention_tick(r);
            return;
        }
        if (deleted > 0)
            log_debug("retention: deleted %d published row(s)", deleted);
        /* A full batch means more is due: come back soon, still bounded per loop. */
        r->next_retention_ms = now + (deleted >= RETENTION_BATCH ? 200 : retention_tick(r));
    }
}

/* Sleeps until NOTIFY, a delivery report, a stop request or `timeout_ms`. */
static void wait_events(relay_t *r, int timeout_ms)
{
    struct pollfd pfd[4];
    int n = 0, dbi = -1;
    pfd[n++] = (struct pollfd){r->wake_pipe[0], POLLIN, 0};
    pfd[n++] = (struct pollfd){r->stop_pipe[0], POLLIN, 0};
    if (r->db != NULL && PQsocket(r->db) >= 0) {
        dbi = n;
        pfd[n++] = (struct pollfd){PQsocket(r->db), POLLIN, 0};
    }
    if (r->marking.head != NULL && r->markdb != NULL && PQsocket(r->markdb) >= 0)
        pfd[n++] = (struct pollfd){PQsocket(r->markdb), POLLIN, 0};
    if (timeout_ms < 0)
        timeout_ms = 0;
    /* A NOTIFY may have been read along with a query's result: then the socket stays quiet. */
    if (dbi >= 0 && timeout_ms > 0) {
        uint64_t parts = 0;
        int got = outbox_drain_notifies(r->db, &parts);
        if (got < 0) {
            db_lost(r);
            return;
        }
        if (got > 0 && (parts & lease_claimable_mask(r->lease)) != 0) {
            r->more = true;
            return;
        }
    }
    if (poll(pfd, (nfds_t)n, timeout_ms) < 0 && errno != EINTR)
        log_warn("poll: %s", strerror(errno));
    if (pfd[0].revents & POLLIN)
        drain_fd(r->wake_pipe[0]);
    if (dbi >= 0 && (pfd[dbi].revents & (POLLIN | POLLHUP | POLLERR))) {
        uint64_t parts = 0;
        int got = outbox_drain_notifies(r->db, &parts);
        if (got < 0)
            db_lost(r);
        else if (got > 0 && (parts & lease_claimable_mask(r->lease)) != 0)
            r->more = true; /* a row in a partition of ours committed */
    }
}

static void shutdown_flush(relay_t *r)
{
    long long deadline = clock_mono_ms() + RELAY_SHUTDOWN_FLUSH_MS;
    log_info("stopping: no new claims; flushing %d in-flight message(s)",
             keycount_total(r->inflight));
    while (r->producer != NULL && producer_outq_len(r->producer) > 0 &&
           clock_mono_ms() < deadline) {
        serve_reports(r, 100);
        if (r->db == NULL)
            ensure_db(r);
    }
    /* Give PostgreSQL a last chance to take the marks. */
    while ((r->reports.head != NULL || r->to_mark.head != NULL || r->marking.head != NULL) &&
           clock_mono_ms() < deadline) {
        ensure_db(r);
        settle(r);
        if (r->reports.head != NULL || r->to_mark.head != NULL || r->marking.head != NULL)
            usleep(2000);
    }
    if (r->producer != NULL) {
        int left = producer_outq_len(r->producer);
        if (left > 0)
            log_warn("%d message(s) still in the producer queue at shutdown; their rows stay "
                     "pending and are sent again (same ce_id)",
                     left);
        producer_destroy(r->producer, 0);
        r->producer = NULL;
    }
    if (r->reports.head != NULL || r->to_mark.head != NULL || r->marking.head != NULL)
        log_warn("some delivered rows could not be marked; they will be re-sent (same ce_id)");
    inval_flush(r->inval);
}

/* When the loop must run again at the latest (monotonic ms), if nothing wakes it before. */
static long long next_wakeup(const relay_t *r, long long now)
{
    long long until = r->next_poll_ms;
    if (r->next_lease_ms < until)
        until = r->next_lease_ms;
    if (r->db == NULL && r->db_next_attempt_ms < until)
        until = r->db_next_attempt_ms;
    if (r->more && r->claim_not_before_ms < until)
        until = r->claim_not_before_ms;
    if (r->reports.head != NULL || r->to_mark.head != NULL || inval_pending(r->inval) > 0)
        until = now + 100 < until ? now + 100 : until;
    if (r->more && now >= r->claim_not_before_ms && keycount_total(r->inflight) < r->window)
        until = now;
    return until;
}

int relay_run(relay_t *r)
{
    log_info("relay started: topic %s, batch %d, window %d, poll every %d ms", r->cfg->kafka_topic,
             r->cfg->relay_batch_size, r->window, r->cfg->relay_poll_interval_ms);
    while (!atomic_load(&r->stop)) {
        long long now = clock_mono_ms();

        ensure_db(r);
        if (r->producer != NULL && producer_is_fatal(r->producer))
            reset_producer(r);
        ensure_producer(r);

        /* "up" (and ready) only while a broker answers the producer's metadata requests */
        bool kafka_up = r->producer != NULL && producer_has_metadata(r->producer);
        metrics_set(METRIC_PRODUCER_UP, kafka_up);
        /* no partition is taken before the producer has reached a broker: another relay
         * that can publish gets it */
        if (now >= r->next_lease_ms && (kafka_up || lease_held_count(r->lease) > 0)) {
            int before = lease_held_count(r->lease);
            unsigned long long ended = lease_peers_ended(r->lease);
            if (lease_tick(r->lease, r->part_inflight) == 0 && lease_held_count(r->lease) > before)
                r->more = true;
            metrics_add(METRIC_TAKEOVERS, lease_peers_ended(r->lease) - ended);
            metrics_set(METRIC_PARTITIONS_HELD, lease_held_count(r->lease));
            if (r->db != NULL && lease_server_read_only(r->lease))
                db_lost(r); /* reconnects to the writable server (target_session_attrs) */
            r->next_lease_ms = now + LEASE_TICK_MS;
        }

        serve_reports(r, 0);
        if (inval_pending(r->inval) > 0)
            inval_flush(r->inval);

        bool full = false;
        if (r->db != NULL && r->producer != NULL && !producer_is_fatal(r->producer) &&
            now >= r->claim_not_before_ms && (r->more || now >= r->next_poll_ms) &&
            keycount_total(r->inflight) < r->window) {
            int n = claim_and_produce(r);
            r->more = false;
            r->next_poll_ms = now + r->cfg->relay_poll_interval_ms;
            if (n > 0) {
                producer_poll(r->producer, 0);
                full = n >= r->cfg->relay_batch_size;
                r->more = full;
            }
        }
        housekeeping(r, clock_mono_ms());

        if (full && keycount_total(r->inflight) < r->window)
            continue;
        now = clock_mono_ms();
        wait_events(r, (int)(next_wakeup(r, now) - now));
    }
    shutdown_flush(r);
    log_info("relay stopped");
    return 0;
}
