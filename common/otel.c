/*
 * OTLP/HTTP JSON span exporter: a bounded queue filled by request threads and drained by one
 * background thread that POSTs batches to <endpoint>/v1/traces. Failed posts are counted and
 * dropped: tracing must never hold back or slow the service.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include "common/buf.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/otel.h"

#define LOG_MODULE "otel"

#define BATCH_MAX 512
#define FLUSH_INTERVAL_MS 1000
#define IO_TIMEOUT_MS 2000

typedef struct st_queued_span_t {
    otel_span_t span;
    char strings[]; /* copies of name and string attribute values */
} queued_span_t;

static struct {
    int running;
    pthread_t thread;
    pthread_mutex_t mutex;
    pthread_cond_t cond;
    queued_span_t **ring;
    size_t cap, head, count;
    int stopping;
    uint64_t stop_deadline_ns; /* past it, what is still queued is dropped */
    char host[256], port[16], path[512], service[128];
    uint64_t threshold; /* sample when the trace id's first 8 bytes <= threshold */
    uint64_t exported, dropped, failed;
} exp_state = {.mutex = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};

uint64_t otel_now_ns(void)
{
    return (uint64_t)clock_wall_ns();
}

void otel_random_bytes(uint8_t *buf, size_t len)
{
    size_t got = 0;
    while (got < len) {
        ssize_t n = getrandom(buf + got, len - got, 0);
        if (n <= 0) {
            static __thread unsigned seed;
            if (seed == 0)
                seed = (unsigned)otel_now_ns() ^ (unsigned)(uintptr_t)&seed;
            for (; got < len; ++got)
                buf[got] = (uint8_t)(rand_r(&seed) >> 7);
            return;
        }
        got += (size_t)n;
    }
}

static int parse_endpoint(const char *endpoint, char *errbuf, size_t errlen)
{
    const char *p, *host_end, *colon;
    size_t hlen;

    if (strncmp(endpoint, "http://", 7) != 0) {
        snprintf(errbuf, errlen,
                 "OTEL_EXPORTER_OTLP_ENDPOINT: only http:// endpoints are supported");
        return -1;
    }
    p = endpoint + 7;
    host_end = p + strcspn(p, "/");
    colon = memchr(p, ':', (size_t)(host_end - p));
    hlen = (size_t)((colon != NULL ? colon : host_end) - p);
    if (hlen == 0 || hlen >= sizeof(exp_state.host)) {
        snprintf(errbuf, errlen, "OTEL_EXPORTER_OTLP_ENDPOINT: bad host");
        return -1;
    }
    memcpy(exp_state.host, p, hlen);
    exp_state.host[hlen] = '\0';
    if (colon != NULL) {
        size_t plen = (size_t)(host_end - colon - 1);
        if (plen == 0 || plen >= sizeof(exp_state.port)) {
            snprintf(errbuf, errlen, "OTEL_EXPORTER_OTLP_ENDPOINT: bad port");
            return -1;
        }
        memcpy(exp_state.port, colon + 1, plen);
        exp_state.port[plen] = '\0';
    } else {
        strcpy(exp_state.port, "80");
    }
    snprintf(exp_state.path, sizeof(exp_state.path), "%s/v1/traces",
             strcmp(host_end, "/") == 0 ? "" : host_end);
    return 0;
}

bool otel_sampled(const uint8_t trace_id[16])
{
    uint64_t v = 0;
    if (!exp_state.running)
        return false;
    for (int i = 0; i < 8; ++i)
        v = (v << 8) | trace_id[8 + i];
    return v <= exp_state.threshold;
}

static int is_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; ++i)
        if (p[i] != 0)
            return 0;
    return 1;
}

void otel_export(const otel_span_t *span)
{
    size_t extra = strlen(span->name) + 1, off;
    queued_span_t *q;

    if (!exp_state.running)
        return;
    for (size_t i = 0; i < span->nattrs; ++i)
        extra += strlen(span->attrs[i].key) + 1 +
                 (span->attrs[i].str != NULL ? strlen(span->attrs[i].str) + 1 : 0);
    q = xmalloc(sizeof(*q) + extra);
    q->span = *span;
    off = 0;
#define COPY_STR(dst, src)                                                                         \
    do {                                                                                           \
        size_t l_ = strlen(src) + 1;                                                               \
        memcpy(q->strings + off, (src), l_);                                                       \
        (dst) = q->strings + off;                                                                  \
        off += l_;                                                                                 \
    } while (0)
    COPY_STR(q->span.name, span->name);
    for (size_t i = 0; i < span->nattrs; ++i) {
        COPY_STR(q->span.attrs[i].key, span->attrs[i].key);
        if (span->attrs[i].str != NULL)
            COPY_STR(q->span.attrs[i].str, span->attrs[i].str);
    }
#undef COPY_STR

    pthread_mutex_lock(&exp_state.mutex);
    if (exp_state.count == exp_state.cap) {
        ++exp_state.dropped;
        pthread_mutex_unlock(&exp_state.mutex);
        free(q);
        return;
    }
    exp_state.ring[(exp_state.head + exp_state.count) % exp_state.cap] = q;
    if (++exp_state.count >= BATCH_MAX)
        pthread_cond_signal(&exp_state.cond);
    pthread_mutex_unlock(&exp_state.mutex);
}

void otel_stats(uint64_t *exported, uint64_t *dropped, uint64_t *failed)
{
    pthread_mutex_lock(&exp_state.mutex);
    *exported = exp_state.exported;
    *dropped = exp_state.dropped;
    *failed = exp_state.failed;
    pthread_mutex_unlock(&exp_state.mutex);
}

static void append_hex(strbuf_t *b, const uint8_t *p, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    strbuf_append_char(b, '"');
    for (size_t i = 0; i < n; ++i) {
        char two[2] = {hex[p[i] >> 4], hex[p[i] & 15]};
        strbuf_append(b, two, 2);
    }
    strbuf_append_char(b, '"');
}

static void append_span(strbuf_t *b, const otel_span_t *s)
{
    strbuf_append_str(b, "{\"traceId\":");
    append_hex(b, s->trace_id, 16);
    strbuf_append_str(b, ",\"spanId\":");
    append_hex(b, s->span_id, 8);
    if (!is_zero(s->parent_span_id, 8)) {
        strbuf_append_str(b, ",\"parentSpanId\":");
        append_hex(b, s->parent_span_id, 8);
    }
    strbuf_append_str(b, ",\"name\":");
    strbuf_append_json_string(b, s->name, strlen(s->name));
    strbuf_appendf(b, ",\"kind\":%d,\"startTimeUnixNano\":\"%llu\",\"endTimeUnixNano\":\"%llu\"",
                   (int)s->kind, (unsigned long long)s->start_ns, (unsigned long long)s->end_ns);
    strbuf_append_str(b, ",\"attributes\":[");
    for (size_t i = 0; i < s->nattrs; ++i) {
        if (i > 0)
            strbuf_append_char(b, ',');
        strbuf_append_str(b, "{\"key\":");
        strbuf_append_json_string(b, s->attrs[i].key, strlen(s->attrs[i].key));
        if (s->attrs[i].str != NULL) {
            strbuf_append_str(b, ",\"value\":{\"stringValue\":");
            strbuf_append_json_string(b, s->attrs[i].str, strlen(s->attrs[i].str));
            strbuf_append_str(b, "}}");
        } else {
            strbuf_appendf(b, ",\"value\":{\"intValue\":\"%lld\"}}", (long long)s->attrs[i].num);
        }
    }
    strbuf_append_char(b, ']');
    if (!is_zero(s->link_trace_id, 16)) {
        strbuf_append_str(b, ",\"links\":[{\"traceId\":");
        append_hex(b, s->link_trace_id, 16);
        strbuf_append_str(b, ",\"spanId\":");
        append_hex(b, s->link_span_id, 8);
        strbuf_append_str(b, "}]");
    }
    strbuf_appendf(b, ",\"status\":{\"code\":%d}}", s->error ? 2 : 1);
}

static int wait_fd(int fd, short events)
{
    struct pollfd p = {.fd = fd, .events = events};
    int r;
    do {
        r = poll(&p, 1, IO_TIMEOUT_MS);
    } while (r < 0 && errno == EINTR);
    return r == 1 ? 0 : -1;
}

static int connect_endpoint(void)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL, *ai;
    int fd = -1;

    if (getaddrinfo(exp_state.host, exp_state.port, &hints, &res) != 0)
        return -1;
    for (ai = res; ai != NULL; ai = ai->ai_next) {
        int err = 0;
        socklen_t elen = sizeof(err);
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
            continue;
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0 ||
            (errno == EINPROGRESS && wait_fd(fd, POLLOUT) == 0 &&
             getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) == 0 && err == 0))
            break;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    return fd;
}

static int post_body(const strbuf_t *body)
{
    char head[1024], resp[256];
    int fd, hlen, status = 0;
    size_t sent = 0, total, got = 0;
    strbuf_t req;

    if ((fd = connect_endpoint()) < 0)
        return -1;
    hlen = snprintf(head, sizeof(head),
                    "POST %s HTTP/1.1\r\nHost: %s:%s\r\nContent-Type: application/json\r\n"
                    "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                    exp_state.path, exp_state.host, exp_state.port, body->len);
    strbuf_init(&req);
    strbuf_append(&req, head, (size_t)hlen);
    strbuf_append(&req, body->data, body->len);
    total = req.len;
    while (sent < total) {
        ssize_t n = send(fd, req.data + sent, total - sent, MSG_NOSIGNAL);
        if (n > 0) {
            sent += (size_t)n;
        } else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            if (wait_fd(fd, POLLOUT) != 0)
                break;
        } else {
            break;
        }
    }
    strbuf_dispose(&req);
    while (sent == total && got < sizeof(resp) - 1) {
        ssize_t n = recv(fd, resp + got, sizeof(resp) - 1 - got, 0);
        if (n > 0) {
            got += (size_t)n;
            resp[got] = '\0';
            if (strstr(resp, "\r\n") != NULL)
                break;
        } else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            if (wait_fd(fd, POLLIN) != 0)
                break;
        } else {
            break;
        }
    }
    close(fd);
    resp[got] = '\0';
    if (sscanf(resp, "HTTP/1.%*d %d", &status) != 1)
        return -1;
    return status >= 200 && status < 300 ? 0 : -1;
}

static void send_batch(queued_span_t **batch, size_t n)
{
    strbuf_t b;
    int ok;

    strbuf_init(&b);
    strbuf_append_str(&b, "{\"resourceSpans\":[{\"resource\":{\"attributes\":[{\"key\":"
                          "\"service.name\",\"value\":{\"stringValue\":");
    strbuf_append_json_string(&b, exp_state.service, strlen(exp_state.service));
    strbuf_append_str(&b, "}}]},\"scopeSpans\":[{\"scope\":{\"name\":\"profile-service\"},"
                          "\"spans\":[");
    for (size_t i = 0; i < n; ++i) {
        if (i > 0)
            strbuf_append_char(&b, ',');
        append_span(&b, &batch[i]->span);
        free(batch[i]);
    }
    strbuf_append_str(&b, "]}]}]}");
    ok = post_body(&b) == 0;
    strbuf_dispose(&b);

    pthread_mutex_lock(&exp_state.mutex);
    if (ok)
        exp_state.exported += n;
    else
        exp_state.failed += n;
    pthread_mutex_unlock(&exp_state.mutex);
    if (!ok)
        log_debug("export of %zu spans failed", n);
}

static void *export_main(void *arg)
{
    queued_span_t *batch[BATCH_MAX];

    for (;;) {
        size_t n = 0;
        int stop;
        struct timespec until;

        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += FLUSH_INTERVAL_MS / 1000;
        pthread_mutex_lock(&exp_state.mutex);
        while (!exp_state.stopping && exp_state.count < BATCH_MAX) {
            if (pthread_cond_timedwait(&exp_state.cond, &exp_state.mutex, &until) == ETIMEDOUT)
                break;
        }
        while (n < BATCH_MAX && exp_state.count > 0) {
            batch[n++] = exp_state.ring[exp_state.head];
            exp_state.head = (exp_state.head + 1) % exp_state.cap;
            --exp_state.count;
        }
        if (exp_state.stopping && otel_now_ns() > exp_state.stop_deadline_ns) {
            while (exp_state.count > 0) {
                free(exp_state.ring[exp_state.head]);
                exp_state.head = (exp_state.head + 1) % exp_state.cap;
                --exp_state.count;
                ++exp_state.dropped;
            }
        }
        stop = exp_state.stopping && exp_state.count == 0;
        pthread_mutex_unlock(&exp_state.mutex);
        if (n > 0)
            send_batch(batch, n);
        if (stop)
            break;
    }
    return NULL;
}

int otel_exporter_start(const char *endpoint, const char *service, double ratio,
                        size_t queue_capacity, char *errbuf, size_t errlen)
{
    if (exp_state.running)
        return 0;
    if (parse_endpoint(endpoint, errbuf, errlen) != 0)
        return -1;
    snprintf(exp_state.service, sizeof(exp_state.service), "%s", service);
    exp_state.threshold = ratio >= 1.0 ? UINT64_MAX : (uint64_t)(ratio * 18446744073709551615.0);
    exp_state.cap = queue_capacity < 16 ? 16 : queue_capacity;
    exp_state.ring = xcalloc(exp_state.cap, sizeof(*exp_state.ring));
    exp_state.head = exp_state.count = 0;
    exp_state.stopping = 0;
    if (pthread_create(&exp_state.thread, NULL, export_main, NULL) != 0) {
        snprintf(errbuf, errlen, "OTEL_EXPORTER_OTLP_ENDPOINT: cannot start the export thread");
        free(exp_state.ring);
        exp_state.ring = NULL;
        return -1;
    }
    exp_state.running = 1;
    log_info("exporting traces to %s:%s%s (ratio %g)", exp_state.host, exp_state.port,
             exp_state.path, ratio);
    return 0;
}

void otel_exporter_stop(int timeout_ms)
{
    if (!exp_state.running)
        return;
    pthread_mutex_lock(&exp_state.mutex);
    exp_state.stopping = 1;
    exp_state.stop_deadline_ns =
        otel_now_ns() + (uint64_t)(timeout_ms < 0 ? 0 : timeout_ms) * 1000000u;
    pthread_cond_signal(&exp_state.cond);
    pthread_mutex_unlock(&exp_state.mutex);
    pthread_join(exp_state.thread, NULL);
    exp_state.running = 0;
    free(exp_state.ring);
    exp_state.ring = NULL;
}
