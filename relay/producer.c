/*
 * librdkafka producer for the relay: idempotent and gapless, copying every message, with the
 * outbox row's identity as the opaque and delivery reports forwarded to the relay loop.
 */
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <librdkafka/rdkafka.h>
#include "common/log.h"
#include "relay/producer.h"

#define LOG_MODULE "producer"

struct st_producer_t {
    rd_kafka_t *rk;
    rd_kafka_topic_t *rkt;
    char *ce_source;
    producer_dr_cb_t dr_cb;
    void *app;
    atomic_bool fatal;
};

/* Errors that no retry can fix: the message itself is unacceptable. */
static bool is_permanent(rd_kafka_resp_err_t err)
{
    switch (err) {
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_INVALID_MSG_SIZE:
    case RD_KAFKA_RESP_ERR_INVALID_MSG:
    case RD_KAFKA_RESP_ERR_INVALID_RECORD:
    case RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE:
        return true;
    default:
        return false;
    }
}

static void dr_msg_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    producer_t *p = opaque;
    bool ok = m->err == RD_KAFKA_RESP_ERR_NO_ERROR;
    p->dr_cb(p->app, m->_private, ok, !ok && is_permanent(m->err),
             ok ? "" : rd_kafka_err2str(m->err));
}

static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    producer_t *p = opaque;
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        char buf[512];
        rd_kafka_resp_err_t orig = rd_kafka_fatal_error(rk, buf, sizeof(buf));
        log_error("fatal producer error %s: %s; the producer will be recreated",
                  rd_kafka_err2name(orig), buf);
        atomic_store(&p->fatal, true);
        return;
    }
    /* Transport and broker-down errors are retried by librdkafka itself. */
    log_warn("kafka: %s: %s", rd_kafka_err2name((rd_kafka_resp_err_t)err), reason);
}

static void rk_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    if (level <= 3)
        log_error("rdkafka %s: %s", fac, buf);
    else if (level <= 5)
        log_warn("rdkafka %s: %s", fac, buf);
    else
        log_debug("rdkafka %s: %s", fac, buf);
}

static int set(rd_kafka_conf_t *c, const char *k, const char *v, char *errbuf, size_t errlen)
{
    if (rd_kafka_conf_set(c, k, v, errbuf, errlen) != RD_KAFKA_CONF_OK)
        return -1;
    return 0;
}

producer_t *producer_create(const producer_conf_t *conf, producer_dr_cb_t dr_cb, void *app,
                            char *errbuf, size_t errlen)
{
    producer_t *p = xcalloc(1, sizeof(*p));
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    char linger[16], timeout[16];

    snprintf(linger, sizeof(linger), "%d", conf->linger_ms);
    snprintf(timeout, sizeof(timeout), "%d", conf->message_timeout_ms);
    p->dr_cb = dr_cb;
    p->app = app;
    p->ce_source = xstrdup(conf->ce_source);
    atomic_init(&p->fatal, false);

    if (set(c, "bootstrap.servers", conf->bootstrap_servers, errbuf, errlen) != 0 ||
        set(c, "client.id", "profile-relay", errbuf, errlen) != 0 ||
        set(c, "enable.idempotence", "true", errbuf, errlen) != 0 ||
        set(c, "enable.gapless.guarantee", "true", errbuf, errlen) != 0 ||
        set(c, "acks", "all", errbuf, errlen) != 0 ||
        /* One Produce request in flight per broker connection. Idempotence would allow 5 with
         * real Kafka, but librdkafka 2.0.2's mock broker acknowledges a retried batch that falls
         * within its last 5 requests as a duplicate without storing it (tests/faults/
         * repro_mock_inflight.py shows acked messages going missing), and every local test runs
         * on that mock. Batches stay large (linger, batch.size), so throughput holds. */
        set(c, "max.in.flight.requests.per.connection", "1", errbuf, errlen) != 0 ||
        set(c, "linger.ms", linger, errbuf, errlen) != 0 ||
        set(c, "batch.num.messages", "10000", errbuf, errlen) != 0 ||
        set(c, "batch.size", "1000000", errbuf, errlen) != 0 ||
        set(c, "queue.buffering.max.messages", "200000", errbuf, errlen) != 0 ||
        set(c, "message.timeout.ms", timeout, errbuf, errlen) != 0 ||
        set(c, "partitioner", "murmur2_random", errbuf, errlen) != 0 ||
        set(c, "reconnect.backoff.ms", "100", errbuf, errlen) != 0 ||
        set(c, "reconnect.backoff.max.ms", "2000", errbuf, errlen) != 0)
        goto Error;
    rd_kafka_conf_set_opaque(c, p);
    rd_kafka_conf_set_dr_msg_cb(c, dr_msg_cb);
    rd_kafka_conf_set_error_cb(c, error_cb);
    rd_kafka_conf_set_log_cb(c, rk_log_cb);

    p->rk = rd_kafka_new(RD_KAFKA_PRODUCER, c, errbuf, errlen);
    if (p->rk == NULL)
        goto Error; /* conf is still ours */
    c = NULL;
    p->rkt = rd_kafka_topic_new(p->rk, conf->topic, NULL);
    if (p->rkt == NULL) {
        snprintf(errbuf, errlen, "topic %s: %s", conf->topic,
                 rd_kafka_err2str(rd_kafka_last_error()));
        goto Error;
    }
    return p;

Error:
    if (c != NULL)
        rd_kafka_conf_destroy(c);
    if (p->rk != NULL)
        rd_kafka_destroy(p->rk);
    free(p->ce_source);
    free(p);
    return NULL;
}

void producer_destroy(producer_t *p, int timeout_ms)
{
    if (p == NULL)
        return;
    if (!atomic_load(&p->fatal))
        rd_kafka_flush(p->rk, timeout_ms);
    int left = rd_kafka_outq_len(p->rk);
    if (left > 0) {
        log_warn("%d message(s) not delivered at producer shutdown; they stay pending", left);
        rd_kafka_purge(p->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        rd_kafka_poll(p->rk, 0);
    }
    rd_kafka_topic_destroy(p->rkt);
    rd_kafka_destroy(p->rk);
    free(p->ce_source);
    free(p);
}

producer_status_t producer_send(producer_t *p, const relay_event_t *ev, void *opaque, char *errbuf,
                                size_t errlen)
{
    event_header_buf_t scratch;
    event_header_t h[EVENT_HEADER_MAX];
    rd_kafka_headers_t *hdrs = rd_kafka_headers_new(EVENT_HEADER_MAX);
    rd_kafka_resp_err_t err;

    if (atomic_load(&p->fatal)) {
        rd_kafka_headers_destroy(hdrs);
        snprintf(errbuf, errlen, "producer in fatal state");
        return PRODUCER_ERROR;
    }
    int nh = event_build_headers(ev, p->ce_source, &scratch, h);
    for (int i = 0; i < nh; ++i)
        rd_kafka_header_add(hdrs, h[i].name, -1, h[i].value, (ssize_t)h[i].len);

    /* F_COPY: librdkafka copies key and value, so dropping const is safe. */
    void *key = (void *)(uintptr_t)ev->user_id, *value = (void *)(uintptr_t)ev->payload;
    err = rd_kafka_producev(p->rk, RD_KAFKA_V_RKT(p->rkt), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                            RD_KAFKA_V_KEY(key, strlen(ev->user_id)),
                            RD_KAFKA_V_VALUE(value, ev->payload_len), RD_KAFKA_V_HEADERS(hdrs),
                            RD_KAFKA_V_OPAQUE(opaque), RD_KAFKA_V_END);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
        return PRODUCER_OK; /* hdrs now belong to the message */
    rd_kafka_headers_destroy(hdrs);
    snprintf(errbuf, errlen, "%s", rd_kafka_err2str(err));
    if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL)
        return PRODUCER_QUEUE_FULL;
    if (is_permanent(err))
        return PRODUCER_PERMANENT;
    return PRODUCER_ERROR;
}

int producer_poll(producer_t *p, int timeout_ms)
{
    return rd_kafka_poll(p->rk, timeout_ms);
}

int producer_outq_len(producer_t *p)
{
    return rd_kafka_outq_len(p->rk);
}

bool producer_is_fatal(const producer_t *p)
{
    return atomic_load(&((producer_t *)(uintptr_t)p)->fatal);
}

void producer_purge(producer_t *p, bool inflight)
{
    int flags = RD_KAFKA_PURGE_F_QUEUE;
    if (inflight)
        flags |= RD_KAFKA_PURGE_F_INFLIGHT;
    rd_kafka_purge(p->rk, flags);
}

void producer_set_wakeup_fd(producer_t *p, int fd)
{
    rd_kafka_queue_t *q = rd_kafka_queue_get_main(p->rk);
    rd_kafka_queue_io_event_enable(q, fd, "1", 1);
    rd_kafka_queue_destroy(q);
}
