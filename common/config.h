/*
 * Process configuration from the environment (docs/operations.md): one table in config.c
 * describes every variable, which programs read it, its default, bounds and secrecy.
 */
#ifndef PROFILE_COMMON_CONFIG_H
#define PROFILE_COMMON_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include "common/alloc.h"
#include "common/log.h"

/* Which program is loading: selects the variables read and which are required. */
#define CFG_PROG_API 0x1u
#define CFG_PROG_RELAY 0x2u
#define CFG_PROG_MIGRATE 0x4u

typedef struct st_app_config_t {
    int http_port;
    int http_threads;
    int max_connections_per_thread;
    char *database_url;
    int pg_pool_max;
    int outbox_hint; /* api: 1 = NOTIFY the relays after each commit (api/data/hint.h) */
    char *redis_url;
    char *redis_mode;   /* REDIS_MODE: "standalone" or "cluster" */
    bool redis_cluster; /* REDIS_MODE=cluster: REDIS_URL is a comma list of seed nodes */
    int cache_ttl_seconds;
    int cache_local_mb; /* api: local copies of cached pages (api/localcache.h); 0 = none */
    int rate_limit_per_minute;
    char *jwt_hs256_secret;
    char *jwt_public_key_file;
    char *jwt_jwks_file;
    char *jwt_issuer;
    char *jwt_audience;
    char *cors_allowed_origins;
    int idempotency_ttl_seconds;
    char *kafka_bootstrap_servers;
    char *kafka_topic;
    int relay_batch_size;
    int relay_poll_interval_ms;
    int relay_takeover_seconds; /* a relay silent this long loses its partitions to the others */
    log_level_t log_level;
    char *log_level_file; /* read at start-up and on SIGHUP; wins over LOG_LEVEL */
    double access_log_sample;
    int auth_failure_limit_per_minute;
    char *ce_source;
    int relay_metrics_port;
    int outbox_retention_seconds;
    int history_retention_days;  /* relay: 0 = keep history forever */
    int history_retention_batch; /* relay: rows per retention statement */
    double otel_traces_sampler_arg;
    char *otel_exporter_otlp_endpoint;
    int shutdown_drain_seconds;
    char *migrations_dir;
    int pg_prepared_statements;    /* api: 1 named prepared statements, 0 unnamed (pooler) */
    char *kafka_security_protocol; /* relay: normalised to lower case */
    char *kafka_sasl_mechanism;    /* relay: normalised to upper case; NULL when unset */
    char *kafka_sasl_username;
    char *kafka_sasl_password;
    char *kafka_ssl_ca_file;
    int test_cache_fill_delay_ms; /* test builds only (PROFILE_TEST_HOOKS); else always 0 */
} app_config_t;

/**
 * Fills `cfg` from the environment for `program` (one CFG_PROG_* value). Every bad or missing
 * variable adds one line "NAME: reason" (newline-terminated) to `errbuf`; values are never
 * echoed for secret variables. Returns 0 when all is well, -1 when at least one line was
 * written (the caller prints errbuf and exits 2). Strings in `cfg` are owned by it: release
 * with config_dispose() in both cases. Not thread-safe (reads the environment).
 */
PROFILE_MUSTCHECK int config_load_env(app_config_t *cfg, unsigned program, char *errbuf,
                                      size_t errlen);

/** Frees the strings held by `cfg`. NULL-safe. */
void config_dispose(app_config_t *cfg);

/**
 * Logs the effective configuration for `program` as one info line, secrets masked ("***")
 * and passwords stripped from connection strings.
 */
void config_log_effective(const app_config_t *cfg, unsigned program);

/**
 * SIGHUP: re-reads LOG_LEVEL_FILE (when set) and applies its level to the running process,
 * writing one line that names the old and new level; a missing or bad file keeps the level and
 * logs one error. Without LOG_LEVEL_FILE it only logs that the level stays (the environment of
 * a running process cannot change). Call from one thread at a time.
 */
void config_reload_log_level(const app_config_t *cfg);

/**
 * Copies `url` into `out` with any password replaced by "***" (both URI `user:pw@` and
 * key/value `password=...` forms). Always NUL-terminates when outlen > 0.
 */
void config_mask_dsn(const char *url, char *out, size_t outlen);

#endif
