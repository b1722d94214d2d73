/*
 * `profile-relay snapshot --all | --user ID [--rate N]`: writes users' current state as ordinary
 * events through the outbox (SQL snapshot_step(), migrations/V010), throttled, with progress.
 */
#ifndef PROFILE_RELAY_SNAPSHOT_H
#define PROFILE_RELAY_SNAPSHOT_H

#include <stdbool.h>
#include <stdio.h>
#include <libpq-fe.h>
#include "common/alloc.h"

/** Events per second when --rate is not given (docs/performance.md, Snapshots). */
#define SNAPSHOT_DEFAULT_RATE 250

/** The command's application_name: the relays count the sessions that carry it. */
#define SNAPSHOT_APPLICATION_NAME "profile-relay-snapshot"

/** Progress of the newest snapshot of all users, as the relays export it in their metrics. */
typedef struct st_snapshot_status_t {
    bool present; /* false: no snapshot of all users was ever started (the rest is zero) */
    char id[40];  /* the snapshot's UUID */
    long long users_total, users_done, events_written;
    bool finished;
    double updated_at; /* Unix seconds of the last user done (of the start before the first) */
    long long runners; /* snapshot commands (--all or --user) connected to the database now */
} snapshot_status_t;

typedef struct st_snapshot_opts_t {
    const char *only_user; /* NULL: every user (--all) */
    double rate;           /* events per second, > 0 */
} snapshot_opts_t;

/**
 * Parses the arguments after `snapshot` (`--all` or `--user ID`, optional `--rate N` with N a
 * positive number). Returns 0, or -1 after writing one line to `err`.
 */
PROFILE_MUSTCHECK int snapshot_parse_args(int argc, char **argv, snapshot_opts_t *out, FILE *err);

/**
 * Runs a snapshot on `conn` until it is finished or `*stop` becomes true (checked between
 * users; a signal handler sets it). `--all` resumes the newest unfinished snapshot of all users
 * when there is one, else starts a new one; `--user` always starts a new one. Progress goes to
 * `out`: one line rewritten in place when `tty`, else a plain line every few seconds; the
 * snapshot id and a summary always. Returns 0 when finished, 1 when stopped, -1 on a database
 * error (logged).
 */
int snapshot_run(PGconn *conn, const snapshot_opts_t *opts, FILE *out, bool tty,
                 volatile const bool *stop);

/**
 * Reads the newest snapshot of all users (`--all`; `--user` snapshots are left out) from the
 * `snapshots` table and counts the snapshot commands connected (SNAPSHOT_APPLICATION_NAME).
 * The total never falls below the users done (users created since the start are taken too).
 * Fills `out` (out->present false when there is none). Returns 0 or -1 (logged).
 */
PROFILE_MUSTCHECK int snapshot_read_status(PGconn *conn, snapshot_status_t *out);

/**
 * Formats the progress line (users done/total, events, events/s, ETA) into `buf`. `elapsed_s`
 * and `users_run` cover this run only (the ETA of a resumed snapshot uses this run's pace).
 */
void snapshot_format_progress(char *buf, size_t len, long long users_done, long long users_total,
                              long long events_total, long long users_run, long long events_run,
                              double elapsed_s);

/**
 * Seconds to sleep so that `events` sent since a start `elapsed_s` ago stay within `rate`
 * events per second; 0 when behind.
 */
double snapshot_throttle_delay(long long events, double rate, double elapsed_s);

#endif
