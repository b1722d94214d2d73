/*
 * Unit tests for relay/producer.c's configuration mapping (producer_build_conf): the Kafka
 * security variables land on librdkafka's keys, the defaults stay plaintext without SASL, and
 * the reliability settings are always there. Reads the built conf back with rd_kafka_conf_get.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>
#include <librdkafka/rdkafka.h>
#include "relay/producer.h"

static producer_conf_t base(void)
{
    producer_conf_t c = {
        .bootstrap_servers = "b1.example:9093,b2.example:9093",
        .topic = "profile.events",
        .ce_source = "/profile-service",
        .linger_ms = 1,
        .message_timeout_ms = 300000,
    };
    return c;
}

/* The value of `key` in `conf`, or "" when unset. */
static const char *get(rd_kafka_conf_t *conf, const char *key)
{
    static char buf[512];
    size_t len = sizeof(buf);
    if (rd_kafka_conf_get(conf, key, buf, &len) != RD_KAFKA_CONF_OK)
        return "";
    return buf;
}

static void test_defaults_plaintext_no_sasl(void **state)
{
    producer_conf_t pc = base();
    char err[256] = "";
    rd_kafka_conf_t *c = producer_build_conf(&pc, err, sizeof(err));
    assert_non_null(c);
    assert_string_equal(get(c, "security.protocol"), "plaintext");
    assert_string_equal(get(c, "sasl.username"), "");
    assert_string_equal(get(c, "ssl.ca.location"), "");
    assert_string_equal(get(c, "bootstrap.servers"), "b1.example:9093,b2.example:9093");
    assert_string_equal(get(c, "enable.idempotence"), "true");
    assert_string_equal(get(c, "acks"), "-1"); /* all */
    rd_kafka_conf_destroy(c);
}

static void test_sasl_ssl_scram(void **state)
{
    producer_conf_t pc = base();
    char err[256] = "";
    pc.security_protocol = "sasl_ssl";
    pc.sasl_mechanism = "SCRAM-SHA-512";
    pc.sasl_username = "relay";
    pc.sasl_password = "s3cret-password";
    pc.ssl_ca_file = "/etc/ssl/certs/ca-certificates.crt";
    rd_kafka_conf_t *c = producer_build_conf(&pc, err, sizeof(err));
    assert_non_null(c);
    assert_string_equal(get(c, "security.protocol"), "sasl_ssl");
    assert_string_equal(get(c, "sasl.mechanisms"), "SCRAM-SHA-512");
    assert_string_equal(get(c, "sasl.username"), "relay");
    assert_string_equal(get(c, "sasl.password"), "s3cret-password");
    assert_string_equal(get(c, "ssl.ca.location"), "/etc/ssl/certs/ca-certificates.crt");
    rd_kafka_conf_destroy(c);
}

static void test_sasl_plaintext_plain(void **state)
{
    producer_conf_t pc = base();
    char err[256] = "";
    pc.security_protocol = "sasl_plaintext";
    pc.sasl_mechanism = "PLAIN";
    pc.sasl_username = "u";
    pc.sasl_password = "p";
    rd_kafka_conf_t *c = producer_build_conf(&pc, err, sizeof(err));
    assert_non_null(c);
    assert_string_equal(get(c, "security.protocol"), "sasl_plaintext");
    assert_string_equal(get(c, "sasl.mechanisms"), "PLAIN");
    assert_string_equal(get(c, "ssl.ca.location"), "");
    rd_kafka_conf_destroy(c);
}

static void test_ssl_without_sasl_ignores_nothing(void **state)
{
    producer_conf_t pc = base();
    char err[256] = "";
    pc.security_protocol = "ssl";
    pc.ssl_ca_file = "/tmp/ca.pem";
    rd_kafka_conf_t *c = producer_build_conf(&pc, err, sizeof(err));
    assert_non_null(c);
    assert_string_equal(get(c, "security.protocol"), "ssl");
    assert_string_equal(get(c, "ssl.ca.location"), "/tmp/ca.pem");
    assert_string_equal(get(c, "sasl.username"), "");
    rd_kafka_conf_destroy(c);
}

static void test_refused_value_names_the_key_not_the_secret(void **state)
{
    producer_conf_t pc = base();
    char err[256] = "";
    pc.security_protocol = "sasl_tls"; /* config.c refuses it first; librdkafka too */
    pc.sasl_mechanism = "PLAIN";
    pc.sasl_username = "u";
    pc.sasl_password = "hunter2-secret";
    assert_null(producer_build_conf(&pc, err, sizeof(err)));
    assert_non_null(strstr(err, "security.protocol"));
    assert_null(strstr(err, "hunter2-secret"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_plaintext_no_sasl),
        cmocka_unit_test(test_sasl_ssl_scram),
        cmocka_unit_test(test_sasl_plaintext_plain),
        cmocka_unit_test(test_ssl_without_sasl_ignores_nothing),
        cmocka_unit_test(test_refused_value_names_the_key_not_the_secret),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
