/*
 * History retention (HISTORY_RETENTION_DAYS): the relay's housekeeping removes viewing-history
 * entries older than the retention, one bounded batch per call of history_retention_purge()
 * (migrations/V005), with a pause between batches. Resume points are never touched.
 */
#ifndef PROFILE_RELAY_HISTORY_RETENTION_H
#define PROFILE_RELAY_HISTORY_RETENTION_H

#include <stdbool.h>
#include <libpq-fe.h>
#include "common/alloc.h"

/* Embedded in the relay; all fields are private to history_retention.c. */
typedef struct st_history_retention_t {
    int days;  /* 0: keep everything (history_retention_tick() does nothing) */
    int batch; /* rows per statement */
    long long next_ms;
    bool failing; /* the last batch failed: logged once until one succeeds */
} history_retention_t;

/** Sets up `r` for `days` (0 = off) and `batch` rows per statement; the first batch is due at once.
 */
void history_retention_init(history_retention_t *r, int days, int batch);

/**
 * Runs one batch on `conn` when one is due at `now_ms` (monotonic milliseconds) and schedules
 * the next: after a short pause when the batch was full, after a longer one otherwise or when
 * another relay held the retention lock. Counts removed rows and batches in the relay metrics.
 * Returns 0 (also when nothing was due or retention is off), or -1 when the statement failed
 * (logged; the caller checks the connection). Loop thread only.
 */
PROFILE_MUSTCHECK int history_retention_tick(history_retention_t *r, PGconn *conn,
                                             long long now_ms);

#endif
