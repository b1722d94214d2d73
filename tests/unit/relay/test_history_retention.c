/*
 * Unit tests for relay/history_retention.c with a seam at libpq (STYLE.md rule 23): PQexecParams
 * is replaced by a fake that records the call and answers with a result built by libpq itself
 * (a count, NULL for "another relay holds the lock", or an error), so the schedule can be
 * checked without a server.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>
#include "relay/history_retention.h"
#include "relay/metrics.h"

typedef enum { ANSWER_COUNT, ANSWER_NULL, ANSWER_ERROR } answer_t;

static answer_t answer;
static int answer_count;
static int calls;
static char last_sql[512];
static char last_params[2][32];
static PGconn *conn; /* a real, unconnected PGconn: PQerrorMessage() works on it */

PGresult *PQexecParams(PGconn *c, const char *command, int nParams, const Oid *paramTypes,
                       const char *const *paramValues, const int *paramLengths,
                       const int *paramFormats, int resultFormat)
{
    calls++;
    snprintf(last_sql, sizeof(last_sql), "%s", command);
    for (int i = 0; i < nParams && i < 2; ++i)
        snprintf(last_params[i], sizeof(last_params[i]), "%s", paramValues[i]);
    if (answer == ANSWER_ERROR)
        return PQmakeEmptyPGresult(NULL, PGRES_FATAL_ERROR);
    PGresult *res = PQmakeEmptyPGresult(NULL, PGRES_TUPLES_OK);
    PGresAttDesc col = {
        .name = "history_retention_purge", .typid = 23, .typlen = 4, .atttypmod = -1};
    assert_true(PQsetResultAttrs(res, 1, &col));
    if (answer == ANSWER_NULL) {
        assert_true(PQsetvalue(res, 0, 0, NULL, -1));
    } else {
        char v[16];
        snprintf(v, sizeof(v), "%d", answer_count);
        assert_true(PQsetvalue(res, 0, 0, v, (int)strlen(v)));
    }
    return res;
}

static int setup(void **state)
{
    conn = PQconnectdb("host=/nonexistent-profile-test-dir port=1 connect_timeout=1");
    return conn == NULL ? -1 : 0;
}

static int teardown(void **state)
{
    PQfinish(conn);
    return 0;
}

static void test_off_never_runs(void **state)
{
    history_retention_t r;
    history_retention_init(&r, 0, 1000);
    calls = 0;
    assert_int_equal(history_retention_tick(&r, conn, 0), 0);
    assert_int_equal(history_retention_tick(&r, conn, 1000000), 0);
    assert_int_equal(calls, 0);
}

static void test_full_batch_comes_back_soon_partial_batch_waits(void **state)
{
    history_retention_t r;
    long long rows = metrics_get(METRIC_HISTORY_ROWS_REMOVED);
    long long batches = metrics_get(METRIC_HISTORY_RETENTION_BATCHES);
    history_retention_init(&r, 30, 500);
    calls = 0;
    answer = ANSWER_COUNT;
    answer_count = 500;
    assert_int_equal(history_retention_tick(&r, conn, 1000), 0); /* due at once */
    assert_int_equal(calls, 1);
    assert_non_null(strstr(last_sql, "history_retention_purge($1::int, $2::int)"));
    assert_string_equal(last_params[0], "30");
    assert_string_equal(last_params[1], "500");
    /* full: the next one 100 ms later, not before */
    assert_int_equal(history_retention_tick(&r, conn, 1099), 0);
    assert_int_equal(calls, 1);
    answer_count = 7;
    assert_int_equal(history_retention_tick(&r, conn, 1100), 0);
    assert_int_equal(calls, 2);
    /* partial: nothing more is old enough; a minute later */
    assert_int_equal(history_retention_tick(&r, conn, 60000), 0);
    assert_int_equal(calls, 2);
    assert_int_equal(history_retention_tick(&r, conn, 61100), 0);
    assert_int_equal(calls, 3);
    assert_int_equal(metrics_get(METRIC_HISTORY_ROWS_REMOVED) - rows, 500 + 7 + 7);
    assert_int_equal(metrics_get(METRIC_HISTORY_RETENTION_BATCHES) - batches, 3);
}

static void test_lock_held_elsewhere_retries_in_a_second_uncounted(void **state)
{
    history_retention_t r;
    long long batches = metrics_get(METRIC_HISTORY_RETENTION_BATCHES);
    history_retention_init(&r, 30, 500);
    calls = 0;
    answer = ANSWER_NULL;
    assert_int_equal(history_retention_tick(&r, conn, 5000), 0);
    assert_int_equal(history_retention_tick(&r, conn, 5999), 0);
    assert_int_equal(calls, 1);
    assert_int_equal(history_retention_tick(&r, conn, 6000), 0);
    assert_int_equal(calls, 2);
    assert_int_equal(metrics_get(METRIC_HISTORY_RETENTION_BATCHES), batches);
}

static void test_failure_reports_and_backs_off(void **state)
{
    history_retention_t r;
    history_retention_init(&r, 30, 500);
    calls = 0;
    answer = ANSWER_ERROR;
    assert_int_equal(history_retention_tick(&r, conn, 1000), -1);
    assert_int_equal(history_retention_tick(&r, conn, 30999), 0);
    assert_int_equal(calls, 1);
    answer = ANSWER_COUNT;
    answer_count = 0;
    assert_int_equal(history_retention_tick(&r, conn, 31000), 0);
    assert_int_equal(calls, 2);
}

static void test_no_connection_is_not_an_error(void **state)
{
    history_retention_t r;
    history_retention_init(&r, 30, 500);
    calls = 0;
    assert_int_equal(history_retention_tick(&r, NULL, 1000), 0);
    assert_int_equal(calls, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_off_never_runs),
        cmocka_unit_test(test_full_batch_comes_back_soon_partial_batch_waits),
        cmocka_unit_test(test_lock_held_elsewhere_retries_in_a_second_uncounted),
        cmocka_unit_test(test_failure_reports_and_backs_off),
        cmocka_unit_test(test_no_connection_is_not_an_error),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
