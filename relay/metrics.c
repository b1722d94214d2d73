/*
 * Relay metrics in Prometheus text format, and a one-connection-at-a-time HTTP/1.0 responder in
 * its own thread (poll() with a stop pipe). Scrapes are rare and tiny, so nothing fancier.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include "common/log.h"
#include "common/net.h"
#include "common/otel.h"
#include "common/procstat.h"
#include "common/prom.h"
#include "relay/metrics.h"

#define LOG_MODULE "metrics"

static const double buckets_s[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                   0.25,   0.5,   1,      2.5,   5,    10,    30};
#define NBUCKETS (sizeof(buckets_s) / sizeof(buckets_s[0]))

static atomic_llong values[METRIC_COUNT];
static atomic_ullong published[EVENT_TYPE_COUNT];
static atomic_ullong failed[EVENT_TYPE_COUNT];
static atomic_ullong hist[NBUCKETS + 1];
static atomic_ullong hist_sum_us;
static atomic_ullong hist_count;

/* The snapshot figures move together (one row read): a mutex keeps a scrape from mixing two. */
static pthread_mutex_t snapshot_lock = PTHREAD_MUTEX_INITIALIZER;
static snapshot_status_t snapshot;

static pthread_t thread;
static int listen_fd = -1;
static int stop_pipe[2] = {-1, -1};
static int bound_port;

void metrics_add(metric_id_t id, unsigned long long n)
{
    atomic_fetch_add_explicit(&values[id], (long long)n, memory_order_relaxed);
}

void metrics_set(metric_id_t id, long long v)
{
    atomic_store_explicit(&values[id], v, memory_order_relaxed);
}

long long metrics_get(metric_id_t id)
{
    return atomic_load_explicit(&values[id], memory_order_relaxed);
}

void metrics_published(event_type_t type, long long latency_us)
{
    if ((int)type >= 0 && type < EVENT_TYPE_COUNT)
        atomic_fetch_add_explicit(&published[type], 1, memory_order_relaxed);
    if (latency_us < 0)
        latency_us = 0;
    size_t b = 0;
    while (b < NBUCKETS && (double)latency_us / 1e6 > buckets_s[b])
        ++b;
    atomic_fetch_add_explicit(&hist[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&hist_sum_us, (unsigned long long)latency_us, memory_order_relaxed);
    atomic_fetch_add_explicit(&hist_count, 1, memory_order_relaxed);
}

void metrics_failed(event_type_t type)
{
    if ((int)type >= 0 && type < EVENT_TYPE_COUNT)
        atomic_fetch_add_explicit(&failed[type], 1, memory_order_relaxed);
}

void metrics_set_snapshot(const snapshot_status_t *s)
{
    pthread_mutex_lock(&snapshot_lock);
    snapshot = *s;
    pthread_mutex_unlock(&snapshot_lock);
}

/* Single-value families in exposition order: every relay metric is profile_relay_*. */
static const struct {
    metric_id_t id;
    prom_type_t type;
    const char *name, *help;
    double scale; /* the stored value times this is the exposed one */
} simple[] = {
    {METRIC_DEAD_LETTERED, PROM_COUNTER, "profile_relay_dead_lettered_total",
     "Events moved to the dead-letter table.", 1},
    {METRIC_ERASED_DEAD_LETTERS, PROM_COUNTER, "profile_relay_erased_dead_letters_total",
     "Dead letters discarded because their user was erased (a consumer sees a gap before "
     "ProfileDeleted).",
     1},
    {METRIC_ERASED_USERS, PROM_COUNTER, "profile_relay_erased_users_total",
     "Users whose outbox rows were removed after their ProfileDeleted was published.", 1},
    {METRIC_DEAD_LETTERS, PROM_GAUGE, "profile_relay_dead_letters",
     "Rows in outbox_dead_letters (each holds its user back).", 1},
    {METRIC_PENDING, PROM_GAUGE, "profile_relay_pending_rows",
     "Outbox rows not yet published (held-back rows included).", 1},
    {METRIC_HELD_BACK, PROM_GAUGE, "profile_relay_held_back_rows",
     "Unpublished rows of users with a dead letter (the dead-lettered row included): they wait "
     "for a requeue or skip, not for the relay.",
     1},
    {METRIC_OLDEST_PENDING_MS, PROM_GAUGE, "profile_relay_oldest_pending_age_seconds",
     "Age of the oldest unpublished outbox row the relay may send (held-back rows excluded).",
     0.001},
    {METRIC_PARTITIONS_HELD, PROM_GAUGE, "profile_relay_partitions_held",
     "Outbox partitions leased by this relay.", 1},
    {METRIC_INFLIGHT, PROM_GAUGE, "profile_relay_inflight_messages",
     "Messages produced and not yet reported.", 1},
    {METRIC_CLAIMS, PROM_COUNTER, "profile_relay_claims_total", "Claim queries run.", 1},
    {METRIC_HISTORY_ROWS_REMOVED, PROM_COUNTER, "profile_relay_history_rows_removed_total",
     "History entries removed by retention (HISTORY_RETENTION_DAYS).", 1},
    {METRIC_HISTORY_RETENTION_BATCHES, PROM_COUNTER,
     "profile_relay_history_retention_batches_total",
     "History retention batches run (each removes at most HISTORY_RETENTION_BATCH rows).", 1},
    {METRIC_TAKEOVERS, PROM_COUNTER, "profile_relay_takeovers_total",
     "Silent peer relays whose lease backend this relay ended to take their partitions.", 1},
    {METRIC_PG_UP, PROM_GAUGE, "profile_relay_pg_up",
     "1 when the relay's PostgreSQL connection is up.", 1},
    {METRIC_PG_RECONNECTS, PROM_COUNTER, "profile_relay_pg_reconnects_total",
     "PostgreSQL reconnections.", 1},
    {METRIC_PRODUCER_UP, PROM_GAUGE, "profile_relay_producer_up",
     "1 when the Kafka producer is usable.", 1},
    {METRIC_SCHEMA_OK, PROM_GAUGE, "profile_relay_schema_ok",
     "1 when the database schema is at the version this relay needs (or newer).", 1},
    {METRIC_PRODUCER_RESETS, PROM_COUNTER, "profile_relay_producer_resets_total",
     "Producers recreated after a fatal error.", 1},
    {METRIC_REDIS_UP, PROM_GAUGE, "profile_relay_redis_up",
     "1 when Redis answered the last invalidation.", 1},
    {METRIC_REDIS_INVALIDATIONS, PROM_COUNTER, "profile_relay_redis_invalidations_total",
     "Users' cache keys invalidated.", 1},
    {METRIC_REDIS_ERRORS, PROM_COUNTER, "profile_relay_redis_errors_total",
     "Failed Redis connections or commands.", 1},
    {METRIC_REDIS_DROPPED, PROM_COUNTER, "profile_relay_redis_invalidations_dropped_total",
     "Invalidations dropped because the retry queue was full.", 1},
};

/* One counter family labelled by event type. */
static void by_type(strbuf_t *o, const char *name, const char *help, atomic_ullong *counts)
{
    prom_family(o, name, PROM_COUNTER, help);
    for (int t = 0; t < EVENT_TYPE_COUNT; ++t) {
        char labels[64];
        snprintf(labels, sizeof(labels), "type=\"%s\"", event_type_name((event_type_t)t));
        prom_sample_u64(o, name, labels, counts[t]);
    }
}

/*
 * Progress of the newest snapshot of all users (one series each, whatever the number of
 * snapshots ever run: the id is a label of the info series only). Zero when there is none.
 */
static void render_snapshot(strbuf_t *o)
{
    snapshot_status_t s;
    char labels[64];

    pthread_mutex_lock(&snapshot_lock);
    s = snapshot;
    pthread_mutex_unlock(&snapshot_lock);

    prom_family(o, "profile_relay_snapshot_info", PROM_GAUGE,
                "1, labelled with the id of the newest snapshot of all users (no series before "
                "the first).");
    if (s.present) {
        snprintf(labels, sizeof(labels), "snapshot_id=\"%s\"", s.id);
        prom_sample_u64(o, "profile_relay_snapshot_info", labels, 1);
    }
    prom_gauge(o, "profile_relay_snapshot_users",
               "Users of the newest snapshot of all users (those known at its start, or more).",
               (double)s.users_total);
    prom_gauge(o, "profile_relay_snapshot_users_done",
               "Users the newest snapshot of all users has written.", (double)s.users_done);
    prom_gauge(o, "profile_relay_snapshot_events_written",
               "Events the newest snapshot of all users has written to the outbox.",
               (double)s.events_written);
    prom_gauge(o, "profile_relay_snapshot_finished",
               "1 when the newest snapshot of all users has finished.", s.finished ? 1 : 0);
    prom_gauge(o, "profile_relay_snapshot_last_progress_timestamp_seconds",
               "When the newest snapshot of all users last recorded a user done (its start "
               "before the first), Unix time.",
               s.updated_at);
    prom_gauge(o, "profile_relay_snapshot_runners",
               "Snapshot commands connected to the database (0 with an unfinished snapshot: it "
               "was stopped or killed and resumes at the next snapshot --all).",
               (double)s.runners);
}

void metrics_render(strbuf_t *o)
{
    uint64_t exported, dropped, otel_failed, counts[NBUCKETS + 1];
    char labels[256];

    prom_family(o, "profile_relay_build_info", PROM_GAUGE, "Version and git commit of this build.");
    snprintf(labels, sizeof(labels), "version=\"%s\",commit=\"%s\"", PROFILE_VERSION,
             PROFILE_GIT_COMMIT);
    prom_sample_u64(o, "profile_relay_build_info", labels, 1);
    by_type(o, "profile_relay_events_published_total", "Events Kafka confirmed, by type.",
            published);
    by_type(o, "profile_relay_events_failed_total",
            "Failed deliveries (retried or dead-lettered), by type.", failed);

    prom_family(o, "profile_relay_commit_to_delivery_seconds", PROM_HISTOGRAM,
                "Outbox emitted_at (the write, just before its commit) to Kafka delivery report.");
    for (size_t b = 0; b <= NBUCKETS; ++b)
        counts[b] = hist[b];
    prom_histogram(o, "profile_relay_commit_to_delivery_seconds", NULL, buckets_s, NBUCKETS, counts,
                   (double)hist_sum_us / 1e6);

    for (size_t i = 0; i < sizeof(simple) / sizeof(simple[0]); ++i) {
        prom_family(o, simple[i].name, simple[i].type, simple[i].help);
        if (simple[i].scale == 1)
            prom_sample_i64(o, simple[i].name, NULL, metrics_get(simple[i].id));
        else
            prom_sample_double(o, simple[i].name, NULL,
                               (double)metrics_get(simple[i].id) * simple[i].scale);
    }

    render_snapshot(o);

    otel_stats(&exported, &dropped, &otel_failed);
    prom_counter(o, "profile_relay_otel_spans_exported_total",
                 "Publish spans accepted by the OTLP endpoint.", exported);
    prom_counter(o, "profile_relay_otel_spans_dropped_total",
                 "Publish spans dropped because the export queue was full.", dropped);
    prom_counter(o, "profile_relay_otel_spans_failed_total",
                 "Publish spans lost to failed OTLP exports.", otel_failed);
    procstat_render(o);
}

static void respond(int fd, int status, const char *reason, const char *ctype, const char *body,
                    size_t len)
{
    char head[256];
    int n = snprintf(head, sizeof(head),
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n\r\n",
                     status, reason, ctype, len);
    size_t off = 0, total = (size_t)n + len;
    while (off < total) {
        const char *p = off < (size_t)n ? head + off : body + (off - (size_t)n);
        size_t chunk = off < (size_t)n ? (size_t)n - off : total - off;
        ssize_t w = send(fd, p, chunk, MSG_NOSIGNAL);
        if (w <= 0) {
            if (w < 0 && errno == EINTR)
                continue;
            return;
        }
        off += (size_t)w;
    }
}

static void serve(int fd)
{
    char req[4096];
    size_t len = 0;
    struct timeval tv = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    while (len < sizeof(req) - 1) {
        ssize_t r = recv(fd, req + len, sizeof(req) - 1 - len, 0);
        if (r <= 0)
            break;
        len += (size_t)r;
        req[len] = '\0';
        if (strstr(req, "\r\n\r\n") != NULL || strstr(req, "\n\n") != NULL)
            break;
    }
    req[len] = '\0';
    char method[8] = "", path[256] = "";
    if (sscanf(req, "%7s %255s", method, path) != 2) {
        respond(fd, 400, "Bad Request", "text/plain", "bad request\n", 12);
        return;
    }
    char *q = strchr(path, '?');
    if (q != NULL)
        *q = '\0';
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
        respond(fd, 405, "Method Not Allowed", "text/plain", "method not allowed\n", 19);
        return;
    }
    if (strcmp(path, "/metrics") == 0) {
        strbuf_t b;
        strbuf_init(&b);
        metrics_render(&b);
        respond(fd, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", b.data, b.len);
        strbuf_dispose(&b);
    } else if (strcmp(path, "/health/live") == 0) {
        respond(fd, 200, "OK", "application/json", "{\"status\":\"up\"}", 15);
    } else if (strcmp(path, "/health/ready") == 0 || strcmp(path, "/health") == 0) {
        char body[200];
        int pg = metrics_get(METRIC_PG_UP) != 0, kp = metrics_get(METRIC_PRODUCER_UP) != 0;
        int schema = metrics_get(METRIC_SCHEMA_OK) != 0, ok = pg && kp && schema;
        int n =
            snprintf(body, sizeof(body),
                     "{\"status\":\"%s\",\"postgres\":\"%s\",\"schema\":\"%s\","
                     "\"kafka_producer\":\"%s\",\"redis\":\"%s\"}",
                     ok ? "up" : "down", pg ? "up" : "down",
                     schema ? "ok"
                     : pg   ? "too-old"
                            : "unknown",
                     kp ? "up" : "down", metrics_get(METRIC_REDIS_UP) ? "up" : "unknown-or-down");
        respond(fd, ok ? 200 : 503, ok ? "OK" : "Service Unavailable", "application/json", body,
                (size_t)n);
    } else {
        respond(fd, 404, "Not Found", "text/plain", "not found\n", 10);
    }
}

static void *server_main(void *arg)
{
    for (;;) {
        struct pollfd pfd[2] = {{listen_fd, POLLIN, 0}, {stop_pipe[0], POLLIN, 0}};
        int r = poll(pfd, 2, -1);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (pfd[1].revents)
            break;
        if (pfd[0].revents & POLLIN) {
            int fd = accept(listen_fd, NULL, NULL);
            if (fd >= 0) {
                serve(fd);
                close(fd);
            }
        }
    }
    return NULL;
}

int metrics_server_start(int port, char *errbuf, size_t errlen)
{
    char err[256];

    listen_fd = net_listen_tcp(port, 16, 0, &bound_port, err, sizeof(err));
    if (listen_fd < 0) {
        snprintf(errbuf, errlen, "RELAY_METRICS_PORT: %s", err);
        return -1;
    }
    if (pipe2(stop_pipe, O_CLOEXEC) != 0 || pthread_create(&thread, NULL, server_main, NULL) != 0) {
        snprintf(errbuf, errlen, "RELAY_METRICS_PORT: cannot start the metrics thread: %s",
                 strerror(errno));
        close(listen_fd);
        listen_fd = -1;
        return -1;
    }
    return 0;
}

int metrics_server_port(void)
{
    return bound_port;
}

void metrics_server_stop(void)
{
    if (listen_fd < 0)
        return;
    if (write(stop_pipe[1], "x", 1) < 0)
        log_warn("cannot wake the metrics thread");
    pthread_join(thread, NULL);
    close(listen_fd);
    close(stop_pipe[0]);
    close(stop_pipe[1]);
    listen_fd = -1;
}
