/*
 * A request's PostgreSQL statement: submitted through the thread's pool, timed into the
 * statement latency metrics and a CLIENT span before the handler's callback runs.
 */
#include <stdio.h>
#include "api/data/dbcall.h"
#include "api/http/metrics.h"
#include "api/http/respond.h"
#include "api/http/span.h"
#include "common/clock.h"

/* Every statement of a request ends here first: its latency, its span, then the handler. */
static void on_db_result(void *data, const PGresult *res, pgpool_err_t err)
{
    api_req_t *ar = data;
    struct timespec now;

    clock_mono_ts(&now);
    metrics_observe_db(ar->thr->index, (int)ar->db_stmt, clock_elapsed_s(&ar->db_t0, &now) * 1e3);
    if (ar->sampled) {
        char name[64];
        const char *stmt = pgpool_stmt_name(ar->db_stmt);
        snprintf(name, sizeof(name), "pg %s", stmt);
        api_span_client(ar, name, "postgresql", stmt, &ar->db_t0, &now,
                        err != PGPOOL_OK || PQresultStatus(res) == PGRES_FATAL_ERROR);
    }
    ar->db_cb(data, res, err);
}

int api_db_submit(api_req_t *ar, pgpool_stmt_t stmt, int nparams, const char *const *values,
                  pgpool_cb cb)
{
    pgpool_err_t err;

    ar->db_stmt = stmt;
    ar->db_cb = cb;
    clock_mono_ts(&ar->db_t0);
    err = pgpool_submit(ar->thr->pool, stmt, nparams, values, on_db_result, ar, &ar->op);
    if (err != PGPOOL_OK) {
        ar->op = NULL;
        api_respond_unavailable(ar, err);
        return -1;
    }
    return 0;
}

bool api_db_single_row(api_req_t *ar, const PGresult *res, pgpool_err_t err, int min_fields)
{
    ar->op = NULL;
    if (err != PGPOOL_OK) {
        api_respond_unavailable(ar, err);
        return false;
    }
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1 ||
        PQnfields(res) < min_fields) {
        api_respond_sql_error(ar, res);
        return false;
    }
    return true;
}
