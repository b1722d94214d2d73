/*
 * Unit tests for relay/lease.c with a seam at libpq (STYLE.md rule 23): connection calls and
 * PQexecParams are fakes defined here; results are real PGresults built with
 * PQmakeEmptyPGresult, so the code under test reads them through the real accessors.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "common/log.h"
#include "relay/lease.h"

static char dummy;
static bool conn_bad, server_down;
static int relays = 1;
static char held_array[512] = "{}";
static int unlocked[64], nunlocked;
static int take_calls, take_need;
/* Lease backends of silent peers the fake server reports (and ends); what the query asked. */
static const char *stale_pids[4];
static int nstale, stale_calls;
static char stale_app[64], stale_secs[16];
static bool stale_fails;

PGconn *PQconnectdbParams(const char *const *keywords, const char *const *values, int expand_dbname)
{
    /* application_name must survive whatever the DSN says: relays count each other by it */
    const char *app = NULL;
    for (int i = 0; keywords[i] != NULL; ++i) {
        if (strcmp(keywords[i], "application_name") == 0)
            app = values[i];
        if (strcmp(keywords[i], "dbname") == 0)
            assert_null(app); /* the DSN comes before application_name */
    }
    assert_string_equal(app, LEASE_APPLICATION_NAME);
    conn_bad = server_down;
    return (PGconn *)&dummy;
}
char *PQerrorMessage(const PGconn *conn)
{
    return (char *)(uintptr_t) "server down\n";
}
ConnStatusType PQstatus(const PGconn *conn)
{
    return conn_bad ? CONNECTION_BAD : CONNECTION_OK;
}
/* a writable primary: reports neither in_hot_standby nor default_transaction_read_only */
const char *PQparameterStatus(const PGconn *conn, const char *name)
{
    return NULL;
}

int PQbackendPID(const PGconn *conn)
{
    return 777;
}
void PQfinish(PGconn *conn)
{
}
PQnoticeReceiver PQsetNoticeReceiver(PGconn *conn, PQnoticeReceiver proc, void *arg)
{
    return NULL;
}
int PQserverVersion(const PGconn *conn)
{
    return 160000;
}

static PGresult *result(int ncols, int nrows, const char *const *cells)
{
    PGresult *r = PQmakeEmptyPGresult(NULL, PGRES_TUPLES_OK);
    PGresAttDesc attrs[4];
    memset(attrs, 0, sizeof(attrs));
    for (int c = 0; c < ncols; ++c)
        attrs[c].name = (char *)(uintptr_t) "c";
    assert_int_equal(PQsetResultAttrs(r, ncols, attrs), 1);
    for (int row = 0; row < nrows; ++row)
        for (int c = 0; c < ncols; ++c)
            PQsetvalue(r, row, c, (char *)(uintptr_t)cells[row * ncols + c],
                       (int)strlen(cells[row * ncols + c]));
    return r;
}

PGresult *PQexecParams(PGconn *conn, const char *command, int nParams, const Oid *paramTypes,
                       const char *const *paramValues, const int *paramLengths,
                       const int *paramFormats, int resultFormat)
{
    if (conn_bad)
        return NULL;
    if (strstr(command, "pg_terminate_backend") != NULL) {
        const char *cells[8];
        stale_calls++;
        if (stale_fails) {
            conn_bad = true; /* our own backend was ended meanwhile */
            return NULL;
        }
        /* only our own relays' lease backends, silent longer than the takeover time */
        assert_non_null(strstr(command, "pid <> pg_backend_pid()"));
        snprintf(stale_app, sizeof(stale_app), "%s", paramValues[0]);
        snprintf(stale_secs, sizeof(stale_secs), "%s", paramValues[1]);
        for (int i = 0; i < nstale; ++i) {
            cells[2 * i] = stale_pids[i];
            cells[2 * i + 1] = "12";
        }
        return result(2, nstale, cells);
    }
    if (strstr(command, "pg_stat_activity") != NULL) {
        char n[16];
        snprintf(n, sizeof(n), "%d", relays);
        const char *cells[] = {n, held_array};
        return result(2, 1, cells);
    }
    if (strstr(command, "pg_advisory_unlock") != NULL) {
        unlocked[nunlocked++] = atoi(paramValues[1]);
        const char *cells[] = {"t"};
        return result(1, 1, cells);
    }
    if (strstr(command, "pg_try_advisory_lock") != NULL) {
        /* every free partition can be had: hand out `need` of them, skipping held ones */
        static char nums[64][4];
        const char *cells[64];
        int n = 0;
        take_calls++;
        take_need = atoi(paramValues[3]);
        for (int p = 0; p < 64 && n < take_need; ++p) {
            char probe[8];
            snprintf(probe, sizeof(probe), "%d", p);
            if (strstr(paramValues[1], probe) != NULL && strcmp(paramValues[1], "{}") != 0)
                continue; /* crude: treat any textual match as held */
            snprintf(nums[n], sizeof(nums[0]), "%d", p);
            cells[n] = nums[n];
            n++;
        }
        return result(1, n, cells);
    }
    fail_msg("unexpected SQL: %s", command);
    return NULL;
}

static void set_held(int from, int to)
{
    int off = snprintf(held_array, sizeof(held_array), "{");
    for (int p = from; p <= to; ++p)
        off += snprintf(held_array + off, sizeof(held_array) - (size_t)off, p > from ? ",%d" : "%d",
                        p);
    snprintf(held_array + off, sizeof(held_array) - (size_t)off, "}");
}

static void test_alone_takes_everything(void **state)
{
    int inflight[OUTBOX_PARTITIONS] = {0};
    int parts[OUTBOX_PARTITIONS];
    lease_t *l = lease_create("postgresql://x@127.0.0.1/db?application_name=evil", 10);
    relays = 1;
    strcpy(held_array, "{}");
    take_calls = 0;
    assert_int_equal(lease_tick(l, inflight), 0);
    assert_int_equal(take_need, 64);
    assert_int_equal(lease_held_count(l), 64);
    assert_int_equal(lease_claimable(l, parts), 64);
    assert_int_equal(lease_backend_pid(l), 777);
    assert_true(lease_claimable_mask(l) == ~(uint64_t)0);
    lease_destroy(l);
}

static void test_second_relay_gets_half_after_in_flight_drains(void **state)
{
    int inflight[OUTBOX_PARTITIONS] = {0};
    int parts[OUTBOX_PARTITIONS];
    lease_t *l = lease_create("db", 10);
    relays = 2;
    set_held(0, 63);
    nunlocked = 0;
    take_calls = 0;
    inflight[40] = 3; /* rows of partition 40 are still in flight */
    assert_int_equal(lease_tick(l, inflight), 0);
    assert_int_equal(nunlocked, 31); /* 32..63 but 40 */
    for (int i = 0; i < nunlocked; ++i)
        assert_true(unlocked[i] >= 32 && unlocked[i] != 40);
    assert_int_equal(lease_held_count(l), 33);
    assert_int_equal(lease_claimable(l, parts), 32); /* 40 is held but no longer claimed */
    assert_false(lease_claimable_mask(l) & ((uint64_t)1 << 40));
    assert_int_equal(take_calls, 0);

    /* in flight done: the next tick releases 40 too */
    inflight[40] = 0;
    set_held(0, 32);
    held_array[strlen(held_array) - 1] = '\0';
    strcat(held_array, ",40}");
    nunlocked = 0;
    assert_int_equal(lease_tick(l, inflight), 0);
    assert_int_equal(nunlocked, 2); /* 32 and 40: the share is 0..31 */
    assert_int_equal(lease_held_count(l), 32);
    lease_destroy(l);
}

static void test_connection_lost_drops_everything(void **state)
{
    int inflight[OUTBOX_PARTITIONS] = {0};
    int parts[OUTBOX_PARTITIONS];
    lease_t *l = lease_create("db", 10);
    relays = 1;
    set_held(0, 63);
    assert_int_equal(lease_tick(l, inflight), 0);
    assert_int_equal(lease_held_count(l), 64);
    conn_bad = server_down = true;
    assert_int_equal(lease_tick(l, inflight), -1);
    assert_int_equal(lease_held_count(l), 0);
    assert_int_equal(lease_claimable(l, parts), 0);
    assert_int_equal(lease_backend_pid(l), 0);
    /* the server is back: after the backoff the partitions are taken again */
    server_down = false;
    struct timespec ts = {0, 300 * 1000 * 1000};
    nanosleep(&ts, NULL);
    strcpy(held_array, "{}");
    assert_int_equal(lease_tick(l, inflight), 0);
    assert_int_equal(lease_held_count(l), 64);
    lease_destroy(l);
}

static void test_silent_peer_is_ended_and_its_partitions_taken(void **state)
{
    int inflight[OUTBOX_PARTITIONS] = {0};
    lease_t *l = lease_create("db", 7);
    /* two relays hold 32 each; this one is healthy */
    relays = 2;
    set_held(0, 31);
    nstale = 0;
    stale_calls = 0;
    assert_int_equal(lease_tick(l, inflight), 0);
    assert_int_equal(stale_calls, 1); /* every tick looks for silent peers */
    assert_string_equal(stale_app, LEASE_APPLICATION_NAME);
    assert_string_equal(stale_secs, "7");
    assert_int_equal(lease_held_count(l), 32);
    assert_true(lease_peers_ended(l) == 0);

    /* the peer goes silent: its backend is ended; the server then counts one relay */
    stale_pids[0] = "4242";
    nstale = 1;
    relays = 1;
    take_calls = 0;
    assert_int_equal(lease_tick(l, inflight), 0);
    assert_true(lease_peers_ended(l) == 1);
    assert_int_equal(take_calls, 1);
    assert_int_equal(take_need, 32); /* the freed half is taken in the same tick */
    assert_int_equal(lease_held_count(l), 64);
    nstale = 0;
    lease_destroy(l);
}

static void test_ended_ourselves_holds_nothing(void **state)
{
    int inflight[OUTBOX_PARTITIONS] = {0};
    int parts[OUTBOX_PARTITIONS];
    lease_t *l = lease_create("db", 10);
    relays = 2;
    set_held(0, 31);
    nstale = 0;
    assert_int_equal(lease_tick(l, inflight), 0);
    assert_int_equal(lease_held_count(l), 32);
    /* we were the frozen one: a peer ended our lease backend while we slept */
    stale_fails = true;
    assert_int_equal(lease_tick(l, inflight), -1);
    stale_fails = false;
    conn_bad = false;
    assert_int_equal(lease_held_count(l), 0);
    assert_int_equal(lease_claimable(l, parts), 0);
    assert_int_equal(lease_backend_pid(l), 0);
    lease_destroy(l);
}

int main(void)
{
    log_threshold = LOG_LEVEL_ERROR;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_alone_takes_everything),
        cmocka_unit_test(test_second_relay_gets_half_after_in_flight_drains),
        cmocka_unit_test(test_connection_lost_drops_everything),
        cmocka_unit_test(test_silent_peer_is_ended_and_its_partitions_taken),
        cmocka_unit_test(test_ended_ourselves_holds_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
