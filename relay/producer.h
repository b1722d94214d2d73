/*
 * The relay's Kafka producer: the only place in the product that includes rdkafka.h (STYLE.md
 * rule 4). An idempotent, gapless producer whose delivery reports are handed to a callback
 * during producer_poll()/producer_flush(), on the calling thread.
 */
#ifndef PROFILE_RELAY_PRODUCER_H
#define PROFILE_RELAY_PRODUCER_H

#include <stdbool.h>
#include <stddef.h>
#include "common/alloc.h"
#include "relay/event.h"

typedef struct st_producer_t producer_t;

/** Outcome of producer_send(). */
typedef enum {
    PRODUCER_OK = 0,
    PRODUCER_QUEUE_FULL, /* local queue full: poll and try again */
    PRODUCER_PERMANENT,  /* this message can never be published (e.g. too large) */
    PRODUCER_ERROR,      /* producer unusable (fatal) or other failure: retry later */
} producer_status_t;

/**
 * Delivery report: `msg_opaque` as given to producer_send(); `ok` when Kafka stored the message;
 * otherwise `permanent` tells whether retrying can ever succeed, and `errstr` describes the error
 * (valid only during the call).
 */
typedef void (*producer_dr_cb_t)(void *app, void *msg_opaque, bool ok, bool permanent,
                                 const char *errstr);

typedef struct st_producer_conf_t {
    const char *bootstrap_servers;
    const char *topic;
    const char *ce_source;
    int linger_ms;
    int message_timeout_ms;
    /* Kafka security (validated by common/config.c): NULL or "" = not set */
    const char *security_protocol; /* plaintext, ssl, sasl_plaintext, sasl_ssl */
    const char *sasl_mechanism;    /* PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 */
    const char *sasl_username;
    const char *sasl_password; /* a secret: never logged */
    const char *ssl_ca_file;
} producer_conf_t;

/* librdkafka's configuration object; only producer.c and tests include rdkafka.h. */
struct rd_kafka_conf_s;

/**
 * Creates the producer. `dr_cb(app, ...)` is called for every message sent, from
 * producer_poll()/producer_flush() only. Returns NULL and fills errbuf on a configuration
 * error. Brokers need not be reachable.
 */
producer_t *producer_create(const producer_conf_t *conf, producer_dr_cb_t dr_cb, void *app,
                            char *errbuf, size_t errlen);

/**
 * Builds the librdkafka configuration the producer runs with (brokers, idempotence, batching,
 * security.protocol, sasl.*, ssl.ca.location), without callbacks. Returns NULL and fills errbuf
 * when librdkafka refuses a value. The caller owns the result (rd_kafka_conf_destroy).
 */
struct rd_kafka_conf_s *producer_build_conf(const producer_conf_t *conf, char *errbuf,
                                            size_t errlen);

/**
 * True while the producer's latest metadata request for the topic succeeded (a background
 * probe asks every second, 2 s timeout): a broker answers and the topic has partitions. False
 * from creation until the first answer and while no broker can be reached. Thread-safe.
 */
bool producer_has_metadata(const producer_t *p);

/** Waits at most `timeout_ms` for in-flight messages, then destroys. NULL-safe. */
void producer_destroy(producer_t *p, int timeout_ms);

/**
 * Enqueues `ev` (key = user id, value = payload, CloudEvents headers). The data is copied.
 * `opaque` comes back in the delivery report; on any status but PRODUCER_OK no report follows.
 * On PRODUCER_PERMANENT/PRODUCER_ERROR `errbuf` holds the reason.
 */
PROFILE_MUSTCHECK producer_status_t producer_send(producer_t *p, const relay_event_t *ev,
                                                  void *opaque, char *errbuf, size_t errlen);

/** Serves delivery reports and errors for up to `timeout_ms`. Returns the number served. */
int producer_poll(producer_t *p, int timeout_ms);

/** Messages not yet reported (queued or in flight). */
int producer_outq_len(producer_t *p);

/** True once librdkafka raised a fatal error: the producer must be destroyed and recreated. */
bool producer_is_fatal(const producer_t *p);

/** Fails what is still queued locally (and, with `inflight`, what waits for a broker). */
void producer_purge(producer_t *p, bool inflight);

/**
 * Asks librdkafka to write to `fd` when a report is ready, so the caller can poll() on it
 * together with other sockets. The caller drains the fd.
 */
void producer_set_wakeup_fd(producer_t *p, int fd);

#endif
