/*
 * Outbox SQL for the relay (text parameters; connecting, running and error logging are
 * common/db's). Arrays travel as literals so that a whole batch is one statement (unnest),
 * whatever its size.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "common/buf.h"
#include "common/db.h"
#include "common/log.h"
#include "relay/outbox.h"

#define LOG_MODULE "outbox"

/* Relay sessions: keepalives, and an application_name the DSN cannot change (the relays count
 * each other by it). */
#define CONNECT_TIMEOUT_S 5

PGconn *outbox_connect(const char *dsn, const char *application_name, char *errbuf, size_t errlen)
{
    db_connect_opts_t opts = {.application_name = application_name,
                              .connect_timeout_s = CONNECT_TIMEOUT_S,
                              .keepalives = true,
                              .pin_application_name = true};
    return db_connect_opts(dsn, &opts, errbuf, errlen);
}

bool outbox_conn_ok(PGconn *conn)
{
    /* A server that reports itself read-only (a standby, a recovering or fenced primary) is no
     * use to the relay, which writes: the caller drops the connection and connects again, and
     * a multi-host DATABASE_URL with target_session_attrs=read-write finds the new primary. */
    return db_conn_ok(conn) && !db_conn_read_only(conn);
}

int outbox_session_init(PGconn *conn, bool listen)
{
    /*
     * Marks and dead letters are safe to lose in a server crash (the rows are sent again, with
     * the same ce_id), so these sessions do not wait for WAL flushes: it halves a mark's cost.
     */
    return db_exec(conn, "session set-up",
                   listen ? "SET synchronous_commit = off;"
                            " SET statement_timeout = '60s'; LISTEN outbox_new"
                          : "SET synchronous_commit = off; SET statement_timeout = '60s'");
}

int outbox_drain_notifies(PGconn *conn, uint64_t *partitions)
{
    PGnotify *n;
    int count = 0;
    if (!PQconsumeInput(conn))
        return -1;
    while ((n = PQnotifies(conn)) != NULL) {
        char *end;
        long p = strtol(n->extra != NULL ? n->extra : "", &end, 10);
        if (n->extra != NULL && end != n->extra && *end == '\0' && p >= 0 && p < OUTBOX_PARTITIONS)
            *partitions |= (uint64_t)1 << p;
        else
            *partitions = ~(uint64_t)0; /* a hint without a partition wakes every relay */
        PQfreemem(n);
        ++count;
    }
    return count;
}

char *outbox_text_array(const char *const *items, int n)
{
    strbuf_t b;
    strbuf_init(&b);
    strbuf_append_char(&b, '{');
    for (int i = 0; i < n; ++i) {
        if (i > 0)
            strbuf_append_char(&b, ',');
        strbuf_append_char(&b, '"');
        for (const char *p = items[i]; *p; ++p) {
            if (*p == '"' || *p == '\\')
                strbuf_append_char(&b, '\\');
            strbuf_append_char(&b, *p);
        }
        strbuf_append_char(&b, '"');
    }
    strbuf_append_char(&b, '}');
    return strbuf_steal(&b, NULL);
}

static char *int_array(const int *items, int n)
{
    strbuf_t b;
    strbuf_init(&b);
    strbuf_append_char(&b, '{');
    for (int i = 0; i < n; ++i)
        strbuf_appendf(&b, i > 0 ? ",%d" : "%d", items[i]);
    strbuf_append_char(&b, '}');
    return strbuf_steal(&b, NULL);
}

/*
 * One index scan per partition (LATERAL over outbox_pending_idx), in the caller's partition
 * order, stopping at the limit. Partitions whose lock the lease backend no longer holds are
 * dropped here, so a relay that lost its lease connection never publishes a row it does not own.
 * A user with a dead letter is held back, except for the rows up to a pending ProfileDeleted
 * (the dead-lettered rows themselves excepted): the erasure discards the dead letters anyway.
 */
static const char claim_sql[] =
    "SELECT o.user_id, o.seq, o.event_id::text, o.event_type, o.partition_no, o.payload::text,"
    " o.traceparent,"
    " to_char(o.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'),"
    " (extract(epoch FROM coalesce(o.emitted_at, o.created_at)) * 1000000)::bigint,"
    " o.snapshot_id::text"
    " FROM unnest($1::smallint[]) WITH ORDINALITY AS p(no, ord)"
    " CROSS JOIN LATERAL ("
    "   SELECT * FROM outbox o"
    "   WHERE o.partition_no = p.no AND o.published_at IS NULL"
    "     AND o.user_id <> ALL ($2::text[])"
    "     AND (NOT EXISTS (SELECT 1 FROM outbox_dead_letters d WHERE d.user_id = o.user_id)"
    "       OR (NOT EXISTS (SELECT 1 FROM outbox_dead_letters d"
    "                        WHERE d.user_id = o.user_id AND d.seq = o.seq)"
    "           AND EXISTS (SELECT 1 FROM outbox e WHERE e.user_id = o.user_id"
    "                        AND e.seq >= o.seq AND e.event_type = 'ProfileDeleted'"
    "                        AND e.published_at IS NULL)))"
    "   ORDER BY o.user_id, o.seq LIMIT $3) o"
    " WHERE p.no IN (SELECT l.objid::int FROM pg_locks l WHERE l.locktype = 'advisory'"
    "   AND l.pid = $4::int AND l.classid = $5::oid AND l.objsubid = 2 AND l.granted)"
    " LIMIT $3";

int outbox_claim(PGconn *conn, const int *parts, int nparts, const char *const *busy, int nbusy,
                 int lease_pid, int limit, outbox_batch_t *out)
{
    char lim[16], pid[16], cls[16];
    char *parr = int_array(parts, nparts);
    char *barr = outbox_text_array(busy, nbusy);
    snprintf(lim, sizeof(lim), "%d", limit);
    snprintf(pid, sizeof(pid), "%d", lease_pid);
    snprintf(cls, sizeof(cls), "%d", OUTBOX_LEASE_CLASS);
    const char *vals[] = {parr, barr, lim, pid, cls};

    out->res = db_query(conn, "claim pending rows", claim_sql, 5, vals);
    free(parr);
    free(barr);
    if (out->res == NULL) {
        out->n = 0;
        return -1;
    }
    out->n = PQntuples(out->res);
    return 0;
}

void outbox_batch_row(const outbox_batch_t *b, int i, relay_event_t *ev)
{
    PGresult *r = b->res;
    ev->user_id = PQgetvalue(r, i, 0);
    ev->seq = strtoll(PQgetvalue(r, i, 1), NULL, 10);
    ev->event_id = PQgetvalue(r, i, 2);
    ev->event_type = PQgetvalue(r, i, 3);
    ev->partition_no = atoi(PQgetvalue(r, i, 4));
    ev->payload = PQgetvalue(r, i, 5);
    ev->payload_len = (size_t)PQgetlength(r, i, 5);
    ev->traceparent = PQgetisnull(r, i, 6) ? NULL : PQgetvalue(r, i, 6);
    ev->ce_time = PQgetvalue(r, i, 7);
    ev->created_us = strtoll(PQgetvalue(r, i, 8), NULL, 10);
    ev->snapshot_id = PQgetisnull(r, i, 9) ? NULL : PQgetvalue(r, i, 9);
}

void outbox_batch_dispose(outbox_batch_t *b)
{
    if (b->res != NULL)
        PQclear(b->res);
    b->res = NULL;
    b->n = 0;
}

static const char mark_sql[] =
    "UPDATE outbox o SET published_at = now()"
    " FROM unnest($1::text[], $2::bigint[]) AS d(user_id, seq)"
    " WHERE o.user_id = d.user_id AND o.seq = d.seq AND o.published_at IS NULL";

/* The two array literals of a mark; the caller frees both. */
static void mark_params(const char *const *users, const int64_t *seqs, int n, char **uarr,
                        char **sarr)
{
    strbuf_t sb;
    strbuf_init(&sb);
    strbuf_append_char(&sb, '{');
    for (int i = 0; i < n; ++i)
        strbuf_appendf(&sb, i > 0 ? ",%" PRId64 : "%" PRId64, seqs[i]);
    strbuf_append_char(&sb, '}');
    *sarr = strbuf_steal(&sb, NULL);
    *uarr = outbox_text_array(users, n);
}

int outbox_mark_send(PGconn *conn, const char *const *users, const int64_t *seqs, int n)
{
    char *uarr, *sarr;
    mark_params(users, seqs, n, &uarr, &sarr);
    const char *vals[] = {uarr, sarr};
    int ok = PQsendQueryParams(conn, mark_sql, 2, NULL, vals, NULL, NULL, 0);
    free(uarr);
    free(sarr);
    if (!ok) {
        db_log_error(conn, NULL, "send mark published");
        return -1;
    }
    return 0;
}

int outbox_mark_poll(PGconn *conn)
{
    PGresult *res;
    int status = 1;
    if (!PQconsumeInput(conn)) {
        db_log_error(conn, NULL, "mark published");
        return -1;
    }
    if (PQisBusy(conn))
        return 0;
    while ((res = PQgetResult(conn)) != NULL) {
        if (PQresultStatus(res) != PGRES_COMMAND_OK) {
            db_log_error(conn, res, "mark published");
            status = -1;
        }
        PQclear(res);
    }
    return status;
}

int outbox_dead_letter(PGconn *conn, const char *user_id, int64_t seq, const char *event_id,
                       const char *error)
{
    static const char sql[] = "INSERT INTO outbox_dead_letters (user_id, seq, event_id, error)"
                              " SELECT user_id, seq, event_id, $4 FROM outbox"
                              " WHERE user_id = $1 AND seq = $2::bigint AND event_id = $3::uuid"
                              " ON CONFLICT DO NOTHING";
    char s[24];
    snprintf(s, sizeof(s), "%" PRId64, seq);
    const char *vals[] = {user_id, s, event_id, error};
    PGresult *res = db_query(conn, "insert dead letter", sql, 4, vals);
    if (res == NULL)
        return -1;
    PQclear(res);
    return 0;
}

int outbox_purge_published(PGconn *conn, int retention_s, const int *parts, int nparts, int limit)
{
    static const char sql[] =
        "WITH doomed AS (SELECT user_id, seq FROM outbox"
        "   WHERE published_at < now() - make_interval(secs => $1::int)"
        "     AND partition_no = ANY ($2::smallint[])"
        "   ORDER BY published_at LIMIT $3::int FOR UPDATE SKIP LOCKED)"
        " DELETE FROM outbox o USING doomed d WHERE o.user_id = d.user_id AND o.seq = d.seq";
    char ret[16], lim[16];
    char *parr = int_array(parts, nparts);
    snprintf(ret, sizeof(ret), "%d", retention_s);
    snprintf(lim, sizeof(lim), "%d", limit);
    const char *vals[] = {ret, parr, lim};
    PGresult *res = db_query(conn, "delete published rows", sql, 3, vals);
    free(parr);
    if (res == NULL)
        return -1;
    int n = atoi(PQcmdTuples(res));
    PQclear(res);
    return n;
}

int outbox_schema_version(PGconn *conn)
{
    PGresult *res = db_query(conn, "schema version", "SELECT schema_version()", 0, NULL);
    int v = -1;
    if (res == NULL)
        return -1;
    if (PQntuples(res) == 1 && !PQgetisnull(res, 0, 0))
        v = atoi(PQgetvalue(res, 0, 0));
    PQclear(res);
    return v;
}

/*
 * One pass over the pending rows; a row is held back when its user has a dead letter (the claim
 * skips such users), so the lag figure only ages with rows the relay may send.
 */
int outbox_stats(PGconn *conn, outbox_stats_t *out)
{
    static const char sql[] =
        "SELECT count(*) FILTER (WHERE h.user_id IS NULL),"
        " coalesce(extract(epoch FROM clock_timestamp()"
        "   - min(o.created_at) FILTER (WHERE h.user_id IS NULL)), 0),"
        " count(h.user_id),"
        " (SELECT count(*) FROM outbox_dead_letters)"
        " FROM outbox o"
        " LEFT JOIN (SELECT DISTINCT user_id FROM outbox_dead_letters) h ON h.user_id = o.user_id"
        " WHERE o.published_at IS NULL";
    PGresult *res = db_query(conn, "outbox statistics", sql, 0, NULL);
    if (res == NULL)
        return -1;
    out->held_back = strtoll(PQgetvalue(res, 0, 2), NULL, 10);
    out->pending = strtoll(PQgetvalue(res, 0, 0), NULL, 10) + out->held_back;
    out->oldest_age_seconds = strtod(PQgetvalue(res, 0, 1), NULL);
    if (out->oldest_age_seconds < 0)
        out->oldest_age_seconds = 0;
    out->dead_letters = strtoll(PQgetvalue(res, 0, 3), NULL, 10);
    PQclear(res);
    return 0;
}

int outbox_dlq_list(PGconn *conn, FILE *out)
{
    static const char sql[] =
        "SELECT d.user_id || ':' || d.seq, d.event_id::text, o.event_type,"
        " to_char(d.failed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), d.error"
        " FROM outbox_dead_letters d JOIN outbox o USING (user_id, seq)"
        " ORDER BY d.failed_at, d.user_id, d.seq";
    PGresult *res = db_query(conn, "list dead letters", sql, 0, NULL);
    if (res == NULL)
        return -1;
    for (int i = 0; i < PQntuples(res); ++i) {
        fprintf(out, "%s\t%s\t%s\t%s\t%s\n", PQgetvalue(res, i, 0), PQgetvalue(res, i, 1),
                PQgetvalue(res, i, 2), PQgetvalue(res, i, 3), PQgetvalue(res, i, 4));
    }
    PQclear(res);
    return 0;
}

int outbox_dlq_resolve(PGconn *conn, const event_dlq_id_t *id, bool skip)
{
    static const char requeue_sql[] =
        "WITH gone AS (DELETE FROM outbox_dead_letters"
        "   WHERE ($1::text IS NOT NULL AND user_id = $1 AND seq = $2::bigint)"
        "      OR ($3::uuid IS NOT NULL AND event_id = $3::uuid) RETURNING user_id, seq)"
        " SELECT count(*) FROM gone";
    static const char skip_sql[] =
        "WITH gone AS (DELETE FROM outbox_dead_letters"
        "   WHERE ($1::text IS NOT NULL AND user_id = $1 AND seq = $2::bigint)"
        "      OR ($3::uuid IS NOT NULL AND event_id = $3::uuid) RETURNING user_id, seq),"
        " marked AS (UPDATE outbox o SET published_at = coalesce(o.published_at, now())"
        "   FROM gone g WHERE o.user_id = g.user_id AND o.seq = g.seq RETURNING 1)"
        " SELECT count(*) FROM marked";
    char s[24];
    snprintf(s, sizeof(s), "%" PRId64, id->seq);
    const char *vals[] = {id->by_uuid ? NULL : id->user_id, id->by_uuid ? NULL : s,
                          id->by_uuid ? id->uuid : NULL};
    PGresult *res = db_query(conn, skip ? "skip dead letter" : "requeue dead letter",
                             skip ? skip_sql : requeue_sql, 3, vals);
    if (res == NULL)
        return -1;
    int n = atoi(PQgetvalue(res, 0, 0));
    PQclear(res);
    if (n > 0) {
        res = db_query(conn, "notify", "NOTIFY outbox_new", 0, NULL);
        if (res != NULL)
            PQclear(res);
    }
    return n > 0 ? 1 : 0;
}

int outbox_erase_user(PGconn *conn, const char *user_id, int64_t seq, int64_t *dead_letters)
{
    static const char sql[] = "SELECT dead_letters, rows FROM outbox_erase_user($1, $2::bigint)";
    char s[24];
    snprintf(s, sizeof(s), "%" PRId64, seq);
    const char *vals[] = {user_id, s};
    PGresult *res = db_query(conn, "erase user's outbox rows", sql, 2, vals);
    if (res == NULL)
        return -1;
    *dead_letters = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    int n = atoi(PQgetvalue(res, 0, 1));
    PQclear(res);
    return n;
}

int outbox_erase_pending(PGconn *conn, const int *parts, int nparts, outbox_erased_t *out, int max)
{
    static const char sql[] =
        "SELECT e.user_id, e.seq, x.dead_letters, x.rows"
        " FROM (SELECT o.user_id, max(o.seq) AS seq FROM outbox o"
        "   WHERE o.event_type = 'ProfileDeleted' AND o.published_at IS NOT NULL"
        "     AND o.partition_no = ANY ($1::smallint[])"
        "   GROUP BY o.user_id LIMIT $2::int) e"
        " CROSS JOIN LATERAL outbox_erase_user(e.user_id, e.seq) x";
    char lim[16];
    char *parr = int_array(parts, nparts);
    snprintf(lim, sizeof(lim), "%d", max);
    const char *vals[] = {parr, lim};
    PGresult *res = db_query(conn, "sweep erased users", sql, 2, vals);
    free(parr);
    if (res == NULL)
        return -1;
    int n = PQntuples(res);
    for (int i = 0; i < n && i < max; ++i) {
        snprintf(out[i].user_id, sizeof(out[i].user_id), "%s", PQgetvalue(res, i, 0));
        out[i].seq = strtoll(PQgetvalue(res, i, 1), NULL, 10);
        out[i].dead_letters = strtoll(PQgetvalue(res, i, 2), NULL, 10);
        out[i].rows = strtoll(PQgetvalue(res, i, 3), NULL, 10);
    }
    PQclear(res);
    return n < max ? n : max;
}
