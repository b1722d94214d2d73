/* Unit tests for relay/snapshot.c: arguments, pacing and the progress line. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <cmocka.h>
#include <string.h>
#include "relay/snapshot.h"

static int parse(snapshot_opts_t *o, int argc, ...)
{
    char *argv[8];
    va_list ap;
    va_start(ap, argc);
    for (int i = 0; i < argc; ++i)
        argv[i] = va_arg(ap, char *);
    va_end(ap);
    FILE *devnull = fopen("/dev/null", "w");
    int rc = snapshot_parse_args(argc, argv, o, devnull);
    fclose(devnull);
    return rc;
}

static void test_args(void **state)
{
    snapshot_opts_t o;
    assert_int_equal(parse(&o, 1, "--all"), 0);
    assert_null(o.only_user);
    assert_true(o.rate == SNAPSHOT_DEFAULT_RATE);
    assert_int_equal(parse(&o, 4, "--user", "u-1.x_y", "--rate", "250.5"), 0);
    assert_string_equal(o.only_user, "u-1.x_y");
    assert_true(o.rate == 250.5);

    assert_int_equal(parse(&o, 0), -1);
    assert_int_equal(parse(&o, 3, "--all", "--user", "u1"), -1);
    assert_int_equal(parse(&o, 1, "--user"), -1);
    assert_int_equal(parse(&o, 2, "--user", "bad/id"), -1);
    assert_int_equal(parse(&o, 2, "--user", ""), -1);
    assert_int_equal(parse(&o, 3, "--all", "--rate", "0"), -1);
    assert_int_equal(parse(&o, 3, "--all", "--rate", "-5"), -1);
    assert_int_equal(parse(&o, 3, "--all", "--rate", "10x"), -1);
    assert_int_equal(parse(&o, 3, "--all", "--rate", "inf"), -1);
    assert_int_equal(parse(&o, 2, "--all", "--rate"), -1);
    assert_int_equal(parse(&o, 2, "--all", "--all"), -1);
    assert_int_equal(parse(&o, 1, "all"), -1);
}

static void test_throttle(void **state)
{
    /* 100 events at 50/s are due at 2 s. */
    assert_true(snapshot_throttle_delay(100, 50, 0.5) == 1.5);
    assert_true(snapshot_throttle_delay(100, 50, 2.0) == 0);
    assert_true(snapshot_throttle_delay(100, 50, 3.0) == 0);
    assert_true(snapshot_throttle_delay(0, 50, 0) == 0);
}

static void test_progress_line(void **state)
{
    char buf[256];
    /* 250 of 1000 users in 10 s of this run: 750 left at 25 users/s is 30 s. */
    snapshot_format_progress(buf, sizeof(buf), 250, 1000, 4000, 250, 4000, 10.0);
    assert_string_equal(buf, "users 250/1000 (25.0%), events 4000, 400 events/s, ETA 30s");
    /* Resumed: 900 done before, 50 this run in 100 s: 50 left is 100 s. */
    snapshot_format_progress(buf, sizeof(buf), 950, 1000, 9000, 50, 500, 100.0);
    assert_string_equal(buf, "users 950/1000 (95.0%), events 9000, 5 events/s, ETA 1m40s");
    /* Users created after the start are taken too: the total never shows below done. */
    snapshot_format_progress(buf, sizeof(buf), 12, 10, 30, 12, 30, 1.0);
    assert_string_equal(buf, "users 12/12 (100.0%), events 30, 30 events/s, ETA 0s");
    snapshot_format_progress(buf, sizeof(buf), 0, 10, 0, 0, 0, 0);
    assert_string_equal(buf, "users 0/10 (0.0%), events 0, 0 events/s, ETA ?");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_args),
        cmocka_unit_test(test_throttle),
        cmocka_unit_test(test_progress_line),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
