/*
 * Unit tests for relay/outbox.c with a seam at libpq (STYLE.md rule 23): PQexecParams is
 * replaced by a fake defined here (the executable's definition wins over the shared library's),
 * which records the statement's parameters and answers with a NULL result (a failed call). The
 * connection is a dummy pointer: only PQerrorMessage reads it (when the failure is logged).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>
#include "relay/outbox.h"

static char last_sql[4096];
static char last_params[8][512];
static int last_nparams;
static char dummy;
#define CONN ((PGconn *)&dummy)

static void record(const char *command, int nParams, const char *const *paramValues)
{
    snprintf(last_sql, sizeof(last_sql), "%s", command);
    last_nparams = nParams;
    for (int i = 0; i < nParams && i < 8; ++i)
        snprintf(last_params[i], sizeof(last_params[i]), "%s",
                 paramValues[i] != NULL ? paramValues[i] : "<NULL>");
}

char *PQerrorMessage(const PGconn *conn)
{
    assert_ptr_equal(conn, CONN);
    return (char *)(uintptr_t) "fake failure\n";
}

int PQsendQueryParams(PGconn *conn, const char *command, int nParams, const Oid *paramTypes,
                      const char *const *paramValues, const int *paramLengths,
                      const int *paramFormats, int resultFormat)
{
    record(command, nParams, paramValues);
    return 0;
}

PGresult *PQexecParams(PGconn *conn, const char *command, int nParams, const Oid *paramTypes,
                       const char *const *paramValues, const int *paramLengths,
                       const int *paramFormats, int resultFormat)
{
    record(command, nParams, paramValues);
    return NULL;
}

static void test_text_array_escapes(void **state)
{
    const char *items[] = {"a", "b\"c", "d\\e", ""};
    char *s = outbox_text_array(items, 4);
    assert_string_equal(s, "{\"a\",\"b\\\"c\",\"d\\\\e\",\"\"}");
    free(s);
    s = outbox_text_array(NULL, 0);
    assert_string_equal(s, "{}");
    free(s);
}

static void test_claim_parameters(void **state)
{
    int parts[] = {7, 8, 63, 0};
    const char *busy[] = {"u1", "u2"};
    outbox_batch_t b;
    assert_int_equal(outbox_claim(CONN, parts, 4, busy, 2, 4242, 500, &b), -1);
    assert_int_equal(b.n, 0);
    assert_null(b.res);
    assert_int_equal(last_nparams, 5);
    assert_string_equal(last_params[0], "{7,8,63,0}");
    assert_string_equal(last_params[1], "{\"u1\",\"u2\"}");
    assert_string_equal(last_params[2], "500");
    assert_string_equal(last_params[3], "4242");
    assert_int_equal(atoi(last_params[4]), OUTBOX_LEASE_CLASS);
    /* the properties the relay's correctness rests on */
    assert_non_null(strstr(last_sql, "published_at IS NULL"));
    assert_non_null(strstr(last_sql, "outbox_dead_letters"));
    assert_non_null(strstr(last_sql, "ORDER BY o.user_id, o.seq"));
    assert_non_null(strstr(last_sql, "pg_locks"));
    assert_null(strstr(last_sql, "FOR UPDATE"));
}

static void test_mark_is_one_statement(void **state)
{
    const char *users[] = {"a", "b", "a"};
    int64_t seqs[] = {1, 9, 2};
    assert_int_equal(outbox_mark_send(CONN, users, seqs, 3), -1);
    assert_int_equal(last_nparams, 2);
    assert_string_equal(last_params[0], "{\"a\",\"b\",\"a\"}");
    assert_string_equal(last_params[1], "{1,9,2}");
    assert_non_null(strstr(last_sql, "unnest($1::text[], $2::bigint[])"));
    assert_non_null(strstr(last_sql, "published_at IS NULL"));
}

static void test_dlq_resolve_parameters(void **state)
{
    event_dlq_id_t id;
    assert_int_equal(event_parse_dlq_id("u7:3", &id), 0);
    assert_int_equal(outbox_dlq_resolve(CONN, &id, true), -1);
    assert_string_equal(last_params[0], "u7");
    assert_string_equal(last_params[1], "3");
    assert_string_equal(last_params[2], "<NULL>");
    assert_non_null(strstr(last_sql, "UPDATE outbox"));
    assert_int_equal(event_parse_dlq_id("0b7e4b7a-7d3c-4c1f-9a55-2f2b1f0c9e01", &id), 0);
    assert_int_equal(outbox_dlq_resolve(CONN, &id, false), -1);
    assert_string_equal(last_params[0], "<NULL>");
    assert_string_equal(last_params[2], "0b7e4b7a-7d3c-4c1f-9a55-2f2b1f0c9e01");
    assert_null(strstr(last_sql, "UPDATE outbox"));
}

static void test_purge_is_bounded(void **state)
{
    int parts[] = {1, 2};
    assert_int_equal(outbox_purge_published(CONN, 3600, parts, 2, 5000), -1);
    assert_string_equal(last_params[0], "3600");
    assert_string_equal(last_params[1], "{1,2}");
    assert_string_equal(last_params[2], "5000");
    assert_non_null(strstr(last_sql, "LIMIT $3"));
    assert_non_null(strstr(last_sql, "SKIP LOCKED"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text_array_escapes),    cmocka_unit_test(test_claim_parameters),
        cmocka_unit_test(test_mark_is_one_statement), cmocka_unit_test(test_dlq_resolve_parameters),
        cmocka_unit_test(test_purge_is_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
