/*
 * Unit tests for common/config.c: defaults, bounds, one error line per bad variable naming it,
 * required variables per program, the JWT either/or rule, secrets kept out of errbuf and logs,
 * and config_mask_dsn.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "common/config.h"
#include "common/log.h"

#define SECRET "0123456789abcdef0123456789abcdef-very-secret"

static const char *const all_vars[] = {
    "HTTP_PORT",
    "HTTP_THREADS",
    "DATABASE_URL",
    "PG_POOL_MAX",
    "REDIS_URL",
    "REDIS_MODE",
    "CACHE_TTL_SECONDS",
    "RATE_LIMIT_PER_MINUTE",
    "JWT_HS256_SECRET",
    "JWT_PUBLIC_KEY_FILE",
    "JWT_JWKS_FILE",
    "JWT_ISSUER",
    "JWT_AUDIENCE",
    "CORS_ALLOWED_ORIGINS",
    "IDEMPOTENCY_TTL_SECONDS",
    "KAFKA_BOOTSTRAP_SERVERS",
    "KAFKA_TOPIC",
    "RELAY_BATCH_SIZE",
    "RELAY_POLL_INTERVAL_MS",
    "RELAY_TAKEOVER_SECONDS",
    "LOG_LEVEL",
    "LOG_LEVEL_FILE",
    "ACCESS_LOG_SAMPLE",
    "AUTH_FAILURE_LIMIT_PER_MINUTE",
    "CE_SOURCE",
    "RELAY_METRICS_PORT",
    "OUTBOX_RETENTION_SECONDS",
    "OTEL_TRACES_SAMPLER_ARG",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "SHUTDOWN_DRAIN_SECONDS",
    "MIGRATIONS_DIR",
    "PG_PREPARED_STATEMENTS",
    "KAFKA_SECURITY_PROTOCOL",
    "KAFKA_SASL_MECHANISM",
    "KAFKA_SASL_USERNAME",
    "KAFKA_SASL_PASSWORD",
    "KAFKA_SSL_CA_FILE",
};

static app_config_t cfg;
static char errbuf[8192];

static int clear_env(void **state)
{
    size_t i;
    for (i = 0; i < sizeof(all_vars) / sizeof(all_vars[0]); ++i)
        unsetenv(all_vars[i]);
    memset(&cfg, 0, sizeof(cfg));
    errbuf[0] = '\0';
    return 0;
}

static int dispose(void **state)
{
    config_dispose(&cfg);
    return 0;
}

/* The minimum each program needs. */
static void set_api_required(void)
{
    setenv("DATABASE_URL", "postgresql://profile:pw@127.0.0.1:5432/profile", 1);
    setenv("JWT_HS256_SECRET", SECRET, 1);
    setenv("JWT_ISSUER", "https://issuer.example", 1);
    setenv("JWT_AUDIENCE", "profile-api", 1);
}

static void set_relay_required(void)
{
    setenv("DATABASE_URL", "postgresql://profile@127.0.0.1:5432/profile", 1);
    setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092", 1);
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s != '\0'; ++s)
        n += *s == '\n';
    return n;
}

/* True when `name` starts a line of errbuf ("NAME: reason"). */
static int has_error_for(const char *name)
{
    size_t n = strlen(name);
    const char *p = errbuf;
    while (p != NULL && *p != '\0') {
        if (strncmp(p, name, n) == 0 && p[n] == ':')
            return 1;
        p = strchr(p, '\n');
        if (p != NULL)
            ++p;
    }
    return 0;
}

static void load_expect_ok(unsigned program)
{
    int r = config_load_env(&cfg, program, errbuf, sizeof(errbuf));
    if (r != 0)
        fail_msg("unexpected config errors:\n%s", errbuf);
    assert_string_equal(errbuf, "");
}

/* Loads with exactly one bad variable and checks the one line that names it. */
static void expect_one_error(unsigned program, const char *name)
{
    assert_int_equal(config_load_env(&cfg, program, errbuf, sizeof(errbuf)), -1);
    if (count_lines(errbuf) != 1 || !has_error_for(name))
        fail_msg("expected one line for %s, got:\n%s", name, errbuf);
}

static void test_api_defaults(void **state)
{
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    set_api_required();
    load_expect_ok(CFG_PROG_API);
    assert_int_equal(cfg.http_port, 8080);
    assert_int_equal(cfg.http_threads, cores > 0 ? (int)cores : 1);
    assert_int_equal(cfg.pg_pool_max, 30);
    assert_string_equal(cfg.redis_url, "redis://127.0.0.1:6379/0");
    assert_int_equal(cfg.cache_ttl_seconds, 300);
    assert_int_equal(cfg.rate_limit_per_minute, 200);
    assert_string_equal(cfg.cors_allowed_origins, "");
    assert_int_equal(cfg.idempotency_ttl_seconds, 86400);
    assert_int_equal(cfg.log_level, LOG_LEVEL_INFO);
    assert_true(cfg.access_log_sample == 1.0);
    assert_int_equal(cfg.auth_failure_limit_per_minute, 600);
    assert_true(cfg.otel_traces_sampler_arg == 1.0);
    assert_string_equal(cfg.otel_exporter_otlp_endpoint, "");
    assert_int_equal(cfg.shutdown_drain_seconds, 5);
    assert_string_equal(cfg.jwt_hs256_secret, SECRET);
    assert_null(cfg.jwt_public_key_file);
    assert_string_equal(cfg.jwt_issuer, "https://issuer.example");
    assert_string_equal(cfg.jwt_audience, "profile-api");
    /* relay-only variables are not read by the API */
    assert_null(cfg.kafka_bootstrap_servers);
    assert_null(cfg.kafka_topic);
}

static void test_relay_defaults(void **state)
{
    set_relay_required();
    setenv("JWT_ISSUER", "ignored by the relay", 1);
    load_expect_ok(CFG_PROG_RELAY);
    assert_string_equal(cfg.kafka_bootstrap_servers, "127.0.0.1:9092");
    assert_string_equal(cfg.kafka_topic, "profile.events");
    assert_int_equal(cfg.relay_batch_size, 500);
    assert_int_equal(cfg.relay_poll_interval_ms, 1000);
    assert_int_equal(cfg.relay_takeover_seconds, 10);
    assert_string_equal(cfg.ce_source, "/profile-service");
    assert_int_equal(cfg.relay_metrics_port, 9101);
    assert_int_equal(cfg.outbox_retention_seconds, 3600);
    assert_string_equal(cfg.redis_url, "redis://127.0.0.1:6379/0");
    assert_int_equal(cfg.cache_ttl_seconds, 300);
    assert_null(cfg.jwt_issuer);
    assert_null(cfg.jwt_hs256_secret);
}

static void test_migrate_needs_only_database_url(void **state)
{
    setenv("DATABASE_URL", "postgresql://x@127.0.0.1/db", 1);
    setenv("HTTP_PORT", "not a number", 1); /* not read by profile-migrate */
    load_expect_ok(CFG_PROG_MIGRATE);
    assert_string_equal(cfg.database_url, "postgresql://x@127.0.0.1/db");
    assert_string_equal(cfg.migrations_dir, "");
    assert_null(cfg.redis_url);
    config_dispose(&cfg);

    setenv("MIGRATIONS_DIR", "/srv/migrations", 1);
    load_expect_ok(CFG_PROG_MIGRATE);
    assert_string_equal(cfg.migrations_dir, "/srv/migrations");
}

static void test_required_per_program(void **state)
{
    assert_int_equal(config_load_env(&cfg, CFG_PROG_MIGRATE, errbuf, sizeof(errbuf)), -1);
    assert_string_equal(errbuf, "DATABASE_URL: required but not set\n");
    config_dispose(&cfg);

    assert_int_equal(config_load_env(&cfg, CFG_PROG_RELAY, errbuf, sizeof(errbuf)), -1);
    assert_int_equal(count_lines(errbuf), 2);
    assert_true(has_error_for("DATABASE_URL"));
    assert_true(has_error_for("KAFKA_BOOTSTRAP_SERVERS"));
    assert_false(has_error_for("JWT_ISSUER"));
    config_dispose(&cfg);

    assert_int_equal(config_load_env(&cfg, CFG_PROG_API, errbuf, sizeof(errbuf)), -1);
    assert_int_equal(count_lines(errbuf), 4);
    assert_true(has_error_for("DATABASE_URL"));
    assert_true(has_error_for("JWT_ISSUER"));
    assert_true(has_error_for("JWT_AUDIENCE"));
    assert_true(has_error_for("JWT_HS256_SECRET")); /* one of the two JWT settings */
    assert_false(has_error_for("KAFKA_BOOTSTRAP_SERVERS"));
}

static void test_empty_value_means_unset(void **state)
{
    set_api_required();
    setenv("HTTP_PORT", "", 1);
    setenv("DATABASE_URL", "", 1);
    expect_one_error(CFG_PROG_API, "DATABASE_URL");
    config_dispose(&cfg);
    setenv("DATABASE_URL", "postgresql://x@h/db", 1);
    load_expect_ok(CFG_PROG_API);
    assert_int_equal(cfg.http_port, 8080);
}

static void test_empty_jwt_secret_without_key_file_is_an_error(void **state)
{
    set_api_required();
    setenv("JWT_HS256_SECRET", "", 1);
    expect_one_error(CFG_PROG_API, "JWT_HS256_SECRET");
}

static void test_int_bounds(void **state)
{
    static const struct {
        const char *name, *value;
        int ok;
    } cases[] = {
        {"HTTP_PORT", "0", 1},
        {"HTTP_PORT", "65535", 1},
        {"HTTP_PORT", "65536", 0},
        {"HTTP_PORT", "-1", 0},
        {"HTTP_PORT", "80x", 0},
        {"HTTP_PORT", "abc", 0},
        {"HTTP_PORT", "99999999999999999999", 0},
        {"HTTP_THREADS", "0", 0},
        {"HTTP_THREADS", "256", 1},
        {"PG_POOL_MAX", "0", 0},
        {"PG_POOL_MAX", "1", 1},
        {"CACHE_TTL_SECONDS", "0", 0},
        {"RATE_LIMIT_PER_MINUTE", "0", 1},
        {"RATE_LIMIT_PER_MINUTE", "-5", 0},
        {"IDEMPOTENCY_TTL_SECONDS", "0", 0},
        {"IDEMPOTENCY_TTL_SECONDS", "1", 1},
        {"AUTH_FAILURE_LIMIT_PER_MINUTE", "0", 1},
        {"SHUTDOWN_DRAIN_SECONDS", "601", 0},
        {"ACCESS_LOG_SAMPLE", "0", 1},
        {"ACCESS_LOG_SAMPLE", "0.25", 1},
        {"ACCESS_LOG_SAMPLE", "1.5", 0},
        {"ACCESS_LOG_SAMPLE", "nan", 0},
        {"ACCESS_LOG_SAMPLE", "inf", 0},
        {"OTEL_TRACES_SAMPLER_ARG", "-0.1", 0},
        {"LOG_LEVEL", "DEBUG", 1},
        {"LOG_LEVEL", "warn", 1},
        {"LOG_LEVEL", "verbose", 0},
        {"REDIS_URL", "unix:///run/redis.sock", 1},
        {"REDIS_URL", "rediss://h:6379", 0},
        {"REDIS_URL", "http://h", 0},
        {"REDIS_MODE", "cluster", 1},
        {"REDIS_MODE", "standalone", 1},
        {"REDIS_MODE", "sentinel", 0},
    };
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); ++i) {
        int r;
        clear_env(NULL);
        set_api_required();
        setenv(cases[i].name, cases[i].value, 1);
        r = config_load_env(&cfg, CFG_PROG_API, errbuf, sizeof(errbuf));
        if (cases[i].ok && r != 0)
            fail_msg("%s=%s should be accepted, got:\n%s", cases[i].name, cases[i].value, errbuf);
        if (!cases[i].ok && (r != -1 || count_lines(errbuf) != 1 || !has_error_for(cases[i].name)))
            fail_msg("%s=%s should give one line naming it, got:\n%s", cases[i].name,
                     cases[i].value, errbuf);
        config_dispose(&cfg);
    }
}

static void test_relay_bounds(void **state)
{
    set_relay_required();
    setenv("RELAY_POLL_INTERVAL_MS", "9", 1);
    expect_one_error(CFG_PROG_RELAY, "RELAY_POLL_INTERVAL_MS");
    config_dispose(&cfg);
    setenv("RELAY_POLL_INTERVAL_MS", "10", 1);
    setenv("RELAY_TAKEOVER_SECONDS", "2", 1); /* below a couple of lease ticks: refused */
    expect_one_error(CFG_PROG_RELAY, "RELAY_TAKEOVER_SECONDS");
    config_dispose(&cfg);
    setenv("RELAY_TAKEOVER_SECONDS", "3", 1);
    setenv("RELAY_BATCH_SIZE", "0", 1);
    expect_one_error(CFG_PROG_RELAY, "RELAY_BATCH_SIZE");
    config_dispose(&cfg);
    setenv("RELAY_BATCH_SIZE", "100000", 1);
    setenv("KAFKA_TOPIC", "", 1); /* empty = default */
    load_expect_ok(CFG_PROG_RELAY);
    assert_int_equal(cfg.relay_batch_size, 100000);
    assert_int_equal(cfg.relay_takeover_seconds, 3);
    assert_string_equal(cfg.kafka_topic, "profile.events");
}

static void test_every_bad_variable_gets_its_own_line(void **state)
{
    set_api_required();
    setenv("HTTP_PORT", "70000", 1);
    setenv("PG_POOL_MAX", "lots", 1);
    setenv("LOG_LEVEL", "loud", 1);
    setenv("ACCESS_LOG_SAMPLE", "2", 1);
    setenv("REDIS_URL", "memcached://x", 1);
    unsetenv("JWT_AUDIENCE");
    assert_int_equal(config_load_env(&cfg, CFG_PROG_API, errbuf, sizeof(errbuf)), -1);
    assert_int_equal(count_lines(errbuf), 6);
    assert_true(has_error_for("HTTP_PORT"));
    assert_true(has_error_for("PG_POOL_MAX"));
    assert_true(has_error_for("LOG_LEVEL"));
    assert_true(has_error_for("ACCESS_LOG_SAMPLE"));
    assert_true(has_error_for("REDIS_URL"));
    assert_true(has_error_for("JWT_AUDIENCE"));
}

static void test_both_jwt_settings_is_an_error(void **state)
{
    char path[] = "/tmp/test_config_keyXXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "x\n", 2), 2);
    close(fd);
    set_api_required();
    setenv("JWT_PUBLIC_KEY_FILE", path, 1);
    expect_one_error(CFG_PROG_API, "JWT_HS256_SECRET");
    assert_non_null(strstr(errbuf, "JWT_PUBLIC_KEY_FILE"));
    assert_null(strstr(errbuf, SECRET));
    config_dispose(&cfg);

    /* the key file alone is fine */
    unsetenv("JWT_HS256_SECRET");
    load_expect_ok(CFG_PROG_API);
    assert_string_equal(cfg.jwt_public_key_file, path);
    assert_null(cfg.jwt_hs256_secret);
    unlink(path);
}

static void test_unreadable_key_file(void **state)
{
    set_api_required();
    unsetenv("JWT_HS256_SECRET");
    setenv("JWT_PUBLIC_KEY_FILE", "/nonexistent/key.pem", 1);
    expect_one_error(CFG_PROG_API, "JWT_PUBLIC_KEY_FILE");
}

static char *temp_file(const char *content)
{
    static char path[64];
    snprintf(path, sizeof(path), "/tmp/test_config_XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, content, strlen(content)), (ssize_t)strlen(content));
    close(fd);
    return path;
}

static void test_jwks_file_is_a_third_choice(void **state)
{
    char *path = strdup(temp_file("{\"keys\":[]}"));
    set_api_required();
    setenv("JWT_JWKS_FILE", path, 1);
    /* with the secret too: one line, naming the JWKS variable and the others */
    expect_one_error(CFG_PROG_API, "JWT_JWKS_FILE");
    assert_non_null(strstr(errbuf, "JWT_HS256_SECRET"));
    assert_non_null(strstr(errbuf, "JWT_PUBLIC_KEY_FILE"));
    assert_null(strstr(errbuf, SECRET));
    config_dispose(&cfg);

    /* alone it is fine (its content is checked by the API's verifier) */
    unsetenv("JWT_HS256_SECRET");
    load_expect_ok(CFG_PROG_API);
    assert_string_equal(cfg.jwt_jwks_file, path);
    config_dispose(&cfg);

    /* unreadable */
    setenv("JWT_JWKS_FILE", "/nonexistent/jwks.json", 1);
    expect_one_error(CFG_PROG_API, "JWT_JWKS_FILE");
    config_dispose(&cfg);

    /* the relay does not read it */
    set_relay_required();
    load_expect_ok(CFG_PROG_RELAY);
    assert_null(cfg.jwt_jwks_file);
    unlink(path);
    free(path);
}

static void test_log_level_file_wins_and_is_checked(void **state)
{
    char *path = strdup(temp_file("  debug\n"));
    set_relay_required();
    setenv("LOG_LEVEL", "error", 1);
    setenv("LOG_LEVEL_FILE", path, 1);
    load_expect_ok(CFG_PROG_RELAY);
    assert_int_equal(cfg.log_level, LOG_LEVEL_DEBUG);
    config_dispose(&cfg);
    unlink(path);
    free(path);

    path = strdup(temp_file("loud\n"));
    setenv("LOG_LEVEL_FILE", path, 1);
    expect_one_error(CFG_PROG_RELAY, "LOG_LEVEL_FILE");
    config_dispose(&cfg);
    unlink(path);
    free(path);

    setenv("LOG_LEVEL_FILE", "/nonexistent/level", 1);
    expect_one_error(CFG_PROG_RELAY, "LOG_LEVEL_FILE");
    config_dispose(&cfg);

    /* profile-migrate has no SIGHUP and ignores it */
    load_expect_ok(CFG_PROG_MIGRATE);
    assert_int_equal(cfg.log_level, LOG_LEVEL_ERROR);
}

static void test_secret_never_in_errbuf(void **state)
{
    char long_url[5000];
    set_api_required();
    setenv("JWT_HS256_SECRET", "tooshort-s3cr3t", 1); /* under 32 bytes */
    expect_one_error(CFG_PROG_API, "JWT_HS256_SECRET");
    assert_null(strstr(errbuf, "tooshort-s3cr3t"));
    config_dispose(&cfg);

    setenv("JWT_HS256_SECRET", SECRET, 1);
    memset(long_url, 'a', sizeof(long_url) - 1);
    memcpy(long_url, "postgresql://u:pw-s3cr3t@h/", 27);
    long_url[sizeof(long_url) - 1] = '\0';
    setenv("DATABASE_URL", long_url, 1); /* over 4096 bytes */
    expect_one_error(CFG_PROG_API, "DATABASE_URL");
    assert_null(strstr(errbuf, "pw-s3cr3t"));
}

static void test_errbuf_truncation_is_safe(void **state)
{
    char small[16];
    memset(small, 'x', sizeof(small));
    assert_int_equal(config_load_env(&cfg, CFG_PROG_API, small, sizeof(small)), -1);
    assert_int_equal(strlen(small), sizeof(small) - 1);
    config_dispose(&cfg);
    /* a NULL errbuf only reports through the return value */
    assert_int_equal(config_load_env(&cfg, CFG_PROG_API, NULL, 0), -1);
}

static void test_dispose_is_null_safe_and_idempotent(void **state)
{
    set_api_required();
    load_expect_ok(CFG_PROG_API);
    config_dispose(&cfg);
    assert_null(cfg.database_url);
    config_dispose(&cfg);
    config_dispose(NULL);
}

static void test_effective_config_masks_secrets(void **state)
{
    char *out = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&out, &len);

    set_api_required();
    setenv("REDIS_URL", "redis://:redis-pw@127.0.0.1:6379/0", 1);
    load_expect_ok(CFG_PROG_API);
    log_init("unit-test", LOG_LEVEL_INFO);
    log_set_stream(mem);
    config_log_effective(&cfg, CFG_PROG_API);
    log_set_stream(NULL);
    fclose(mem);
    assert_non_null(out);
    assert_int_equal(count_lines(out), 1);
    assert_null(strstr(out, SECRET));
    assert_null(strstr(out, ":pw@"));
    assert_null(strstr(out, "redis-pw"));
    assert_non_null(strstr(out, "\"JWT_HS256_SECRET\":\"***\""));
    assert_non_null(strstr(out, "postgresql://profile:***@127.0.0.1:5432/profile"));
    assert_non_null(strstr(out, "\"HTTP_PORT\":8080"));
    assert_null(strstr(out, "KAFKA_TOPIC")); /* only the program's variables */
    free(out);
}

static void test_pg_prepared_statements(void **state)
{
    set_api_required();
    load_expect_ok(CFG_PROG_API);
    assert_int_equal(cfg.pg_prepared_statements, 1);
    config_dispose(&cfg);
    setenv("PG_PREPARED_STATEMENTS", "off", 1);
    load_expect_ok(CFG_PROG_API);
    assert_int_equal(cfg.pg_prepared_statements, 0);
    config_dispose(&cfg);
    setenv("PG_PREPARED_STATEMENTS", "ON", 1);
    load_expect_ok(CFG_PROG_API);
    assert_int_equal(cfg.pg_prepared_statements, 1);
    config_dispose(&cfg);
    setenv("PG_PREPARED_STATEMENTS", "maybe", 1);
    expect_one_error(CFG_PROG_API, "PG_PREPARED_STATEMENTS");
}

static void test_kafka_security_defaults(void **state)
{
    set_relay_required();
    load_expect_ok(CFG_PROG_RELAY);
    assert_string_equal(cfg.kafka_security_protocol, "plaintext");
    assert_null(cfg.kafka_sasl_mechanism);
    assert_null(cfg.kafka_sasl_username);
    assert_null(cfg.kafka_sasl_password);
    assert_null(cfg.kafka_ssl_ca_file);
}

static void test_kafka_sasl_ssl_normalised(void **state)
{
    set_relay_required();
    setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL", 1);
    setenv("KAFKA_SASL_MECHANISM", "scram-sha-256", 1);
    setenv("KAFKA_SASL_USERNAME", "relay", 1);
    setenv("KAFKA_SASL_PASSWORD", "kafka-pw-secret", 1);
    setenv("KAFKA_SSL_CA_FILE", "/dev/null", 1);
    setenv("KAFKA_BOOTSTRAP_SERVERS", "SASL_SSL://b1.example:9093, sasl_ssl://b2.example:9093", 1);
    load_expect_ok(CFG_PROG_RELAY);
    assert_string_equal(cfg.kafka_security_protocol, "sasl_ssl");
    assert_string_equal(cfg.kafka_sasl_mechanism, "SCRAM-SHA-256");
    assert_string_equal(cfg.kafka_bootstrap_servers, "b1.example:9093,b2.example:9093");
}

static void test_kafka_bad_combinations(void **state)
{
    static const struct {
        const char *proto, *mech, *user, *pass, *ca, *servers, *bad;
    } cases[] = {
        {"tls", NULL, NULL, NULL, NULL, NULL, "KAFKA_SECURITY_PROTOCOL"},
        {"sasl_ssl", NULL, "u", "p", NULL, NULL, "KAFKA_SASL_MECHANISM"},
        {"sasl_plaintext", "PLAIN", NULL, "p", NULL, NULL, "KAFKA_SASL_USERNAME"},
        {"sasl_ssl", "PLAIN", "u", NULL, NULL, NULL, "KAFKA_SASL_PASSWORD"},
        {"sasl_ssl", "GSSAPI", "u", "p", NULL, NULL, "KAFKA_SASL_MECHANISM"},
        {NULL, "PLAIN", NULL, NULL, NULL, NULL, "KAFKA_SASL_MECHANISM"},
        {"ssl", NULL, "u", NULL, NULL, NULL, "KAFKA_SASL_USERNAME"},
        {"plaintext", NULL, NULL, "p", NULL, NULL, "KAFKA_SASL_PASSWORD"},
        {"ssl", NULL, NULL, NULL, "/nonexistent/ca.pem", NULL, "KAFKA_SSL_CA_FILE"},
        {"sasl_plaintext", "PLAIN", "u", "p", "/dev/null", NULL, "KAFKA_SSL_CA_FILE"},
        {NULL, NULL, NULL, NULL, NULL, "SASL_SSL://h:9093", "KAFKA_BOOTSTRAP_SERVERS"},
        {"ssl", NULL, NULL, NULL, NULL, "h1:9093,PLAINTEXT://h2:9092", "KAFKA_BOOTSTRAP_SERVERS"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); ++i) {
        const char *vals[] = {cases[i].proto, cases[i].mech, cases[i].user, cases[i].pass,
                              cases[i].ca};
        const char *names[] = {"KAFKA_SECURITY_PROTOCOL", "KAFKA_SASL_MECHANISM",
                               "KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD", "KAFKA_SSL_CA_FILE"};
        clear_env(state);
        set_relay_required();
        for (int k = 0; k < 5; ++k)
            if (vals[k] != NULL)
                setenv(names[k], vals[k], 1);
        if (cases[i].servers != NULL)
            setenv("KAFKA_BOOTSTRAP_SERVERS", cases[i].servers, 1);
        expect_one_error(CFG_PROG_RELAY, cases[i].bad);
        assert_null(strstr(errbuf, "\np\n")); /* never the password */
        config_dispose(&cfg);
    }
}

static void test_kafka_password_masked_in_effective_config(void **state)
{
    char *out = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&out, &len);

    set_relay_required();
    setenv("KAFKA_SECURITY_PROTOCOL", "sasl_plaintext", 1);
    setenv("KAFKA_SASL_MECHANISM", "PLAIN", 1);
    setenv("KAFKA_SASL_USERNAME", "relay", 1);
    setenv("KAFKA_SASL_PASSWORD", "kafka-pw-secret", 1);
    load_expect_ok(CFG_PROG_RELAY);
    log_init("unit-test", LOG_LEVEL_INFO);
    log_set_stream(mem);
    config_log_effective(&cfg, CFG_PROG_RELAY);
    log_set_stream(NULL);
    fclose(mem);
    assert_non_null(out);
    assert_null(strstr(out, "kafka-pw-secret"));
    assert_non_null(strstr(out, "\"KAFKA_SASL_PASSWORD\":\"***\""));
    assert_non_null(strstr(out, "\"KAFKA_SASL_USERNAME\":\"relay\""));
    free(out);
}

static void test_mask_dsn(void **state)
{
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"postgresql://u:pw@h:5432/db", "postgresql://u:***@h:5432/db"},
        {"postgresql://u@h:5432/db", "postgresql://u@h:5432/db"},
        {"postgresql://h/db", "postgresql://h/db"},
        {"postgres://u:p%40ss@h/db?sslmode=require", "postgres://u:***@h/db?sslmode=require"},
        {"redis://:secret@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"},
        {"unix:///run/redis.sock", "unix:///run/redis.sock"},
        {"redis://:a@h1:7000,redis://h2:7001,redis://u:b@h3:7002",
         "redis://:***@h1:7000,redis://h2:7001,redis://u:***@h3:7002"},
        {"host=h password=secret dbname=d", "host=h password=*** dbname=d"},
        {"host=h dbname=d password=secret", "host=h dbname=d password=***"},
        {"password='a b\\'c' host=h", "password=*** host=h"},
        {"host=h dbname=d", "host=h dbname=d"},
        {"", ""},
    };
    char out[256];
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); ++i) {
        config_mask_dsn(cases[i].in, out, sizeof(out));
        if (strcmp(out, cases[i].out) != 0)
            fail_msg("mask(%s) = %s, want %s", cases[i].in, out, cases[i].out);
    }
    config_mask_dsn(NULL, out, sizeof(out));
    assert_string_equal(out, "");

    /* truncation keeps a NUL and never exposes the password */
    config_mask_dsn("postgresql://user:topsecret@host/db", out, 20);
    assert_int_equal(strlen(out), 19);
    assert_null(strstr(out, "topsecret"));
    out[0] = 'z';
    config_mask_dsn("postgresql://u:p@h/db", out, 0);
    assert_int_equal(out[0], 'z');
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_api_defaults, clear_env, dispose),
        cmocka_unit_test_setup_teardown(test_relay_defaults, clear_env, dispose),
        cmocka_unit_test_setup_teardown(test_migrate_needs_only_database_url, clear_env, dispose),
        cmocka_unit_test_setup_teardown(test_required_per_program, clear_env, dispose),
        cmocka_unit_test_setup_teardown(test_empty_value_means_unset, clear_env, dispose),
        cmocka_unit_test_setup_teardown(test_empty_jwt_secret_without_key_file_is_an_error,
                                        clear_env, dispose),
        cmocka_unit_test_setup_teardown(test_int_bounds, clear_env, dispose),
        cmocka_unit_test_setup_teardown(test_relay_bounds, clear_env, dispose),
        cmocka_unit_test_setup_teardown(test_every_bad_variable_gets_its_own_line, clear_env,
                                        dispose),
        cmocka_unit_test_setup_teardown(test_both_jwt_settings_is_an_error, clear_env, dispose),
        cmocka_unit_test_setup_teardown(test_unreadable_key_file, clear_env, dispose),
        cmocka_unit_test_setup_teardown(test_jwks_file_is_a_third_choice, clear_env, dispose),
        cmocka_unit_test_setup_teardown(test_log_level_file_wins_and_is_checked, clear_env,
                                        dispose),
        cmocka_unit_test_setup_teardown(test_secret_never_in_errbuf, clear_env, dispose),
        cmocka_unit_test_setup_teardown(test_errbuf_truncation_is_safe, clear_env, dispose),
        cmocka_unit_test_setup_teardown(test_dispose_is_null_safe_and_idempotent, clear_env,
                                        dispose),
        cmocka_unit_test_setup_teardown(test_effective_config_masks_secrets, clear_env, dispose),
        cmocka_unit_test(test_mask_dsn),
        cmocka_unit_test_setup_teardown(test_pg_prepared_statements, clear_env, dispose),
        cmocka_unit_test_setup_teardown(test_kafka_security_defaults, clear_env, dispose),
        cmocka_unit_test_setup_teardown(test_kafka_sasl_ssl_normalised, clear_env, dispose),
        cmocka_unit_test_setup_teardown(test_kafka_bad_combinations, clear_env, dispose),
        cmocka_unit_test_setup_teardown(test_kafka_password_masked_in_effective_config, clear_env,
                                        dispose),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
