/*
 * Relay metrics in Prometheus text format, and a one-connection-at-a-time HTTP/1.0 responder in
 * its own thread (poll() with a stop pipe). Scrapes are rare and tiny, so nothing fancier.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include "common/log.h"
#include "common/otel.h"
#include "common/procstat.h"
#include "relay/metrics.h"

#define LOG_MODULE "metrics"

/* Both come from the top CMakeLists.txt (the version setting and `git rev-parse` at configure). */
#ifndef PROFILE_VERSION
#define PROFILE_VERSION "unknown"
#endif
#ifndef PROFILE_GIT_COMMIT
#define PROFILE_GIT_COMMIT "unknown"
#endif

static const double buckets_s[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                   0.25,   0.5,   1,      2.5,   5,    10,    30};
#define NBUCKETS (sizeof(buckets_s) / sizeof(buckets_s[0]))

static atomic_llong values[METRIC_COUNT];
static atomic_ullong published[EVENT_TYPE_COUNT];
static atomic_ullong failed[EVENT_TYPE_COUNT];
static atomic_ullong hist[NBUCKETS + 1];
static atomic_ullong hist_sum_us;
static atomic_ullong hist_count;

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

static void gauge(strbuf_t *o, const char *name, const char *help, const char *kind, double v)
{
    strbuf_appendf(o, "# HELP %s %s\n# TYPE %s %s\n%s %.17g\n", name, help, name, kind, name, v);
}

void metrics_render(strbuf_t *o)
{
    uint64_t exported, dropped, otel_failed;

    strbuf_appendf(o,
                   "# HELP profile_relay_build_info Version and git commit of this build.\n"
                   "# TYPE profile_relay_build_info gauge\n"
                   "profile_relay_build_info{version=\"%s\",commit=\"%s\"} 1\n",
                   PROFILE_VERSION, PROFILE_GIT_COMMIT);
    strbuf_append_str(o, "# HELP relay_events_published_total Events Kafka confirmed, by type.\n"
                         "# TYPE relay_events_published_total counter\n");
    for (int t = 0; t < EVENT_TYPE_COUNT; ++t)
        strbuf_appendf(o, "relay_events_published_total{type=\"%s\"} %llu\n",
                       event_type_name((event_type_t)t), (unsigned long long)published[t]);
    strbuf_append_str(o, "# HELP relay_events_failed_total Failed deliveries (retried or dead-"
                         "lettered), by type.\n# TYPE relay_events_failed_total counter\n");
    for (int t = 0; t < EVENT_TYPE_COUNT; ++t)
        strbuf_appendf(o, "relay_events_failed_total{type=\"%s\"} %llu\n",
                       event_type_name((event_type_t)t), (unsigned long long)failed[t]);

    strbuf_append_str(o, "# HELP relay_commit_to_delivery_seconds Outbox created_at to Kafka "
                         "delivery report.\n# TYPE relay_commit_to_delivery_seconds histogram\n");
    unsigned long long cum = 0;
    for (size_t b = 0; b < NBUCKETS; ++b) {
        cum += hist[b];
        strbuf_appendf(o, "relay_commit_to_delivery_seconds_bucket{le=\"%g\"} %llu\n", buckets_s[b],
                       cum);
    }
    cum += hist[NBUCKETS];
    strbuf_appendf(o, "relay_commit_to_delivery_seconds_bucket{le=\"+Inf\"} %llu\n", cum);
    strbuf_appendf(o, "relay_commit_to_delivery_seconds_sum %.6f\n", (double)hist_sum_us / 1e6);
    strbuf_appendf(o, "relay_commit_to_delivery_seconds_count %llu\n",
                   (unsigned long long)hist_count);

    gauge(o, "relay_dead_lettered_total", "Events moved to the dead-letter table.", "counter",
          (double)metrics_get(METRIC_DEAD_LETTERED));
    gauge(o, "relay_dead_letters", "Rows in outbox_dead_letters (users held back).", "gauge",
          (double)metrics_get(METRIC_DEAD_LETTERS));
    gauge(o, "relay_pending_rows", "Outbox rows not yet published.", "gauge",
          (double)metrics_get(METRIC_PENDING));
    gauge(o, "relay_oldest_pending_age_seconds", "Age of the oldest unpublished outbox row.",
          "gauge", (double)metrics_get(METRIC_OLDEST_PENDING_MS) / 1000.0);
    gauge(o, "relay_partitions_held", "Outbox partitions leased by this relay.", "gauge",
          (double)metrics_get(METRIC_PARTITIONS_HELD));
    gauge(o, "relay_inflight_messages", "Messages produced and not yet reported.", "gauge",
          (double)metrics_get(METRIC_INFLIGHT));
    gauge(o, "relay_claims_total", "Claim queries run.", "counter",
          (double)metrics_get(METRIC_CLAIMS));
    gauge(o, "relay_history_rows_removed_total",
          "History entries removed by retention (HISTORY_RETENTION_DAYS).", "counter",
          (double)metrics_get(METRIC_HISTORY_ROWS_REMOVED));
    gauge(o, "relay_history_retention_batches_total",
          "History retention batches run (each removes at most HISTORY_RETENTION_BATCH rows).",
          "counter", (double)metrics_get(METRIC_HISTORY_RETENTION_BATCHES));
    gauge(o, "relay_pg_up", "1 when the relay's PostgreSQL connection is up.", "gauge",
          (double)metrics_get(METRIC_PG_UP));
    gauge(o, "relay_pg_reconnects_total", "PostgreSQL reconnections.", "counter",
          (double)metrics_get(METRIC_PG_RECONNECTS));
    gauge(o, "relay_producer_up", "1 when the Kafka producer is usable.", "gauge",
          (double)metrics_get(METRIC_PRODUCER_UP));
    gauge(o, "relay_producer_resets_total", "Producers recreated after a fatal error.", "counter",
          (double)metrics_get(METRIC_PRODUCER_RESETS));
    gauge(o, "relay_redis_up", "1 when Redis answered the last invalidation.", "gauge",
          (double)metrics_get(METRIC_REDIS_UP));
    gauge(o, "relay_redis_invalidations_total", "Users' cache keys invalidated.", "counter",
          (double)metrics_get(METRIC_REDIS_INVALIDATIONS));
    gauge(o, "relay_redis_errors_total", "Failed Redis connections or commands.", "counter",
          (double)metrics_get(METRIC_REDIS_ERRORS));
    gauge(o, "relay_redis_invalidations_dropped_total",
          "Invalidations dropped because the retry queue was full.", "counter",
          (double)metrics_get(METRIC_REDIS_DROPPED));

    otel_stats(&exported, &dropped, &otel_failed);
    gauge(o, "relay_otel_spans_exported_total", "Publish spans accepted by the OTLP endpoint.",
          "counter", (double)exported);
    gauge(o, "relay_otel_spans_dropped_total",
          "Publish spans dropped because the export queue was full.", "counter", (double)dropped);
    gauge(o, "relay_otel_spans_failed_total", "Publish spans lost to failed OTLP exports.",
          "counter", (double)otel_failed);
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
        char body[160];
        int pg = metrics_get(METRIC_PG_UP) != 0, kp = metrics_get(METRIC_PRODUCER_UP) != 0;
        int n = snprintf(body, sizeof(body),
                         "{\"status\":\"%s\",\"postgres\":\"%s\",\"kafka_producer\":\"%s\","
                         "\"redis\":\"%s\"}",
                         pg && kp ? "up" : "down", pg ? "up" : "down", kp ? "up" : "down",
                         metrics_get(METRIC_REDIS_UP) ? "up" : "unknown-or-down");
        respond(fd, pg && kp ? 200 : 503, pg && kp ? "OK" : "Service Unavailable",
                "application/json", body, (size_t)n);
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
    struct sockaddr_in sa;
    socklen_t sl = sizeof(sa);
    int one = 1;

    listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (listen_fd < 0)
        goto Error;
    setsockopt(listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_ANY);
    sa.sin_port = htons((uint16_t)port);
    if (bind(listen_fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(listen_fd, 16) != 0 ||
        getsockname(listen_fd, (struct sockaddr *)&sa, &sl) != 0)
        goto Error;
    bound_port = ntohs(sa.sin_port);
    if (pipe2(stop_pipe, O_CLOEXEC) != 0)
        goto Error;
    if (pthread_create(&thread, NULL, server_main, NULL) != 0)
        goto Error;
    return 0;
Error:
    snprintf(errbuf, errlen, "RELAY_METRICS_PORT: cannot listen on port %d: %s", port,
             strerror(errno));
    if (listen_fd >= 0)
        close(listen_fd);
    listen_fd = -1;
    return -1;
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
