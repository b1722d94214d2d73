/*
 * The relay's SQL against the outbox (libpq, synchronous): claim pending rows of leased
 * partitions, mark rows published, dead letters, retention and statistics. SQL only: no Kafka.
 */
#ifndef PROFILE_RELAY_OUTBOX_H
#define PROFILE_RELAY_OUTBOX_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <libpq-fe.h>
#include "common/alloc.h"
#include "relay/event.h"

/** Advisory-lock class (first int4 key) of relay partition leases. */
#define OUTBOX_LEASE_CLASS 1380273241
/** Number of relay partitions (outbox_partition() in V001). */
#define OUTBOX_PARTITIONS 64

/** A claimed batch; rows point into the held result. */
typedef struct st_outbox_batch_t {
    PGresult *res;
    int n;
} outbox_batch_t;

typedef struct st_outbox_stats_t {
    long long pending;         /* unpublished rows, held-back ones included */
    long long held_back;       /* unpublished rows of users with a dead letter (claims skip them) */
    double oldest_age_seconds; /* oldest unpublished row not held back; 0 when there is none */
    long long dead_letters;
} outbox_stats_t;

/**
 * The relay's connection settings over db_connect_opts(): `application_name` (the DSN cannot
 * change it), keepalives and a 5 s connect timeout unless the DSN sets one. Returns NULL and
 * fills errbuf (libpq's message, never the DSN) on failure.
 */
PGconn *outbox_connect(const char *dsn, const char *application_name, char *errbuf, size_t errlen);

/**
 * True when the connection is usable: not CONNECTION_BAD, and its server does not report
 * itself read-only (in_hot_standby or default_transaction_read_only on: a standby, a recovering
 * or fenced primary, see db_conn_read_only()). NULL → false. A caller that gets false drops
 * the connection and connects again.
 */
bool outbox_conn_ok(PGconn *conn);

/**
 * Session set-up: synchronous_commit off (a mark lost in a server crash only means a re-send with
 * the same ce_id) and, with `listen`, LISTEN outbox_new. Returns 0 or -1 (logged).
 */
PROFILE_MUSTCHECK int outbox_session_init(PGconn *conn, bool listen);

/**
 * Reads input without blocking and consumes pending notifications. Sets bit p of `*partitions`
 * for a notification whose payload is partition p (V002 sends outbox_partition(user)), and
 * every bit for any other payload. Returns how many arrived, or -1 when the connection failed.
 */
int outbox_drain_notifies(PGconn *conn, uint64_t *partitions);

/**
 * Claims up to `limit` pending rows (published_at IS NULL) of the partitions `parts[0..nparts)`
 * that the backend `lease_pid` still holds advisory locks for, skipping users in
 * `busy[0..nbusy)` (rows in flight) and users with a dead letter. Rows of one user come in seq
 * order. Nothing is locked or changed. Returns 0 (out->n may be 0) or -1 (logged).
 */
PROFILE_MUSTCHECK int outbox_claim(PGconn *conn, const int *parts, int nparts,
                                   const char *const *busy, int nbusy, int lease_pid, int limit,
                                   outbox_batch_t *out);

/** Row `i` of a batch, borrowing from it. */
void outbox_batch_row(const outbox_batch_t *b, int i, relay_event_t *ev);

/** Frees the batch. NULL-safe on an empty batch. */
void outbox_batch_dispose(outbox_batch_t *b);

/**
 * Marks rows (users[i], seqs[i]) published in one statement, without waiting: sends it on
 * `conn`, which must have nothing else in progress. Rows already published are left as they
 * are. Returns 0, or -1 (logged) when it could not be sent.
 */
PROFILE_MUSTCHECK int outbox_mark_send(PGconn *conn, const char *const *users, const int64_t *seqs,
                                       int n);

/**
 * Reads what arrived for a mark sent with outbox_mark_send(), without blocking. Returns 1 when
 * it completed, 0 while it runs, -1 when it failed (logged; see outbox_conn_ok()).
 */
int outbox_mark_poll(PGconn *conn);

/** Records a dead letter (no-op when it exists). Returns 0 or -1 (logged). */
PROFILE_MUSTCHECK int outbox_dead_letter(PGconn *conn, const char *user_id, int64_t seq,
                                         const char *event_id, const char *error);

/**
 * The user's ProfileDeleted (sequence `seq`) is published: deletes the user's outbox rows up to
 * `seq` and with them the user's dead letters (outbox_erase_user, V011). Sets *dead_letters to
 * the number of dead letters discarded. Returns the number of rows deleted, or -1 (logged).
 */
PROFILE_MUSTCHECK int outbox_erase_user(PGconn *conn, const char *user_id, int64_t seq,
                                        int64_t *dead_letters);

/** One user whose outbox rows outbox_erase_pending() removed. */
typedef struct st_outbox_erased_t {
    char user_id[72];
    int64_t seq, dead_letters, rows;
} outbox_erased_t;

/**
 * The sweep behind outbox_erase_user(): for at most `max` users of partitions `parts` whose
 * ProfileDeleted is published but whose rows are still there (the removal right after the
 * publication failed), removes them. Fills out[0..n-1]; returns n, or -1 (logged).
 */
PROFILE_MUSTCHECK int outbox_erase_pending(PGconn *conn, const int *parts, int nparts,
                                           outbox_erased_t *out, int max);

/**
 * Deletes at most `limit` rows of partitions `parts` published more than `retention_s` seconds
 * ago. Returns the number deleted, or -1 (logged).
 */
int outbox_purge_published(PGconn *conn, int retention_s, const int *parts, int nparts, int limit);

/**
 * The newest migration whose objects this relay uses (V002: schema_version() and the NOTIFY
 * payload naming the partition; V004: its role's grants; V005: history_retention_purge();
 * V007: outbox.emitted_at; V010: outbox.snapshot_id; V011: outbox_erase_user()). /health/ready
 * answers 503 while the database reports less.
 */
#define OUTBOX_SCHEMA_VERSION 11

/** schema_version() of the database, or -1 (logged) when it cannot be read. */
int outbox_schema_version(PGconn *conn);

/**
 * Pending and held-back counts, age of the oldest pending row not held back, dead-letter count.
 * Returns 0 or -1 (logged).
 */
PROFILE_MUSTCHECK int outbox_stats(PGconn *conn, outbox_stats_t *out);

/** Writes the dead letters as tab-separated lines (id, event id, failed at, error). */
PROFILE_MUSTCHECK int outbox_dlq_list(PGconn *conn, FILE *out);

/**
 * Requeue (`skip` false): deletes the dead letter so the row is retried. Skip: marks the row
 * published and deletes the dead letter, in one transaction. Both NOTIFY outbox_new.
 * Returns 1 when done, 0 when no such dead letter exists, -1 on error (logged).
 */
int outbox_dlq_resolve(PGconn *conn, const event_dlq_id_t *id, bool skip);

/**
 * Builds a PostgreSQL array literal ({"a","b"}) of `n` strings into a malloc'ed string owned
 * by the caller.
 */
char *outbox_text_array(const char *const *items, int n);

#endif
