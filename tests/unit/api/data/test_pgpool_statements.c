/*
 * Unit tests for api/data/pgpool.c's statement mode (PG_PREPARED_STATEMENTS): with the libpq calls
 * behind the pool's seam wrapped (-Wl,--wrap, tests/unit/CMakeLists.txt), prepared mode
 * prepares every statement by name and executes by name; unnamed mode prepares nothing and
 * sends each statement's SQL with PQsendQueryParams, same parameters and result format.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>
#include "api/data/pgpool.h"
#include "api/data/pgpool_internal.h"

int __wrap_PQsendPrepare(PGconn *conn, const char *name, const char *query, int nparams,
                         const Oid *types);
int __wrap_PQsendQueryPrepared(PGconn *conn, const char *name, int nparams,
                               const char *const *values, const int *lengths, const int *formats,
                               int result_format);
int __wrap_PQsendQueryParams(PGconn *conn, const char *command, int nparams, const Oid *types,
                             const char *const *values, const int *lengths, const int *formats,
                             int result_format);

static int nprepares;
static char prepared_names[PGPOOL_STMT__COUNT][64];

int __wrap_PQsendPrepare(PGconn *conn, const char *name, const char *query, int nparams,
                         const Oid *types)
{
    assert_true(nprepares < PGPOOL_STMT__COUNT);
    assert_non_null(query);
    assert_true(strncmp(query, "SELECT ", 7) == 0);
    snprintf(prepared_names[nprepares++], sizeof(prepared_names[0]), "%s", name);
    return 1;
}

int __wrap_PQsendQueryPrepared(PGconn *conn, const char *name, int nparams,
                               const char *const *values, const int *lengths, const int *formats,
                               int result_format)
{
    check_expected_ptr(name);
    check_expected(nparams);
    check_expected(result_format);
    for (int i = 0; i < nparams; i++)
        assert_int_equal(lengths[i], values[i] != NULL ? (int)strlen(values[i]) : 0);
    return mock_type(int);
}

int __wrap_PQsendQueryParams(PGconn *conn, const char *command, int nparams, const Oid *types,
                             const char *const *values, const int *lengths, const int *formats,
                             int result_format)
{
    check_expected_ptr(command);
    check_expected(nparams);
    check_expected(result_format);
    assert_null(types); /* the server infers types, as it does for the prepared statements */
    for (int i = 0; i < nparams; i++)
        assert_int_equal(lengths[i], values[i] != NULL ? (int)strlen(values[i]) : 0);
    return mock_type(int);
}

static int reset(void **state)
{
    nprepares = 0;
    memset(prepared_names, 0, sizeof(prepared_names));
    return 0;
}

static void test_prepared_mode_prepares_every_statement(void **state)
{
    assert_int_equal(pgpool_send_prepares(NULL, 1), 0);
    assert_int_equal(nprepares, PGPOOL_STMT__COUNT);
    for (int i = 0; i < PGPOOL_STMT__COUNT; i++)
        assert_string_equal(prepared_names[i], pgpool_stmt_name((pgpool_stmt_t)i));
}

static void test_unnamed_mode_prepares_nothing(void **state)
{
    assert_int_equal(pgpool_send_prepares(NULL, 0), 0);
    assert_int_equal(nprepares, 0);
}

static void test_prepared_mode_executes_by_name(void **state)
{
    const char *values[] = {"u1", NULL, "abc"};
    expect_string(__wrap_PQsendQueryPrepared, name, "watchlist_add");
    expect_value(__wrap_PQsendQueryPrepared, nparams, 3);
    expect_value(__wrap_PQsendQueryPrepared, result_format, 0);
    will_return(__wrap_PQsendQueryPrepared, 1);
    assert_int_equal(pgpool_send_statement(NULL, 1, PGPOOL_STMT_WATCHLIST_ADD, 3, values), 0);
}

static int is_watchlist_add_sql(const LargestIntegralType value,
                                const LargestIntegralType check_data)
{
    const char *sql = (const char *)(uintptr_t)value;
    return strstr(sql, "FROM api_watchlist_add($1, $2, decode($3, 'hex')") != NULL;
}

static int is_page_watchlist_sql(const LargestIntegralType value,
                                 const LargestIntegralType check_data)
{
    const char *sql = (const char *)(uintptr_t)value;
    return strstr(sql, "FROM api_page_watchlist($1") != NULL;
}

static void test_unnamed_mode_sends_the_sql(void **state)
{
    const char *values[] = {"u1", NULL, "abc"};
    expect_check(__wrap_PQsendQueryParams, command, is_watchlist_add_sql, 0);
    expect_value(__wrap_PQsendQueryParams, nparams, 3);
    expect_value(__wrap_PQsendQueryParams, result_format, 0);
    will_return(__wrap_PQsendQueryParams, 1);
    assert_int_equal(pgpool_send_statement(NULL, 0, PGPOOL_STMT_WATCHLIST_ADD, 3, values), 0);
}

static void test_unnamed_mode_keeps_binary_pages(void **state)
{
    const char *values[] = {"u1", "10", "0", ""};
    expect_check(__wrap_PQsendQueryParams, command, is_page_watchlist_sql, 0);
    expect_value(__wrap_PQsendQueryParams, nparams, 4);
    expect_value(__wrap_PQsendQueryParams, result_format, 1);
    will_return(__wrap_PQsendQueryParams, 1);
    assert_int_equal(pgpool_send_statement(NULL, 0, PGPOOL_STMT_PAGE_WATCHLIST, 4, values), 0);
}

static void test_refused_send_is_an_error(void **state)
{
    const char *values[] = {"u1"};
    expect_string(__wrap_PQsendQueryPrepared, name, "get_profile");
    expect_value(__wrap_PQsendQueryPrepared, nparams, 1);
    expect_value(__wrap_PQsendQueryPrepared, result_format, 0);
    will_return(__wrap_PQsendQueryPrepared, 0);
    assert_int_equal(pgpool_send_statement(NULL, 1, PGPOOL_STMT_GET_PROFILE, 1, values), -1);
    expect_any(__wrap_PQsendQueryParams, command);
    expect_value(__wrap_PQsendQueryParams, nparams, 1);
    expect_value(__wrap_PQsendQueryParams, result_format, 0);
    will_return(__wrap_PQsendQueryParams, 0);
    assert_int_equal(pgpool_send_statement(NULL, 0, PGPOOL_STMT_GET_PROFILE, 1, values), -1);
}

static void test_missing_statement_classification(void **state)
{
    assert_false(pgpool_is_missing_statement(NULL));
    assert_false(pgpool_statements_failing());
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_prepared_mode_prepares_every_statement, reset),
        cmocka_unit_test_setup(test_unnamed_mode_prepares_nothing, reset),
        cmocka_unit_test_setup(test_prepared_mode_executes_by_name, reset),
        cmocka_unit_test_setup(test_unnamed_mode_sends_the_sql, reset),
        cmocka_unit_test_setup(test_unnamed_mode_keeps_binary_pages, reset),
        cmocka_unit_test_setup(test_refused_send_is_an_error, reset),
        cmocka_unit_test_setup(test_missing_statement_classification, reset),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
