/*
 * History retention for the relay's housekeeping: one bounded DELETE batch per due tick, each
 * its own short transaction, so no lock is held for long and writers never wait on it.
 */
#include <stdio.h>
#include <stdlib.h>
#include "common/db.h"
#include "common/log.h"
#include "relay/metrics.h"
#include "relay/history_retention.h"

#define LOG_MODULE "history_retention"

/* After a full batch: more is due; the pause lets writers and the relay loop run in between. */
#define RETENTION_PAUSE_MS 100
/* After a partial batch (nothing more is old enough yet). */
#define RETENTION_IDLE_MS 60000
/* Another relay is running a batch right now: it is making progress, look again later. */
#define RETENTION_BUSY_MS 1000
#define RETENTION_ERROR_MS 30000

static const char purge_sql[] = "SELECT history_retention_purge($1::int, $2::int)";

void history_retention_init(history_retention_t *r, int days, int batch)
{
    r->days = days;
    r->batch = batch;
    r->next_ms = 0;
    r->failing = false;
}

int history_retention_tick(history_retention_t *r, PGconn *conn, long long now_ms)
{
    char days[16], batch[16];
    if (r->days <= 0 || conn == NULL || now_ms < r->next_ms)
        return 0;
    snprintf(days, sizeof(days), "%d", r->days);
    snprintf(batch, sizeof(batch), "%d", r->batch);
    const char *vals[] = {days, batch};
    PGresult *res = db_query(conn, "history retention", purge_sql, 2, vals);
    if (res == NULL) {
        if (!r->failing)
            log_warn("history retention failed; retrying every %d s", RETENTION_ERROR_MS / 1000);
        r->failing = true;
        r->next_ms = now_ms + RETENTION_ERROR_MS;
        return -1;
    }
    if (r->failing)
        log_info("history retention running again");
    r->failing = false;
    if (PQgetisnull(res, 0, 0)) {
        PQclear(res);
        r->next_ms = now_ms + RETENTION_BUSY_MS;
        return 0;
    }
    int n = atoi(PQgetvalue(res, 0, 0));
    PQclear(res);
    metrics_add(METRIC_HISTORY_RETENTION_BATCHES, 1);
    if (n > 0) {
        metrics_add(METRIC_HISTORY_ROWS_REMOVED, (unsigned long long)n);
        log_debug("history retention: removed %d entr%s older than %d day(s)", n,
                  n == 1 ? "y" : "ies", r->days);
    }
    r->next_ms = now_ms + (n >= r->batch ? RETENTION_PAUSE_MS : RETENTION_IDLE_MS);
    return 0;
}
