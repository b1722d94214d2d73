/* Unit tests for relay/event.c: CloudEvents headers, traceparents, dead-letter ids. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>
#include "relay/event.h"

static relay_event_t sample(const char *traceparent)
{
    relay_event_t ev = {
        .user_id = "u42",
        .seq = 17,
        .event_id = "0b7e4b7a-7d3c-4c1f-9a55-2f2b1f0c9e01",
        .event_type = "VideoRated",
        .partition_no = 5,
        .payload = "{\"userId\":\"u42\"}",
        .payload_len = 16,
        .traceparent = traceparent,
        .ce_time = "2026-01-02T03:04:05.678Z",
        .created_us = 0,
    };
    return ev;
}

static void test_headers_exact(void **state)
{
    const char *tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    relay_event_t ev = sample(tp);
    event_header_buf_t scratch;
    event_header_t h[EVENT_HEADER_MAX];
    assert_int_equal(event_build_headers(&ev, "/profile-service", &scratch, h), EVENT_HEADER_COUNT);
    const char *names[] = {"ce_specversion", "ce_id",      "ce_source", "ce_type",
                           "ce_dataschema",  "ce_subject", "ce_time",   "ce_sequence",
                           "content-type",   "traceparent"};
    const char *values[] = {"1.0",
                            "0b7e4b7a-7d3c-4c1f-9a55-2f2b1f0c9e01",
                            "/profile-service",
                            "VideoRated",
                            "urn:profile-service:schema:VideoRated:1",
                            "u42",
                            "2026-01-02T03:04:05.678Z",
                            "17",
                            "application/json",
                            tp};
    for (int i = 0; i < EVENT_HEADER_COUNT; ++i) {
        assert_string_equal(h[i].name, names[i]);
        assert_int_equal(h[i].len, strlen(values[i]));
        assert_memory_equal(h[i].value, values[i], h[i].len);
    }
}

static void test_missing_traceparent_is_generated(void **state)
{
    const char *bad[] = {NULL, "", "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                         "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); ++i) {
        relay_event_t ev = sample(bad[i]);
        event_header_buf_t scratch;
        event_header_t h[EVENT_HEADER_MAX];
        event_build_headers(&ev, "/s", &scratch, h);
        assert_string_equal(h[9].name, "traceparent");
        assert_int_equal(h[9].len, EVENT_TRACEPARENT_LEN);
        char tp[EVENT_TRACEPARENT_LEN + 1];
        memcpy(tp, h[9].value, EVENT_TRACEPARENT_LEN);
        tp[EVENT_TRACEPARENT_LEN] = '\0';
        assert_true(event_traceparent_valid(tp));
    }
}

/* ce_dataschema names the schema of each type: the `$id` of schemas/events/<Type>.v1.json. */
static void test_dataschema_per_type(void **state)
{
    static const struct {
        const char *type;
        const char *uri;
    } want[] = {
        {"WatchlistUpdated", "urn:profile-service:schema:WatchlistUpdated:1"},
        {"HistoryUpdated", "urn:profile-service:schema:HistoryUpdated:1"},
        {"VideoRated", "urn:profile-service:schema:VideoRated:1"},
        {"ProfileUpdated", "urn:profile-service:schema:ProfileUpdated:1"},
        {"ProfileDeleted", "urn:profile-service:schema:ProfileDeleted:1"},
    };
    assert_int_equal(sizeof(want) / sizeof(want[0]), EVENT_TYPE_COUNT);
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); ++i) {
        relay_event_t ev = sample(NULL);
        event_header_buf_t scratch;
        event_header_t h[EVENT_HEADER_MAX];
        ev.event_type = want[i].type;
        event_build_headers(&ev, "/s", &scratch, h);
        assert_string_equal(h[4].name, "ce_dataschema");
        assert_int_equal(h[4].len, strlen(want[i].uri));
        assert_memory_equal(h[4].value, want[i].uri, h[4].len);
        assert_string_equal(event_dataschema(event_type_from_name(want[i].type)), want[i].uri);
    }
    assert_null(event_dataschema(EVENT_TYPE_COUNT));

    /* A type the relay does not know names no schema (a consumer that validates rejects it). */
    relay_event_t ev = sample(NULL);
    event_header_buf_t scratch;
    event_header_t h[EVENT_HEADER_MAX];
    ev.event_type = "SomethingNew";
    event_build_headers(&ev, "/s", &scratch, h);
    assert_string_equal(h[4].name, "ce_dataschema");
    assert_int_equal(h[4].len, 0);
}

/* A snapshot's event carries ce_snapshot after the ten headers; "" counts as none. */
static void test_snapshot_header(void **state)
{
    const char *snap = "5f0c6b1e-2a8d-4c47-9e1b-0d2f3a4b5c6d";
    relay_event_t ev = sample(NULL);
    event_header_buf_t scratch;
    event_header_t h[EVENT_HEADER_MAX];
    ev.snapshot_id = snap;
    assert_int_equal(event_build_headers(&ev, "/s", &scratch, h), EVENT_HEADER_MAX);
    assert_string_equal(h[EVENT_HEADER_COUNT].name, "ce_snapshot");
    assert_int_equal(h[EVENT_HEADER_COUNT].len, strlen(snap));
    assert_memory_equal(h[EVENT_HEADER_COUNT].value, snap, strlen(snap));
    assert_string_equal(h[9].name, "traceparent");
    ev.snapshot_id = "";
    assert_int_equal(event_build_headers(&ev, "/s", &scratch, h), EVENT_HEADER_COUNT);
}

static void test_new_traceparents_differ(void **state)
{
    char a[EVENT_TRACEPARENT_LEN + 1], b[EVENT_TRACEPARENT_LEN + 1];
    event_new_traceparent(a);
    event_new_traceparent(b);
    assert_true(event_traceparent_valid(a));
    assert_true(event_traceparent_valid(b));
    assert_string_not_equal(a, b);
    assert_memory_equal(a + 52, "-01", 3);
}

static void test_traceparent_validation(void **state)
{
    assert_true(event_traceparent_valid("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"));
    assert_false(
        event_traceparent_valid("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
    assert_false(
        event_traceparent_valid("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01"));
    assert_false(
        event_traceparent_valid("00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01"));
    assert_false(
        event_traceparent_valid("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x"));
}

static void test_types(void **state)
{
    assert_int_equal(event_type_from_name("WatchlistUpdated"), EVENT_TYPE_WATCHLIST);
    assert_int_equal(event_type_from_name("ProfileUpdated"), EVENT_TYPE_PROFILE);
    assert_int_equal(event_type_from_name("Nope"), EVENT_TYPE_COUNT);
    assert_int_equal(event_type_from_name(NULL), EVENT_TYPE_COUNT);
    assert_string_equal(event_type_name(EVENT_TYPE_HISTORY), "HistoryUpdated");
    assert_string_equal(event_type_name(EVENT_TYPE_COUNT), "unknown");
}

static void test_dlq_ids(void **state)
{
    event_dlq_id_t id;
    assert_int_equal(event_parse_dlq_id("user.1_x-y:42", &id), 0);
    assert_false(id.by_uuid);
    assert_string_equal(id.user_id, "user.1_x-y");
    assert_int_equal(id.seq, 42);

    assert_int_equal(event_parse_dlq_id("0B7E4B7A-7D3C-4C1F-9A55-2F2B1F0C9E01", &id), 0);
    assert_true(id.by_uuid);
    assert_string_equal(id.uuid, "0b7e4b7a-7d3c-4c1f-9a55-2f2b1f0c9e01");

    const char *bad[] = {"",
                         ":1",
                         "u:",
                         "u:0",
                         "u:-1",
                         "u:1x",
                         "bad user:1",
                         "u:1:2",
                         "0b7e4b7a-7d3c-4c1f-9a55-2f2b1f0c9e0",
                         "not-a-uuid",
                         "u:1234567890123456789"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); ++i)
        assert_int_equal(event_parse_dlq_id(bad[i], &id), -1);
    assert_int_equal(event_parse_dlq_id(NULL, &id), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_headers_exact),
        cmocka_unit_test(test_missing_traceparent_is_generated),
        cmocka_unit_test(test_dataschema_per_type),
        cmocka_unit_test(test_snapshot_header),
        cmocka_unit_test(test_new_traceparents_differ),
        cmocka_unit_test(test_traceparent_validation),
        cmocka_unit_test(test_types),
        cmocka_unit_test(test_dlq_ids),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
