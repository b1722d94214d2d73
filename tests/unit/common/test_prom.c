/* Unit tests for common/prom.c: the Prometheus text writer of api/ and relay/. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>
#include "common/prom.h"

static void test_family_and_samples(void **state)
{
    strbuf_t b;
    strbuf_init(&b);
    prom_family(&b, "x_total", PROM_COUNTER, "Things.");
    prom_sample_u64(&b, "x_total", NULL, 18446744073709551615ULL);
    prom_sample_u64(&b, "x_total", "", 1);
    prom_sample_i64(&b, "x_total", "a=\"b\"", -3);
    prom_gauge(&b, "g", "A gauge.", 0.25);
    prom_counter(&b, "c_total", "A counter.", 7);
    assert_string_equal(b.data, "# HELP x_total Things.\n# TYPE x_total counter\n"
                                "x_total 18446744073709551615\nx_total 1\nx_total{a=\"b\"} -3\n"
                                "# HELP g A gauge.\n# TYPE g gauge\ng 0.25\n"
                                "# HELP c_total A counter.\n# TYPE c_total counter\nc_total 7\n");
    strbuf_dispose(&b);
}

static void test_histogram_cumulates(void **state)
{
    static const double le[] = {0.001, 0.5};
    uint64_t counts[] = {2, 0, 3}; /* the last: above every bound */
    strbuf_t b;
    strbuf_init(&b);
    prom_histogram(&b, "h_seconds", NULL, le, 2, counts, 12.5);
    prom_histogram(&b, "h_seconds", "op=\"get\"", le, 2, counts, 0);
    assert_string_equal(b.data, "h_seconds_bucket{le=\"0.001\"} 2\n"
                                "h_seconds_bucket{le=\"0.5\"} 2\n"
                                "h_seconds_bucket{le=\"+Inf\"} 5\n"
                                "h_seconds_sum 12.500000\nh_seconds_count 5\n"
                                "h_seconds_bucket{op=\"get\",le=\"0.001\"} 2\n"
                                "h_seconds_bucket{op=\"get\",le=\"0.5\"} 2\n"
                                "h_seconds_bucket{op=\"get\",le=\"+Inf\"} 5\n"
                                "h_seconds_sum{op=\"get\"} 0.000000\n"
                                "h_seconds_count{op=\"get\"} 5\n");
    strbuf_dispose(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_family_and_samples),
        cmocka_unit_test(test_histogram_cumulates),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
