/* Unit tests for api/http/trace.c: W3C traceparent parsing rules, generation, formatting. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>
#include "api/codec/hex.h"
#include "api/http/trace.h"

#define TID "4bf92f3577b34da6a3ce929d0e0e4736"
#define SID "00f067aa0ba902b7"

static void test_parse_table(void **state)
{
    static const struct {
        const char *s;
        bool ok;
    } cases[] = {
        {"00-" TID "-" SID "-01", true},
        {"00-" TID "-" SID "-00", true},
        {"00-" TID "-" SID "-ff", true},
        {"  00-" TID "-" SID "-01\t", true},
        {"00-" TID "-" SID "-01-", false}, /* version 00 is exactly 55 */
        {"00-" TID "-" SID "-1", false},
        {"00-4BF92F3577B34DA6A3CE929D0E0E4736-" SID "-01", false}, /* uppercase */
        {"00-" TID "-00F067AA0BA902B7-01", false},
        {"00-00000000000000000000000000000000-" SID "-01", false},
        {"00-" TID "-0000000000000000-01", false},
        {"ff-" TID "-" SID "-01", false},
        {"FF-" TID "-" SID "-01", false},
        {"0g-" TID "-" SID "-01", false},
        {"01-" TID "-" SID "-01", true}, /* future version, same layout */
        {"cc-" TID "-" SID "-01-what-the-future", true},
        {"cc-" TID "-" SID "-01what", false},
        {"00_" TID "-" SID "-01", false},
        {"00-" TID "_" SID "-01", false},
        {"00-" TID "-" SID "_01", false},
        {"00-" TID "-" SID "-0x", false},
        {"00-4bf92f3577b34da6a3ce929d0e0e473-" SID "-01", false},
        {"", false},
        {"00", false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); ++i) {
        trace_context_t t;
        if (trace_parse_traceparent(cases[i].s, strlen(cases[i].s), &t) != cases[i].ok)
            fail_msg("traceparent \"%s\"", cases[i].s);
    }
    assert_false(trace_parse_traceparent(NULL, 0, NULL));
}

static void test_values_and_format(void **state)
{
    trace_context_t t;
    char out[TRACE_TRACEPARENT_LEN + 1], hex[33];
    const char *s = "00-" TID "-" SID "-01";
    assert_true(trace_parse_traceparent(s, strlen(s), &t));
    assert_int_equal(t.flags, 1);
    hex_encode(t.trace_id, TRACE_ID_LEN, hex);
    assert_string_equal(hex, TID);
    trace_format_traceparent(&t, out);
    assert_string_equal(out, s);

    s = "01-" TID "-" SID "-03-extra";
    assert_true(trace_parse_traceparent(s, strlen(s), &t));
    trace_format_traceparent(&t, out);
    assert_string_equal(out, "00-" TID "-" SID "-03");
}

static void test_generate(void **state)
{
    trace_context_t a, b, p;
    char s[TRACE_TRACEPARENT_LEN + 1];
    trace_generate(&a, TRACE_FLAG_SAMPLED);
    trace_generate(&b, 0);
    assert_memory_not_equal(a.trace_id, b.trace_id, TRACE_ID_LEN);
    assert_int_equal(a.flags, 1);
    assert_int_equal(b.flags, 0);
    trace_format_traceparent(&a, s);
    assert_int_equal(strlen(s), TRACE_TRACEPARENT_LEN);
    assert_true(trace_parse_traceparent(s, strlen(s), &p));
    assert_memory_equal(p.trace_id, a.trace_id, TRACE_ID_LEN);
    assert_memory_equal(p.span_id, a.span_id, TRACE_SPAN_ID_LEN);
    uint8_t span[TRACE_SPAN_ID_LEN];
    trace_new_span_id(span);
    assert_memory_not_equal(span, a.span_id, TRACE_SPAN_ID_LEN);
}

static void test_sampling_decide(void **state)
{
    bool rec = true;
    (void)state;
    /* exporter off: never record, pass the caller's sampled bit on (01 for a new trace) */
    assert_int_equal(trace_sampling_decide(0x01, false, false, &rec), 0x01);
    assert_false(rec);
    assert_int_equal(trace_sampling_decide(0x00, false, false, &rec), 0x00);
    assert_false(rec);
    assert_int_equal(trace_sampling_decide(0x03, false, false, &rec), 0x01);
    /* exporter on: record only when the caller sampled and the ratio accepts; flags say so */
    assert_int_equal(trace_sampling_decide(0x01, true, true, &rec), 0x01);
    assert_true(rec);
    assert_int_equal(trace_sampling_decide(0x01, true, false, &rec), 0x00);
    assert_false(rec);
    assert_int_equal(trace_sampling_decide(0x00, true, true, &rec), 0x00);
    assert_false(rec);
    assert_int_equal(trace_sampling_decide(0x02, true, true, &rec), 0x00);
    assert_false(rec);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_table),
        cmocka_unit_test(test_values_and_format),
        cmocka_unit_test(test_generate),
        cmocka_unit_test(test_sampling_decide),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
