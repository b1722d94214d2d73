/* Unit tests for common/db.c: which errors and which reported server states mean "this is not a
 * writable primary any more, connect again" (the failover classification). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include "common/db.h"

static void test_failover_sqlstates(void **state)
{
    assert_true(db_sqlstate_is_failover("25006")); /* cannot execute ... in a read-only txn */
    assert_true(db_sqlstate_is_failover("57P01"));
    assert_true(db_sqlstate_is_failover("57P02"));
    assert_true(db_sqlstate_is_failover("57P03"));
    /* errors of the request itself: the connection stays */
    assert_false(db_sqlstate_is_failover("23505"));
    assert_false(db_sqlstate_is_failover("40001")); /* retried; a conflict only on a standby */
    assert_false(db_sqlstate_is_failover("P0001"));
    assert_false(db_sqlstate_is_failover("25P02"));
    assert_false(db_sqlstate_is_failover(""));
    assert_false(db_sqlstate_is_failover(NULL));
}

static void test_reported_read_only(void **state)
{
    assert_false(db_reported_read_only("off", "off"));
    assert_true(db_reported_read_only("on", "off")); /* a standby (or still recovering) */
    assert_true(db_reported_read_only("off", "on")); /* a primary fenced read-only */
    assert_true(db_reported_read_only("on", "on"));
    assert_false(db_reported_read_only(NULL, NULL)); /* a server older than 14 reports neither */
    assert_true(db_reported_read_only(NULL, "on"));
    assert_false(db_conn_read_only(NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_failover_sqlstates),
        cmocka_unit_test(test_reported_read_only),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
