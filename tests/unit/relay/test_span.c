/* Unit tests for relay/span.c and event_traceparent_parse(): publish span ids, sampling, shape. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>
#include "common/otel.h"
#include "relay/event.h"
#include "relay/span.h"

static const uint8_t trace_a[16] = {0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6,
                                    0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36};
static const uint8_t span_a[8] = {0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7};
static const uint8_t zero[16];

static relay_event_t row(const char *traceparent)
{
    relay_event_t ev = {
        .user_id = "u42",
        .seq = 17,
        .event_id = "0b7e4b7a-7d3c-4c1f-9a55-2f2b1f0c9e01",
        .event_type = "VideoRated",
        .traceparent = traceparent,
    };
    return ev;
}

static int start_exporter(void **state)
{
    char err[256];
    /* Nothing listens on port 1: exports fail and are counted, which these tests ignore. */
    return otel_exporter_start("http://127.0.0.1:1", "test", 1.0, 64, err, sizeof(err));
}

static int stop_exporter(void **state)
{
    otel_exporter_stop(0);
    return 0;
}

static void test_parse(void **state)
{
    uint8_t t[16], s[8], flags = 0xff;
    assert_int_equal(event_traceparent_parse(
                         "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", t, s, &flags),
                     0);
    assert_memory_equal(t, trace_a, 16);
    assert_memory_equal(s, span_a, 8);
    assert_int_equal(flags, 1);
    assert_int_equal(event_traceparent_parse(
                         "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", t, s, &flags),
                     0);
    assert_int_equal(flags, 0);
    assert_int_equal(event_traceparent_parse(NULL, t, s, &flags), -1);
    assert_int_equal(event_traceparent_parse("", t, s, &flags), -1);
    assert_int_equal(event_traceparent_parse(
                         "00-00000000000000000000000000000000-00f067aa0ba902b7-01", t, s, &flags),
                     -1);
    assert_int_equal(event_traceparent_parse(
                         "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", t, s, &flags),
                     -1);
}

static void test_begin_stored_sampled(void **state)
{
    relay_event_t ev = row("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    const char *stored = ev.traceparent;
    char buf[EVENT_TRACEPARENT_LEN + 1] = "";
    span_publish_t sp;
    assert_true(span_begin(&ev, buf, &sp));
    assert_ptr_equal(ev.traceparent, stored); /* the header keeps the API's traceparent */
    assert_memory_equal(sp.trace_id, trace_a, 16);
    assert_memory_equal(sp.parent_id, span_a, 8);
    assert_memory_not_equal(sp.span_id, span_a, 8);
    assert_memory_not_equal(sp.span_id, zero, 8);
    assert_true(sp.start_ns > 0);
}

static void test_begin_not_sampled_flag(void **state)
{
    relay_event_t ev = row("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00");
    char buf[EVENT_TRACEPARENT_LEN + 1] = "";
    span_publish_t sp;
    assert_false(span_begin(&ev, buf, &sp));
}

static void test_begin_new_trace(void **state)
{
    const char *missing[] = {NULL, "", "garbage"};
    for (size_t i = 0; i < sizeof(missing) / sizeof(missing[0]); ++i) {
        relay_event_t ev = row(missing[i]);
        char buf[EVENT_TRACEPARENT_LEN + 1] = "";
        uint8_t t[16], s[8], flags;
        span_publish_t sp;
        assert_true(span_begin(&ev, buf, &sp));
        assert_ptr_equal(ev.traceparent, buf); /* the header carries the span's ids */
        assert_true(event_traceparent_valid(buf));
        assert_int_equal(event_traceparent_parse(buf, t, s, &flags), 0);
        assert_memory_equal(sp.trace_id, t, 16);
        assert_memory_equal(sp.span_id, s, 8);
        assert_memory_equal(sp.parent_id, zero, 8); /* the trace's root */
        assert_int_equal(flags, 1);
    }
}

static const otel_attr_t *find(const otel_span_t *s, const char *key)
{
    for (size_t i = 0; i < s->nattrs; ++i)
        if (strcmp(s->attrs[i].key, key) == 0)
            return &s->attrs[i];
    return NULL;
}

static void test_build(void **state)
{
    span_publish_t sp = {.start_ns = 1000};
    span_info_t info = {.topic = "profile.events",
                        .user_id = "u42",
                        .event_id = "0b7e4b7a-7d3c-4c1f-9a55-2f2b1f0c9e01",
                        .event_type = "VideoRated",
                        .seq = 17};
    char name[64];
    otel_span_t s;

    memcpy(sp.trace_id, trace_a, 16);
    memcpy(sp.parent_id, span_a, 8);
    memset(sp.span_id, 0x11, 8);
    span_build(&sp, &info, 5000, NULL, name, sizeof(name), &s);
    assert_string_equal(s.name, "publish VideoRated");
    assert_int_equal(s.kind, OTEL_KIND_PRODUCER);
    assert_memory_equal(s.trace_id, trace_a, 16);
    assert_memory_equal(s.parent_span_id, span_a, 8);
    assert_memory_equal(s.link_trace_id, trace_a, 16);
    assert_memory_equal(s.link_span_id, span_a, 8);
    assert_int_equal(s.start_ns, 1000);
    assert_int_equal(s.end_ns, 5000);
    assert_false(s.error);
    assert_true(s.nattrs <= OTEL_MAX_ATTRS);
    assert_string_equal(find(&s, "messaging.system")->str, "kafka");
    assert_string_equal(find(&s, "messaging.destination.name")->str, "profile.events");
    assert_string_equal(find(&s, "messaging.kafka.message.key")->str, "u42");
    assert_string_equal(find(&s, "cloudevents.event_id")->str, info.event_id);
    assert_null(find(&s, "ce_sequence")->str);
    assert_int_equal(find(&s, "ce_sequence")->num, 17);
    assert_null(find(&s, "error.type"));

    /* a failure, a root span (no parent, no link), a clock that went backwards */
    memset(sp.parent_id, 0, 8);
    span_build(&sp, &info, 500, "Broker: Message size too large", name, sizeof(name), &s);
    assert_true(s.error);
    assert_string_equal(find(&s, "error.type")->str, "Broker: Message size too large");
    assert_memory_equal(s.parent_span_id, zero, 8);
    assert_memory_equal(s.link_trace_id, zero, 16);
    assert_int_equal(s.end_ns, 1000);
    assert_true(s.nattrs <= OTEL_MAX_ATTRS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_begin_stored_sampled),
        cmocka_unit_test(test_begin_not_sampled_flag),
        cmocka_unit_test(test_begin_new_trace),
        cmocka_unit_test(test_build),
    };
    return cmocka_run_group_tests(tests, start_exporter, stop_exporter);
}
