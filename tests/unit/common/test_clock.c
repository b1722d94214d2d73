/* Unit tests for common/clock.c: units agree with each other and monotonic time never goes back. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <time.h>
#include "common/clock.h"

static void test_units_agree(void **state)
{
    int64_t ms = clock_mono_ms();
    int64_t us = clock_mono_us();
    int64_t ms2 = clock_mono_ms();
    assert_true(us / 1000 >= ms);
    assert_true(us / 1000 <= ms2);
    int64_t coarse = clock_mono_coarse_s();
    assert_true(coarse <= ms2 / 1000 + 1);
    assert_true(coarse >= ms / 1000 - 1);
}

static void test_monotonic_and_elapsed(void **state)
{
    struct timespec a, b;
    clock_mono_ts(&a);
    struct timespec nap = {0, 2000000};
    nanosleep(&nap, NULL);
    clock_mono_ts(&b);
    double d = clock_elapsed_s(&a, &b);
    assert_true(d >= 0.002);
    assert_true(clock_elapsed_s(&b, &a) <= -0.002);
    assert_true(clock_since_s(&a) >= d);
}

static void test_elapsed_borrows_nanoseconds(void **state)
{
    struct timespec a = {10, 900000000}, b = {11, 100000000};
    double d = clock_elapsed_s(&a, &b);
    assert_true(d > 0.1999 && d < 0.2001);
}

static void test_wall_is_epoch_ns(void **state)
{
    int64_t ns = clock_wall_ns();
    time_t t = time(NULL);
    assert_true(ns / 1000000000 >= t - 1 && ns / 1000000000 <= t + 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_units_agree),
        cmocka_unit_test(test_monotonic_and_elapsed),
        cmocka_unit_test(test_elapsed_borrows_nanoseconds),
        cmocka_unit_test(test_wall_is_epoch_ns),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
