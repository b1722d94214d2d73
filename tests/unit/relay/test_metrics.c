/* Unit tests for relay/metrics.c: exposition format, histogram buckets, build and process
 * metrics, lease fair share. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>
#include "relay/lease.h"
#include "relay/metrics.h"

static void test_render(void **state)
{
    metrics_published(EVENT_TYPE_RATING, 3000);      /* 3 ms */
    metrics_published(EVENT_TYPE_RATING, 40000);     /* 40 ms */
    metrics_published(EVENT_TYPE_PROFILE, 90000000); /* 90 s: only +Inf */
    metrics_failed(EVENT_TYPE_HISTORY);
    metrics_set(METRIC_PARTITIONS_HELD, 21);
    metrics_add(METRIC_DEAD_LETTERED, 2);
    metrics_set(METRIC_HELD_BACK, 5);
    metrics_set(METRIC_OLDEST_PENDING_MS, 1500);
    strbuf_t b;
    strbuf_init(&b);
    metrics_render(&b);
    assert_non_null(
        strstr(b.data, "profile_relay_events_published_total{type=\"VideoRated\"} 2\n"));
    assert_non_null(
        strstr(b.data, "profile_relay_events_published_total{type=\"ProfileUpdated\"} 1\n"));
    assert_non_null(
        strstr(b.data, "profile_relay_events_failed_total{type=\"HistoryUpdated\"} 1\n"));
    assert_non_null(
        strstr(b.data, "profile_relay_commit_to_delivery_seconds_bucket{le=\"0.0025\"} 0\n"));
    assert_non_null(
        strstr(b.data, "profile_relay_commit_to_delivery_seconds_bucket{le=\"0.005\"} 1\n"));
    assert_non_null(
        strstr(b.data, "profile_relay_commit_to_delivery_seconds_bucket{le=\"0.05\"} 2\n"));
    assert_non_null(
        strstr(b.data, "profile_relay_commit_to_delivery_seconds_bucket{le=\"30\"} 2\n"));
    assert_non_null(
        strstr(b.data, "profile_relay_commit_to_delivery_seconds_bucket{le=\"+Inf\"} 3\n"));
    assert_non_null(strstr(b.data, "profile_relay_commit_to_delivery_seconds_count 3\n"));
    assert_non_null(strstr(b.data, "profile_relay_partitions_held 21\n"));
    assert_non_null(strstr(b.data, "profile_relay_dead_lettered_total 2\n"));
    assert_non_null(strstr(b.data, "# TYPE profile_relay_held_back_rows gauge\n"
                                   "profile_relay_held_back_rows 5\n"));
    assert_non_null(strstr(b.data, "\nprofile_relay_oldest_pending_age_seconds 1.5\n"));
    assert_non_null(strstr(b.data, "# TYPE profile_relay_dead_lettered_total counter\n"));
    assert_non_null(strstr(b.data, "profile_relay_commit_to_delivery_seconds_sum 90.043000\n"));
    /* one naming scheme: every relay series is profile_relay_* (or the standard process_*) */
    for (const char *line = b.data; *line != '\0'; line = strchr(line, '\n') + 1) {
        if (line[0] != '#')
            assert_true(strncmp(line, "profile_relay_", 14) == 0 ||
                        strncmp(line, "process_", 8) == 0);
    }
    assert_non_null(strstr(b.data, "# TYPE profile_relay_commit_to_delivery_seconds histogram\n"));
    assert_non_null(strstr(b.data, "\nprofile_relay_build_info{version=\""));
    assert_non_null(strstr(b.data, "\",commit=\""));
    assert_non_null(strstr(b.data, "\nprofile_relay_otel_spans_dropped_total 0\n"));
    assert_non_null(strstr(b.data, "# TYPE process_cpu_seconds_total counter\n"));
    assert_non_null(strstr(b.data, "\nprocess_resident_memory_bytes "));
    assert_non_null(strstr(b.data, "\nprocess_open_fds "));
    assert_non_null(strstr(b.data, "\nprocess_start_time_seconds "));
    assert_non_null(strstr(b.data, "\nprocess_max_fds "));
    strbuf_dispose(&b);
}

static void test_snapshot(void **state)
{
    strbuf_t b;
    snapshot_status_t s = {.runners = 0};

    /* Before the first snapshot: zeros and no info series. */
    metrics_set_snapshot(&s);
    strbuf_init(&b);
    metrics_render(&b);
    assert_null(strstr(b.data, "\nprofile_relay_snapshot_info"));
    assert_non_null(strstr(b.data, "# TYPE profile_relay_snapshot_info gauge\n"));
    assert_non_null(strstr(b.data, "\nprofile_relay_snapshot_users 0\n"));
    assert_non_null(strstr(b.data, "\nprofile_relay_snapshot_runners 0\n"));
    strbuf_dispose(&b);

    s = (snapshot_status_t){.present = true,
                            .id = "0b9c6a2e-4f7d-4a61-9d2c-3e5f8a1b7c90",
                            .users_total = 10000,
                            .users_done = 2500,
                            .events_written = 14012,
                            .finished = false,
                            .updated_at = 1765000000.5,
                            .runners = 1};
    metrics_set_snapshot(&s);
    strbuf_init(&b);
    metrics_render(&b);
    assert_non_null(strstr(b.data, "\nprofile_relay_snapshot_info{snapshot_id=\""
                                   "0b9c6a2e-4f7d-4a61-9d2c-3e5f8a1b7c90\"} 1\n"));
    assert_non_null(strstr(b.data, "# TYPE profile_relay_snapshot_users gauge\n"
                                   "profile_relay_snapshot_users 10000\n"));
    assert_non_null(strstr(b.data, "\nprofile_relay_snapshot_users_done 2500\n"));
    assert_non_null(strstr(b.data, "\nprofile_relay_snapshot_events_written 14012\n"));
    assert_non_null(strstr(b.data, "\nprofile_relay_snapshot_finished 0\n"));
    assert_non_null(
        strstr(b.data, "\nprofile_relay_snapshot_last_progress_timestamp_seconds 1765000000.5\n"));
    assert_non_null(strstr(b.data, "\nprofile_relay_snapshot_runners 1\n"));
    strbuf_dispose(&b);
}

static void test_fair_share(void **state)
{
    assert_int_equal(lease_fair_share(0), 64);
    assert_int_equal(lease_fair_share(1), 64);
    assert_int_equal(lease_fair_share(2), 32);
    assert_int_equal(lease_fair_share(3), 22);
    assert_int_equal(lease_fair_share(64), 1);
    assert_int_equal(lease_fair_share(100), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_render),
        cmocka_unit_test(test_snapshot),
        cmocka_unit_test(test_fair_share),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
