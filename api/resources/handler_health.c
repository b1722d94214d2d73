/*
 * /health/live, /health/ready, /health and /metrics: no authentication. Readiness asks
 * PostgreSQL for schema_version() through the pool, so "ready" means a connection answered.
 * /health also reports Redis (informational: readiness does not depend on it).
 */
#include <stdio.h>
#include <stdlib.h>
#include "api/resources/handlers.h"
#include "api/http/respond.h"
#include "api/data/wait.h"
#include "api/http/metrics.h"
#include "common/buf.h"
#include "common/log.h"

#define LOG_MODULE "health"

static void send_health(api_req_t *ar, bool ok, const char *pg_state, int version)
{
    char body[512];
    int n;
    if (ar->rm.route == ROUTE_HEALTH_READY) {
        if (ok) {
            api_respond(ar, 200, "application/json; charset=utf-8",
                        H2O_STRLIT("{\"status\":\"ready\"}"));
        } else {
            h2o_add_header(&ar->req->pool, &ar->req->res.headers, H2O_TOKEN_RETRY_AFTER, NULL,
                           H2O_STRLIT("1"));
            api_respond_problem(ar, 503, "not-ready",
                                ar->thr->server->draining
                                    ? "The server is shutting down."
                                    : "PostgreSQL is unreachable, statements fail or the "
                                      "schema is too old.",
                                NULL, 0);
        }
        return;
    }
    /* Redis is reported but does not decide readiness: without it the API still serves
     * (reads from PostgreSQL, limiter failing open; docs/cache.md) */
    n = snprintf(body, sizeof(body),
                 "{\"status\":\"%s\",\"draining\":%s,\"checks\":{\"postgres\":{\"status\":\"%s\","
                 "\"schemaVersion\":%d,\"expectedSchemaVersion\":%d,\"connectionsReady\":%d},"
                 "\"redis\":{\"status\":\"%s\",\"pendingInvalidations\":%u,\"outages\":%llu}}}",
                 ok ? "ok" : "unavailable", ar->thr->server->draining ? "true" : "false", pg_state,
                 version, API_SCHEMA_VERSION, pgpool_ready_count(ar->thr->pool),
                 ar->thr->redis != NULL && redis_client_is_up(ar->thr->redis) ? "up" : "down",
                 listcache_pending_invalidations(), (unsigned long long)redis_client_outages());
    api_respond(ar, ok ? 200 : 503, "application/json; charset=utf-8", body, (size_t)n);
}

static void on_schema_version(void *data, const PGresult *res, pgpool_err_t err)
{
    api_req_t *ar = data;
    int version = -1;
    ar->op = NULL;
    if (err != PGPOOL_OK) {
        send_health(ar, false, "down", -1);
        return;
    }
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1 || PQgetisnull(res, 0, 0)) {
        send_health(ar, false, "error", -1);
        return;
    }
    version = atoi(PQgetvalue(res, 0, 0));
    if (version < API_SCHEMA_VERSION) {
        send_health(ar, false, "schema-too-old", version);
        return;
    }
    /* a connection answered, but requests may still fail: a statement the server did not know
     * (transaction-mode pooler with PG_PREPARED_STATEMENTS=on) makes the process unready */
    if (pgpool_statements_failing()) {
        send_health(ar, false, "statements-failing", version);
        return;
    }
    send_health(ar, !ar->thr->server->draining, "up", version);
}

void handler_health(api_req_t *ar)
{
    switch (ar->rm.route) {
    case ROUTE_HEALTH_LIVE:
        api_respond(ar, 200, "application/json; charset=utf-8", H2O_STRLIT("{\"status\":\"ok\"}"));
        return;
    case ROUTE_METRICS: {
        strbuf_t b;
        strbuf_init(&b);
        api_publish_redis_stats(ar->thr); /* this thread's figures are fresh; others <= 1 s */
        metrics_render(&b);
        api_respond(ar, 200, METRICS_CONTENT_TYPE, b.data, b.len);
        strbuf_dispose(&b);
        return;
    }
    case ROUTE_HEALTH_READY:
        if (ar->thr->server->draining) {
            send_health(ar, false, "unknown", -1);
            return;
        }
        /* fall through */
    case ROUTE_HEALTH: {
        pgpool_err_t err = pgpool_submit(ar->thr->pool, PGPOOL_STMT_SCHEMA_VERSION, 0, NULL,
                                         on_schema_version, ar, &ar->op);
        if (err != PGPOOL_OK) {
            ar->op = NULL;
            send_health(ar, false, "down", -1);
        }
        return;
    }
    default:
        api_respond_problem(ar, 404, "not-found", "No such resource.", NULL, 0);
        return;
    }
}
