/*
 * The snapshot command: one snapshot_step() per user (one transaction each, so live writers of a
 * user wait at most for that user's events), paced to --rate events per second, with progress.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "common/clock.h"
#include "common/db.h"
#include "common/log.h"
#include "relay/snapshot.h"

#define LOG_MODULE "snapshot"

/* A plain progress line (stdout not a terminal) at most this often. */
#define PLAIN_PROGRESS_EVERY_S 5.0
/* A terminal's progress line is redrawn at most this often. */
#define TTY_PROGRESS_EVERY_S 0.2
/* The longest single sleep, so a stop request is noticed quickly. */
#define MAX_SLEEP_S 0.25

static const char find_unfinished_sql[] =
    "SELECT snapshot_id::text FROM snapshots"
    " WHERE only_user IS NULL AND finished_at IS NULL ORDER BY started_at DESC LIMIT 1";
static const char start_sql[] = "SELECT snapshot_start($1)::text";
static const char progress_sql[] = "SELECT users_done, users_total, events_total"
                                   " FROM snapshots WHERE snapshot_id = $1::uuid";
static const char step_sql[] = "SELECT user_id, events FROM snapshot_step($1::uuid)";
/* One row whether or not a snapshot exists; the runners are counted either way. */
static const char status_sql[] =
    "SELECT s.snapshot_id::text, greatest(s.users_total, s.users_done), s.users_done,"
    " s.events_total, s.finished_at IS NOT NULL, extract(epoch FROM s.updated_at),"
    " (SELECT count(*) FROM pg_stat_activity a"
    "   WHERE a.application_name = $1 AND a.datname = current_database())"
    " FROM (SELECT 1) one LEFT JOIN LATERAL (SELECT * FROM snapshots x WHERE x.only_user IS NULL"
    "   ORDER BY x.started_at DESC LIMIT 1) s ON true";

/* Columns of progress_sql. */
enum { COL_USERS_DONE, COL_USERS_TOTAL, COL_EVENTS_TOTAL };
/* Columns of status_sql. */
enum {
    ST_ID,
    ST_USERS_TOTAL,
    ST_USERS_DONE,
    ST_EVENTS,
    ST_FINISHED,
    ST_UPDATED_AT,
    ST_RUNNERS,
};

typedef struct st_progress_t {
    long long users_done, users_total, events_total; /* the snapshot's, from the table */
    long long users_run, events_run;                 /* this run's */
} progress_t;

int snapshot_parse_args(int argc, char **argv, snapshot_opts_t *out, FILE *err)
{
    bool all = false;
    memset(out, 0, sizeof(*out));
    out->rate = SNAPSHOT_DEFAULT_RATE;
    for (int i = 0; i < argc; ++i) {
        if (strcmp(argv[i], "--all") == 0 && !all && out->only_user == NULL) {
            all = true;
        } else if (strcmp(argv[i], "--user") == 0 && i + 1 < argc && !all &&
                   out->only_user == NULL) {
            out->only_user = argv[++i];
            size_t n = strlen(out->only_user);
            bool ok = n >= 1 && n <= 64 &&
                      strspn(out->only_user, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstu"
                                             "vwxyz0123456789._-") == n;
            if (!ok) {
                fprintf(err, "profile-relay: bad user id %s\n", out->only_user);
                return -1;
            }
        } else if (strcmp(argv[i], "--rate") == 0 && i + 1 < argc) {
            char *end;
            errno = 0;
            out->rate = strtod(argv[++i], &end);
            if (errno != 0 || *end != '\0' || end == argv[i] || !(out->rate > 0) ||
                !isfinite(out->rate)) {
                fprintf(err, "profile-relay: --rate wants a positive number of events/s, not %s\n",
                        argv[i]);
                return -1;
            }
        } else {
            fprintf(err, "profile-relay: snapshot wants --all or --user ID, and [--rate N]\n");
            return -1;
        }
    }
    if (!all && out->only_user == NULL) {
        fprintf(err, "profile-relay: snapshot wants --all or --user ID, and [--rate N]\n");
        return -1;
    }
    return 0;
}

double snapshot_throttle_delay(long long events, double rate, double elapsed_s)
{
    double due = (double)events / rate;
    return due > elapsed_s ? due - elapsed_s : 0;
}

static void format_duration(char *buf, size_t len, double s)
{
    long long t = (long long)(s + 0.5);
    if (t >= 3600)
        snprintf(buf, len, "%lldh%02lldm", t / 3600, t / 60 % 60);
    else if (t >= 60)
        snprintf(buf, len, "%lldm%02llds", t / 60, t % 60);
    else
        snprintf(buf, len, "%llds", t);
}

void snapshot_format_progress(char *buf, size_t len, long long users_done, long long users_total,
                              long long events_total, long long users_run, long long events_run,
                              double elapsed_s)
{
    char eta[32] = "?";
    /* Users that appeared after the start are taken too: the total grows with them. */
    long long total = users_total > users_done ? users_total : users_done;
    double rate = elapsed_s > 0 ? (double)events_run / elapsed_s : 0;
    if (users_run > 0 && elapsed_s > 0)
        format_duration(eta, sizeof(eta), (double)(total - users_done) * elapsed_s / users_run);
    snprintf(buf, len, "users %lld/%lld (%.1f%%), events %lld, %.0f events/s, ETA %s", users_done,
             total, total > 0 ? 100.0 * (double)users_done / (double)total : 100.0, events_total,
             rate, eta);
}

static void sleep_s(double s)
{
    struct timespec ts = {.tv_sec = (time_t)s, .tv_nsec = (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&ts, NULL); /* a signal cuts it short: the caller checks its stop flag */
}

static int read_progress(PGconn *conn, const char *id, progress_t *p)
{
    const char *vals[] = {id};
    PGresult *res = db_query(conn, "read snapshot progress", progress_sql, 1, vals);
    if (res == NULL)
        return -1;
    if (PQntuples(res) != 1) {
        log_error("snapshot %s not found", id);
        PQclear(res);
        return -1;
    }
    p->users_done = strtoll(PQgetvalue(res, 0, COL_USERS_DONE), NULL, 10);
    p->users_total = strtoll(PQgetvalue(res, 0, COL_USERS_TOTAL), NULL, 10);
    p->events_total = strtoll(PQgetvalue(res, 0, COL_EVENTS_TOTAL), NULL, 10);
    PQclear(res);
    return 0;
}

int snapshot_read_status(PGconn *conn, snapshot_status_t *out)
{
    const char *vals[] = {SNAPSHOT_APPLICATION_NAME};
    memset(out, 0, sizeof(*out));
    PGresult *res = db_query(conn, "read snapshot status", status_sql, 1, vals);
    if (res == NULL)
        return -1;
    out->runners = strtoll(PQgetvalue(res, 0, ST_RUNNERS), NULL, 10);
    if (!PQgetisnull(res, 0, ST_ID)) {
        out->present = true;
        snprintf(out->id, sizeof(out->id), "%s", PQgetvalue(res, 0, ST_ID));
        out->users_total = strtoll(PQgetvalue(res, 0, ST_USERS_TOTAL), NULL, 10);
        out->users_done = strtoll(PQgetvalue(res, 0, ST_USERS_DONE), NULL, 10);
        out->events_written = strtoll(PQgetvalue(res, 0, ST_EVENTS), NULL, 10);
        out->finished = strcmp(PQgetvalue(res, 0, ST_FINISHED), "t") == 0;
        out->updated_at = strtod(PQgetvalue(res, 0, ST_UPDATED_AT), NULL);
    }
    PQclear(res);
    return 0;
}

/* The id of the snapshot to run, into `id`: an unfinished --all one, or a new one. */
static int choose_snapshot(PGconn *conn, const snapshot_opts_t *opts, char *id, size_t len,
                           bool *resumed)
{
    PGresult *res;
    *resumed = false;
    if (opts->only_user == NULL) {
        res = db_query(conn, "find an unfinished snapshot", find_unfinished_sql, 0, NULL);
        if (res == NULL)
            return -1;
        if (PQntuples(res) == 1) {
            snprintf(id, len, "%s", PQgetvalue(res, 0, 0));
            *resumed = true;
            PQclear(res);
            return 0;
        }
        PQclear(res);
    }
    const char *vals[] = {opts->only_user};
    res = db_query(conn, "start a snapshot", start_sql, 1, vals);
    if (res == NULL)
        return -1;
    snprintf(id, len, "%s", PQgetvalue(res, 0, 0));
    PQclear(res);
    return 0;
}

static void show(FILE *out, bool tty, const char *id, const progress_t *p, double elapsed_s,
                 bool last)
{
    char line[256];
    snapshot_format_progress(line, sizeof(line), p->users_done, p->users_total, p->events_total,
                             p->users_run, p->events_run, elapsed_s);
    if (tty)
        fprintf(out, "\r\033[Ksnapshot %s: %s%s", id, line, last ? "\n" : "");
    else
        fprintf(out, "snapshot %s: %s\n", id, line);
    fflush(out);
}

int snapshot_run(PGconn *conn, const snapshot_opts_t *opts, FILE *out, bool tty,
                 volatile const bool *stop)
{
    char id[64];
    bool resumed;
    progress_t p = {0};
    struct timespec t0;
    double shown_at = 0, every = tty ? TTY_PROGRESS_EVERY_S : PLAIN_PROGRESS_EVERY_S;
    int status = -1;

    /*
     * A commit need not wait for its WAL flush: a server crash loses the last steps' events and
     * their progress together (asynchronous commit loses a suffix of transactions, never half
     * of one), and the snapshot resumes before them. Live writes keep their own setting.
     */
    if (db_exec(conn, "snapshot session settings", "SET synchronous_commit = off") != 0 ||
        choose_snapshot(conn, opts, id, sizeof(id), &resumed) != 0 ||
        read_progress(conn, id, &p) != 0)
        return -1;
    fprintf(out, "snapshot %s %s: %lld of %lld users done, %lld events, rate %.0f events/s\n", id,
            resumed ? "resumed" : "started", p.users_done, p.users_total, p.events_total,
            opts->rate);
    fflush(out);
    log_info("snapshot %s %s (%s, rate %.0f events/s)", id, resumed ? "resumed" : "started",
             opts->only_user != NULL ? "one user" : "all users", opts->rate);

    clock_mono_ts(&t0);
    for (;;) {
        if (*stop) {
            status = 1;
            break;
        }
        const char *vals[] = {id};
        PGresult *res = db_query(conn, "snapshot a user", step_sql, 1, vals);
        if (res == NULL)
            break;
        if (PQntuples(res) == 0) {
            PQclear(res);
            status = 0;
            break;
        }
        long long n = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
        PQclear(res);
        p.users_done++;
        p.users_run++;
        p.events_total += n;
        p.events_run += n;

        double elapsed = clock_since_s(&t0);
        if (elapsed - shown_at >= every) {
            show(out, tty, id, &p, elapsed, false);
            shown_at = elapsed;
        }
        /* Pace before the next user; sleep in slices so a stop request is not held up. */
        double delay;
        while (!*stop &&
               (delay = snapshot_throttle_delay(p.events_run, opts->rate, clock_since_s(&t0))) > 0)
            sleep_s(delay < MAX_SLEEP_S ? delay : MAX_SLEEP_S);
    }
    if (status >= 0 && read_progress(conn, id, &p) != 0)
        status = -1;
    show(out, tty, id, &p, clock_since_s(&t0), true);
    if (status == 0) {
        fprintf(out, "snapshot %s finished: %lld users, %lld events\n", id, p.users_done,
                p.events_total);
        log_info("snapshot %s finished: %lld users, %lld events", id, p.users_done, p.events_total);
    } else if (status == 1) {
        fprintf(out, "snapshot %s stopped%s\n", id,
                opts->only_user == NULL ? "; run the same command again to resume it" : "");
        log_info("snapshot %s stopped after %lld users", id, p.users_done);
    }
    fflush(out);
    return status;
}
