/*
 * Synchronous libpq helpers. Errors are logged once, where they happen, as the SQLSTATE and the
 * server's primary message; connection strings are never logged and SQL only at debug level.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "common/db.h"
#include "common/log.h"

#define LOG_MODULE "db"

/* Copies `msg` into `out` with line breaks folded to spaces and trailing blanks cut. */
static void one_line(const char *msg, char *out, size_t outlen)
{
    size_t i, n = 0;

    if (msg == NULL)
        msg = "";
    for (i = 0; msg[i] != '\0' && n + 1 < outlen; ++i) {
        char c = msg[i];
        if (c == '\n' || c == '\r' || c == '\t')
            c = ' ';
        out[n++] = c;
    }
    while (n > 0 && out[n - 1] == ' ')
        --n;
    out[n] = '\0';
}

static void notice_to_log(void *arg, const PGresult *res)
{
    char line[1024];
    (void)arg;
    one_line(PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY), line, sizeof(line));
    log_debug("server notice: %s", line);
}

bool db_dsn_valid(const char *dsn)
{
    PQconninfoOption *opts;
    char *err = NULL;

    if (dsn == NULL || dsn[0] == '\0')
        return false;
    opts = PQconninfoParse(dsn, &err);
    if (err != NULL)
        PQfreemem(err); /* may quote parts of the string: never logged */
    if (opts == NULL)
        return false;
    PQconninfoFree(opts);
    return true;
}

PGconn *db_connect_opts(const char *dsn, const db_connect_opts_t *opts, char *errbuf, size_t errlen)
{
    char timeout[16];
    const char *app = opts->application_name != NULL ? opts->application_name : "profile-service";
    /*
     * Defaults first: with expand_dbname the values inside `dsn` override earlier entries, and
     * only those; a pinned application_name therefore comes after the DSN.
     */
    const char *keys[12], *vals[12];
    int n = 0;
    PGconn *conn;

    /* libpq expands `dsn` only when it looks like one; a plain database name is taken as is. A
     * string that fails to parse would be quoted in libpq's message: never pass that on. */
    if (dsn == NULL || ((strchr(dsn, '=') != NULL || strncmp(dsn, "postgres://", 11) == 0 ||
                         strncmp(dsn, "postgresql://", 13) == 0) &&
                        !db_dsn_valid(dsn))) {
        snprintf(errbuf, errlen, "the connection string is not valid");
        return NULL;
    }
    snprintf(timeout, sizeof(timeout), "%d",
             opts->connect_timeout_s > 0 ? opts->connect_timeout_s : DB_DEFAULT_CONNECT_TIMEOUT);
    keys[n] = "connect_timeout", vals[n++] = timeout;
    if (opts->keepalives) {
        keys[n] = "keepalives", vals[n++] = "1";
        keys[n] = "keepalives_idle", vals[n++] = DB_KEEPALIVES_IDLE;
        keys[n] = "keepalives_interval", vals[n++] = DB_KEEPALIVES_INTERVAL;
        keys[n] = "keepalives_count", vals[n++] = DB_KEEPALIVES_COUNT;
        /* Sent data unacknowledged this long closes the connection: a query on a cut link
         * fails instead of waiting for the kernel's retransmission timeout (~15 min). */
        keys[n] = "tcp_user_timeout", vals[n++] = DB_TCP_USER_TIMEOUT_MS;
    }
    if (!opts->pin_application_name)
        keys[n] = "application_name", vals[n++] = app;
    keys[n] = "dbname", vals[n++] = dsn;
    if (opts->pin_application_name)
        keys[n] = "application_name", vals[n++] = app;
    keys[n] = vals[n] = NULL;
    conn = PQconnectdbParams(keys, vals, 1);
    if (conn == NULL) {
        snprintf(errbuf, errlen, "out of memory");
        return NULL;
    }
    if (PQstatus(conn) != CONNECTION_OK) {
        one_line(PQerrorMessage(conn), errbuf, errlen);
        PQfinish(conn);
        return NULL;
    }
    PQsetNoticeReceiver(conn, notice_to_log, NULL);
    log_debug("connected to PostgreSQL (server %d, pid %d)", PQserverVersion(conn),
              PQbackendPID(conn));
    return conn;
}

PGconn *db_connect(const char *dsn, const char *application_name, int connect_timeout_s)
{
    char msg[1024];
    db_connect_opts_t opts = {.application_name = application_name,
                              .connect_timeout_s = connect_timeout_s};
    PGconn *conn;

    if (!db_dsn_valid(dsn)) {
        log_error("cannot connect to PostgreSQL: the connection string is not valid");
        return NULL;
    }
    conn = db_connect_opts(dsn, &opts, msg, sizeof(msg));
    if (conn == NULL)
        log_error("cannot connect to PostgreSQL: %s", msg);
    return conn;
}

bool db_conn_ok(const PGconn *conn)
{
    return conn != NULL && PQstatus(conn) == CONNECTION_OK;
}

void db_close(PGconn *conn)
{
    if (conn != NULL)
        PQfinish(conn);
}

const char *db_sqlstate(const PGresult *res)
{
    const char *s = res != NULL ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    return s != NULL ? s : "";
}

void db_log_error(PGconn *conn, const PGresult *res, const char *what)
{
    char msg[1024], extra[1024];
    const char *primary = res != NULL ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;

    if (primary == NULL)
        primary = conn != NULL ? PQerrorMessage(conn) : "no connection";
    one_line(primary, msg, sizeof(msg));
    log_error("%s failed: SQLSTATE %s: %s", what != NULL ? what : "statement",
              db_sqlstate(res)[0] != '\0' ? db_sqlstate(res) : "-----", msg);
    if (res != NULL && LOG_LEVEL_DEBUG >= log_threshold) {
        const char *detail = PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL);
        const char *hint = PQresultErrorField(res, PG_DIAG_MESSAGE_HINT);
        const char *where = PQresultErrorField(res, PG_DIAG_CONTEXT);
        one_line(detail, msg, sizeof(msg));
        one_line(hint, extra, sizeof(extra));
        log_debug("%s: detail: %s; hint: %s", what != NULL ? what : "statement", msg, extra);
        one_line(where, msg, sizeof(msg));
        if (msg[0] != '\0')
            log_debug("%s: context: %s", what != NULL ? what : "statement", msg);
    }
}

PGresult *db_query(PGconn *conn, const char *what, const char *sql, int nparams,
                   const char *const *values)
{
    PGresult *res;
    ExecStatusType st;

    if (conn == NULL) {
        log_error("%s failed: no connection", what != NULL ? what : "statement");
        return NULL;
    }
    log_debug("%s: %s", what != NULL ? what : "statement", sql);
    if (nparams == 0)
        res = PQexec(conn, sql);
    else
        res = PQexecParams(conn, sql, nparams, NULL, values, NULL, NULL, 0);
    st = PQresultStatus(res);
    if (res == NULL || (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK)) {
        db_log_error(conn, res, what);
        PQclear(res);
        return NULL;
    }
    return res;
}

int db_exec_params(PGconn *conn, const char *what, const char *sql, int nparams,
                   const char *const *values)
{
    PGresult *res = db_query(conn, what, sql, nparams, values);
    if (res == NULL)
        return -1;
    PQclear(res);
    return 0;
}

int db_exec(PGconn *conn, const char *what, const char *sql)
{
    return db_exec_params(conn, what, sql, 0, NULL);
}

/* The first column of the first row of `sql`'s result, copied into out ("" for NULL); -1 when
 * the statement failed. */
static int query_text(PGconn *conn, const char *sql, int nparams, const char *const *values,
                      char *out, size_t outlen)
{
    PGresult *res = PQexecParams(conn, sql, nparams, NULL, values, NULL, NULL, 0);
    int ok = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1;
    if (ok)
        snprintf(out, outlen, "%s", PQgetisnull(res, 0, 0) ? "" : PQgetvalue(res, 0, 0));
    PQclear(res);
    return ok ? 0 : -1;
}

db_session_t db_session_check(PGconn *conn, const char *dsn)
{
    char pid[32], probe[48], seen[64];
    PGconn *other = NULL;
    PGresult *res;
    db_session_t ret = DB_SESSION_ERROR;
    struct timespec ts;

    if (query_text(conn, "SELECT pg_backend_pid()", 0, NULL, pid, sizeof(pid)) != 0)
        return DB_SESSION_ERROR;
    /* PostgreSQL itself reports its pid in BackendKeyData; a pooler sends a key of its own */
    if (atoi(pid) == PQbackendPID(conn))
        return DB_SESSION_DIRECT;

    /* A pooler. Session mode keeps our server session across our transactions and never shows
     * it to another client; transaction mode hands the server connection on after each
     * transaction. Mark our session, then look for the mark from a second client (with its
     * transaction open) and from ours. PgBouncer reuses the most recently used server first, so
     * the second client lands on our server; with round-robin reuse ours moves instead. */
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(probe, sizeof(probe), "%d-%ld-%ld", PQbackendPID(conn), (long)ts.tv_sec, ts.tv_nsec);
    const char *v[] = {probe};
    if (query_text(conn, "SELECT set_config('profile.session_probe', $1, false)", 1, v, seen,
                   sizeof(seen)) != 0)
        return DB_SESSION_ERROR;
    if ((other = db_connect(dsn, "profile-session-probe", 5)) == NULL)
        return DB_SESSION_ERROR;
    res = PQexec(other, "BEGIN");
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        ret = DB_SESSION_TRANSACTION_POOLER; /* statement mode: no transactions at all */
        PQclear(res);
        goto Exit;
    }
    PQclear(res);
    if (query_text(other, "SELECT current_setting('profile.session_probe', true)", 0, NULL, seen,
                   sizeof(seen)) != 0)
        goto Exit;
    if (strcmp(seen, probe) == 0) {
        ret = DB_SESSION_TRANSACTION_POOLER; /* another client runs on our server session */
        goto Exit;
    }
    if (query_text(conn, "SELECT current_setting('profile.session_probe', true)", 0, NULL, seen,
                   sizeof(seen)) != 0)
        goto Exit;
    ret = strcmp(seen, probe) == 0 ? DB_SESSION_POOLED : DB_SESSION_TRANSACTION_POOLER;
    if (ret == DB_SESSION_POOLED)
        PQclear(PQexec(conn, "RESET profile.session_probe"));

Exit:
    db_close(other);
    return ret;
}

bool db_sqlstate_is_failover(const char *sqlstate)
{
    static const char *const codes[] = {
        "25006", /* read_only_sql_transaction: a standby or a read-only primary */
        "57P01", /* admin_shutdown: the server is shutting down (or being demoted) */
        "57P02", /* crash_shutdown: another backend crashed */
        "57P03", /* cannot_connect_now: starting up or in recovery */
    };
    if (sqlstate == NULL)
        return false;
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); ++i)
        if (strcmp(sqlstate, codes[i]) == 0)
            return true;
    return false;
}

bool db_reported_read_only(const char *in_hot_standby, const char *default_transaction_read_only)
{
    return (in_hot_standby != NULL && strcmp(in_hot_standby, "on") == 0) ||
           (default_transaction_read_only != NULL &&
            strcmp(default_transaction_read_only, "on") == 0);
}

bool db_conn_read_only(const PGconn *conn)
{
    if (conn == NULL)
        return false;
    return db_reported_read_only(PQparameterStatus(conn, "in_hot_standby"),
                                 PQparameterStatus(conn, "default_transaction_read_only"));
}
