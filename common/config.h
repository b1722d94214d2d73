/*
 * Process configuration from the environment (docs/operations.md): one table in config.c
 * describes every variable, which programs read it, its default, bounds and secrecy.
 */
#ifndef PROFILE_COMMON_CONFIG_H
#define PROFILE_COMMON_CONFIG_H

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
    int cache_ttl_seconds;
    int cache_local_mb; /* api: local copies of cached pages (api/localcache.h); 0 = none */
    int rate_limit_per_minute;
    char *jwt_hs256_secret;
    char *jwt_public_key_file;
    char *jwt_issuer;
    char *jwt_audience;
    char *cors_allowed_origins;
    int idempotency_ttl_seconds;
    char *kafka_bootstrap_servers;
    char *kafka_topic;
    int relay_batch_size;
    int relay_poll_interval_ms;
    log_level_t log_level;
    double access_log_sample;
    int auth_failure_limit_per_minute;
    char *ce_source;
    int relay_metrics_port;
    int outbox_retention_seconds;
    double otel_traces_sampler_arg;
    char *otel_exporter_otlp_endpoint;
    int shutdown_drain_seconds;
    char *migrations_dir;
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
 * Copies `url` into `out` with any password replaced by "***" (both URI `user:pw@` and
 * key/value `password=...` forms). Always NUL-terminates when outlen > 0.
 */
void config_mask_dsn(const char *url, char *out, size_t outlen);

#endif
