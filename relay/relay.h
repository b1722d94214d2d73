/*
 * The relay loop: lease partitions, claim pending outbox rows, produce them to Kafka, serve
 * delivery reports, mark delivered rows published, invalidate Redis, clean up old rows.
 */
#ifndef PROFILE_RELAY_RELAY_H
#define PROFILE_RELAY_RELAY_H

#include "common/alloc.h"
#include "common/config.h"

typedef struct st_relay_t relay_t;

/**
 * Creates the relay for `cfg` (borrowed; must outlive the relay). Connects to nothing yet.
 * Returns NULL with errbuf filled ("NAME: reason") on a configuration error.
 */
relay_t *relay_create(const app_config_t *cfg, char *errbuf, size_t errlen);

/**
 * Runs until relay_request_stop(): then stops claiming, flushes in-flight messages for at most
 * `RELAY_SHUTDOWN_FLUSH_MS`, marks what was delivered and returns 0.
 */
PROFILE_MUSTCHECK int relay_run(relay_t *r);

/** Async-signal-safe: asks relay_run() to finish. */
void relay_request_stop(relay_t *r);

/** NULL-safe. */
void relay_destroy(relay_t *r);

/** How long shutdown waits for Kafka to confirm in-flight messages. */
#define RELAY_SHUTDOWN_FLUSH_MS 10000

#endif
