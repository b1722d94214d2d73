/*
 * Small synchronous libpq helpers for the tools and the relay (profile-migrate, profile-relay):
 * connect with a timeout and an application_name, run statements, and log failures without
 * leaking the DSN or SQL text (SQL appears only at debug level). One generic connect
 * (db_connect_opts) with thin wrappers. The API's asynchronous pool is elsewhere.
 */
#ifndef PROFILE_COMMON_DB_H
#define PROFILE_COMMON_DB_H

#include <stdbool.h>
#include <libpq-fe.h>
#include "common/alloc.h"

/** Connect timeout used when the connection string does not set connect_timeout. */
#define DB_DEFAULT_CONNECT_TIMEOUT 10

/**
 * Returns true when `dsn` is a connection string libpq can parse (URI or key=value form).
 * Never logs the string. NULL or empty → false.
 */
bool db_dsn_valid(const char *dsn);

/** Keepalive settings of db_connect_opts_t.keepalives (seconds; milliseconds for the last). */
#define DB_KEEPALIVES_IDLE "5"
#define DB_KEEPALIVES_INTERVAL "2"
#define DB_KEEPALIVES_COUNT "3"
#define DB_TCP_USER_TIMEOUT_MS "10000"

/** How db_connect_opts() opens a connection. */
typedef struct st_db_connect_opts_t {
    /** application_name; NULL → "profile-service". */
    const char *application_name;
    /** connect_timeout in seconds; 0 → DB_DEFAULT_CONNECT_TIMEOUT. The DSN may override it. */
    int connect_timeout_s;
    /**
     * TCP keepalives (idle 5 s, interval 2 s, 3 probes) and tcp_user_timeout 10 s: an idle
     * connection to a vanished peer is noticed in ~11 s, one with unacknowledged data in ~10 s.
     * The DSN may override each.
     */
    bool keepalives;
    /** The DSN cannot override application_name (peers that count each other by it). */
    bool pin_application_name;
} db_connect_opts_t;

/**
 * The generic connect: opens a blocking connection to `dsn` as `opts` says, routes server notices
 * to the debug log, and logs nothing else. On failure fills errbuf with one line (libpq's message,
 * never the DSN) and returns NULL. The caller owns the connection (db_close()).
 */
PGconn *db_connect_opts(const char *dsn, const db_connect_opts_t *opts, char *errbuf,
                        size_t errlen);

/**
 * Opens a blocking connection to `dsn` with `application_name` and a connect timeout of
 * `connect_timeout_s` seconds (values in `dsn` take precedence over both). Server notices are
 * routed to the debug log instead of stderr. On failure logs one error line (the server's or
 * libpq's message, never the DSN) and returns NULL. The caller owns the connection: release it
 * with db_close(). Not thread-safe per connection.
 */
PGconn *db_connect(const char *dsn, const char *application_name, int connect_timeout_s);

/** True when the connection is usable (not CONNECTION_BAD). NULL → false. */
bool db_conn_ok(const PGconn *conn);

/** Closes `conn`. NULL-safe. */
void db_close(PGconn *conn);

/**
 * Runs `sql` (may hold several statements when `nparams` is 0) and discards the result.
 * `what` names the operation in the error log ("apply V002"). Returns 0 on success, -1 after
 * logging the SQLSTATE and the server's primary message (the SQL text only at debug level).
 */
PROFILE_MUSTCHECK int db_exec(PGconn *conn, const char *what, const char *sql);

/** As db_exec() with text parameters `$1..$n` (`values` may hold NULLs for SQL NULL). */
PROFILE_MUSTCHECK int db_exec_params(PGconn *conn, const char *what, const char *sql, int nparams,
                                     const char *const *values);

/**
 * Runs a query with text parameters and returns its result when the status is
 * PGRES_TUPLES_OK or PGRES_COMMAND_OK; the caller frees it with PQclear(). On failure logs as
 * db_exec() does and returns NULL.
 */
PGresult *db_query(PGconn *conn, const char *what, const char *sql, int nparams,
                   const char *const *values);

/**
 * Logs a failed result (`res` may be NULL: then the connection's message is used): SQLSTATE
 * and primary message at error level, detail/hint at debug level.
 */
void db_log_error(PGconn *conn, const PGresult *res, const char *what);

/** The SQLSTATE of a failed result ("23505"), or "" when unknown. */
const char *db_sqlstate(const PGresult *res);

/** What sits between us and PostgreSQL (db_session_check()). */
typedef enum {
    DB_SESSION_ERROR = -1,         /* the check itself failed (connection lost) */
    DB_SESSION_DIRECT = 0,         /* PostgreSQL itself */
    DB_SESSION_POOLED,             /* a pooler that keeps one server session per client */
    DB_SESSION_TRANSACTION_POOLER, /* a pooler in transaction (or statement) mode */
} db_session_t;

/**
 * Tells whether `conn` (opened on `dsn`) keeps one server session, which LISTEN and session
 * advisory locks need. Direct PostgreSQL is recognised from the backend pid at once; behind a
 * pooler a second connection to `dsn` looks for a session mark set on `conn`. Blocking; leaves
 * no transaction open on `conn`. Never logs the DSN.
 */
db_session_t db_session_check(PGconn *conn, const char *dsn);

/**
 * True when a statement failed with `sqlstate` because the server is not a writable primary
 * (any more): 25006 read_only_sql_transaction ("cannot execute ... in a read-only
 * transaction"), or the 57P0x shutdown codes a server in crash, shutdown or recovery sends.
 * Such a connection is no use to a writer: drop it and connect again, so that a multi-host
 * connection string with target_session_attrs=read-write finds the current primary.
 * NULL-safe (false).
 */
bool db_sqlstate_is_failover(const char *sqlstate);

/**
 * True when the server reports (ParameterStatus, PostgreSQL 14 and later) in_hot_standby=on or
 * default_transaction_read_only=on: a standby, still in recovery, or a primary fenced
 * read-only. Its errors, including recovery conflicts (40001/40P01 on a standby), are treated
 * as connection-level. NULL-safe (false); false for servers that do not report these.
 */
bool db_conn_read_only(const PGconn *conn);

/** db_conn_read_only() on the two reported values (each may be NULL): the testable core. */
bool db_reported_read_only(const char *in_hot_standby, const char *default_transaction_read_only);

#endif
