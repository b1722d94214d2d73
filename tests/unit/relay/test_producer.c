/*
 * Unit tests for relay/producer.c. The test includes producer.c (STYLE.md rule 22) to read the
 * configuration of the rd_kafka_t it built and to drive its callbacks; librdkafka itself is
 * real, with a bootstrap address where nothing listens: no test here needs a broker.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include "relay/producer.c"

static struct {
    int calls;
    void *opaque;
    bool ok, permanent;
    char errstr[256];
} dr;

static void on_report(void *app, void *msg_opaque, bool ok, bool permanent, const char *errstr)
{
    assert_ptr_equal(app, &dr);
    dr.calls++;
    dr.opaque = msg_opaque;
    dr.ok = ok;
    dr.permanent = permanent;
    snprintf(dr.errstr, sizeof(dr.errstr), "%s", errstr);
}

static producer_t *make(void)
{
    char err[512] = "";
    producer_conf_t pc = {.bootstrap_servers = "127.0.0.1:1",
                          .topic = "profile.events.test",
                          .ce_source = "/profile-service",
                          .linger_ms = 7,
                          .message_timeout_ms = 300000};
    memset(&dr, 0, sizeof(dr));
    producer_t *p = producer_create(&pc, on_report, &dr, err, sizeof(err));
    assert_non_null(p);
    return p;
}

/* The effective value of `name` in the producer's rd_kafka_t. */
static const char *setting(producer_t *p, const char *name)
{
    static char val[256];
    size_t len = sizeof(val);
    assert_int_equal(rd_kafka_conf_get(rd_kafka_conf(p->rk), name, val, &len), RD_KAFKA_CONF_OK);
    return val;
}

static relay_event_t row(const char *payload, size_t len)
{
    return (relay_event_t){.user_id = "u1",
                           .seq = 3,
                           .event_id = "0b7e4b7a-7d3c-4c1f-9a55-2f2b1f0c9e01",
                           .event_type = "WatchlistUpdated",
                           .partition_no = 5,
                           .payload = payload,
                           .payload_len = len,
                           .ce_time = "2026-01-01T00:00:00.000Z"};
}

/* The delivery guarantees the relay's ordering and no-loss promises rest on. */
static void test_settings_idempotent_gapless_acks_all(void **state)
{
    producer_t *p = make();
    assert_string_equal(setting(p, "enable.idempotence"), "true");
    assert_string_equal(setting(p, "enable.gapless.guarantee"), "true");
    assert_string_equal(setting(p, "acks"), "-1"); /* "all" */
    assert_string_equal(setting(p, "max.in.flight.requests.per.connection"), "1");
    /* the Java client's key hash: one user's events land in one Kafka partition, in order */
    assert_string_equal(setting(p, "partitioner"), "murmur2_random");
    assert_string_equal(setting(p, "linger.ms"), "7");
    assert_string_equal(setting(p, "message.timeout.ms"), "300000");
    assert_string_equal(setting(p, "client.id"), "profile-relay");
    assert_string_equal(setting(p, "bootstrap.servers"), "127.0.0.1:1");
    assert_string_equal(rd_kafka_topic_name(p->rkt), "profile.events.test");
    producer_destroy(p, 0);
}

static void test_bad_setting_fills_errbuf(void **state)
{
    char err[512] = "";
    producer_conf_t pc = {.bootstrap_servers = "127.0.0.1:1",
                          .topic = "t",
                          .ce_source = "/s",
                          .linger_ms = -5, /* out of range */
                          .message_timeout_ms = 1000};
    assert_null(producer_create(&pc, on_report, &dr, err, sizeof(err)));
    /* librdkafka names linger.ms by its alias */
    assert_non_null(strstr(err, "queue.buffering.max.ms"));
    assert_non_null(strstr(err, "outside allowed range"));
}

static void test_send_and_purge_reports_retriable(void **state)
{
    char err[256] = "";
    int opaque;
    producer_t *p = make();
    relay_event_t ev = row("{}", 2);
    assert_int_equal(producer_send(p, &ev, &opaque, err, sizeof(err)), PRODUCER_OK);
    assert_true(producer_outq_len(p) >= 1); /* the message (and any pending error events) */
    assert_int_equal(dr.calls, 0);          /* reports only come from producer_poll() */
    producer_purge(p, true);
    for (int i = 0; i < 50 && dr.calls == 0; ++i)
        producer_poll(p, 100);
    assert_int_equal(dr.calls, 1);
    assert_ptr_equal(dr.opaque, &opaque);
    assert_false(dr.ok);
    assert_false(dr.permanent); /* purged: the row stays pending and is sent again */
    producer_destroy(p, 0);
}

static void test_too_large_is_permanent_without_report(void **state)
{
    char err[256] = "";
    size_t len = 2000000; /* above message.max.bytes */
    char *big = malloc(len);
    memset(big, 'x', len);
    producer_t *p = make();
    relay_event_t ev = row(big, len);
    assert_int_equal(producer_send(p, &ev, NULL, err, sizeof(err)), PRODUCER_PERMANENT);
    assert_true(err[0] != '\0');
    producer_poll(p, 0);
    assert_int_equal(dr.calls, 0); /* refused at send: no report follows */
    producer_destroy(p, 0);
    free(big);
}

static void test_report_classification(void **state)
{
    producer_t *p = make();
    int opaque;
    rd_kafka_message_t m = {._private = &opaque};

    m.err = RD_KAFKA_RESP_ERR_NO_ERROR;
    dr_msg_cb(p->rk, &m, p);
    assert_true(dr.ok);
    assert_ptr_equal(dr.opaque, &opaque);
    m.err = RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE;
    dr_msg_cb(p->rk, &m, p);
    assert_false(dr.ok);
    assert_true(dr.permanent);
    m.err = RD_KAFKA_RESP_ERR__MSG_TIMED_OUT;
    dr_msg_cb(p->rk, &m, p);
    assert_false(dr.ok);
    assert_false(dr.permanent);
    m.err = RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS;
    dr_msg_cb(p->rk, &m, p);
    assert_false(dr.permanent);
    assert_int_equal(dr.calls, 4);
    producer_destroy(p, 0);
}

static void test_fatal_error_stops_sending(void **state)
{
    char err[256] = "";
    producer_t *p = make();
    relay_event_t ev = row("{}", 2);
    assert_false(producer_is_fatal(p));
    error_cb(p->rk, RD_KAFKA_RESP_ERR__TRANSPORT, "broker down", p); /* librdkafka retries */
    assert_false(producer_is_fatal(p));
    error_cb(p->rk, RD_KAFKA_RESP_ERR__FATAL, "fenced", p);
    assert_true(producer_is_fatal(p));
    assert_int_equal(producer_send(p, &ev, NULL, err, sizeof(err)), PRODUCER_ERROR);
    assert_string_equal(err, "producer in fatal state");
    producer_destroy(p, 0);
}

int main(void)
{
    log_set_stream(fopen("/dev/null", "w"));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_settings_idempotent_gapless_acks_all),
        cmocka_unit_test(test_bad_setting_fills_errbuf),
        cmocka_unit_test(test_send_and_purge_reports_retriable),
        cmocka_unit_test(test_too_large_is_permanent_without_report),
        cmocka_unit_test(test_report_classification),
        cmocka_unit_test(test_fatal_error_stops_sending),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
