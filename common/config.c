/*
 * The single configuration table (STYLE.md rule 20) and its loader. getenv() is called only
 * here. Each entry says which programs read the variable and which require it.
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "common/buf.h"
#include "common/config.h"

#define LOG_MODULE "config"

typedef enum { CFG_INT, CFG_STR, CFG_DOUBLE, CFG_LEVEL } cfg_type_t;

#define CFG_SECRET 0x1u

#define ALL (CFG_PROG_API | CFG_PROG_RELAY | CFG_PROG_MIGRATE)
#define API CFG_PROG_API
#define RELAY CFG_PROG_RELAY
#define SERVICES (CFG_PROG_API | CFG_PROG_RELAY)

typedef struct st_cfg_entry_t {
    const char *name;
    cfg_type_t type;
    size_t offset;
    const char *def; /* NULL: no default */
    double min, max; /* bounds for numbers; for strings, min/max length in bytes */
    unsigned programs;
    unsigned required; /* programs for which it must be set */
    unsigned flags;
} cfg_entry_t;

#define F(m) offsetof(app_config_t, m)

static const cfg_entry_t config_table[] = {
    {"HTTP_PORT", CFG_INT, F(http_port), "8080", 0, 65535, API, 0, 0},
    {"HTTP_THREADS", CFG_INT, F(http_threads), NULL, 1, 256, API, 0, 0},
    {"MAX_CONNECTIONS_PER_THREAD", CFG_INT, F(max_connections_per_thread), "4096", 1, 1000000, API,
     0, 0},
    {"DATABASE_URL", CFG_STR, F(database_url), NULL, 1, 4096, ALL, ALL, CFG_SECRET},
    {"PG_POOL_MAX", CFG_INT, F(pg_pool_max), "30", 1, 1000, API, 0, 0},
    {"REDIS_URL", CFG_STR, F(redis_url), "redis://127.0.0.1:6379/0", 1, 4096, SERVICES, 0,
     CFG_SECRET},
    {"REDIS_MODE", CFG_STR, F(redis_mode), "standalone", 1, 32, SERVICES, 0, 0},
    {"CACHE_TTL_SECONDS", CFG_INT, F(cache_ttl_seconds), "300", 1, 86400, SERVICES, 0, 0},
    {"CACHE_LOCAL_MB", CFG_INT, F(cache_local_mb), "64", 0, 65536, API, 0, 0},
    {"RATE_LIMIT_PER_MINUTE", CFG_INT, F(rate_limit_per_minute), "200", 0, 1000000, API, 0, 0},
    {"JWT_HS256_SECRET", CFG_STR, F(jwt_hs256_secret), NULL, 32, 4096, API, 0, CFG_SECRET},
    {"JWT_PUBLIC_KEY_FILE", CFG_STR, F(jwt_public_key_file), NULL, 1, 4096, API, 0, 0},
    {"JWT_ISSUER", CFG_STR, F(jwt_issuer), NULL, 1, 1024, API, API, 0},
    {"JWT_AUDIENCE", CFG_STR, F(jwt_audience), NULL, 1, 1024, API, API, 0},
    {"CORS_ALLOWED_ORIGINS", CFG_STR, F(cors_allowed_origins), "", 0, 65536, API, 0, 0},
    {"IDEMPOTENCY_TTL_SECONDS", CFG_INT, F(idempotency_ttl_seconds), "86400", 1, 31536000, API, 0,
     0},
    {"KAFKA_BOOTSTRAP_SERVERS", CFG_STR, F(kafka_bootstrap_servers), NULL, 1, 4096, RELAY, RELAY,
     0},
    {"KAFKA_TOPIC", CFG_STR, F(kafka_topic), "profile.events", 1, 249, RELAY, 0, 0},
    {"RELAY_BATCH_SIZE", CFG_INT, F(relay_batch_size), "500", 1, 100000, RELAY, 0, 0},
    {"RELAY_POLL_INTERVAL_MS", CFG_INT, F(relay_poll_interval_ms), "1000", 10, 3600000, RELAY, 0,
     0},
    {"LOG_LEVEL", CFG_LEVEL, F(log_level), "info", 0, 0, ALL, 0, 0},
    {"ACCESS_LOG_SAMPLE", CFG_DOUBLE, F(access_log_sample), "1.0", 0, 1, API, 0, 0},
    {"AUTH_FAILURE_LIMIT_PER_MINUTE", CFG_INT, F(auth_failure_limit_per_minute), "600", 0, 1000000,
     API, 0, 0},
    {"CE_SOURCE", CFG_STR, F(ce_source), "/profile-service", 1, 1024, RELAY, 0, 0},
    {"RELAY_METRICS_PORT", CFG_INT, F(relay_metrics_port), "9101", 0, 65535, RELAY, 0, 0},
    {"OUTBOX_RETENTION_SECONDS", CFG_INT, F(outbox_retention_seconds), "3600", 0, 31536000, RELAY,
     0, 0},
    {"OTEL_TRACES_SAMPLER_ARG", CFG_DOUBLE, F(otel_traces_sampler_arg), "1.0", 0, 1, SERVICES, 0,
     0},
    {"OTEL_EXPORTER_OTLP_ENDPOINT", CFG_STR, F(otel_exporter_otlp_endpoint), "", 0, 4096, SERVICES,
     0, 0},
    {"SHUTDOWN_DRAIN_SECONDS", CFG_INT, F(shutdown_drain_seconds), "5", 0, 600, API, 0, 0},
    {"MIGRATIONS_DIR", CFG_STR, F(migrations_dir), "", 0, 4096, CFG_PROG_MIGRATE, 0, 0},
#ifdef PROFILE_TEST_HOOKS
    /* test-only: holds every cache fill between its PostgreSQL read and its Redis write */
    {"TEST_CACHE_FILL_DELAY_MS", CFG_INT, F(test_cache_fill_delay_ms), "0", 0, 60000, API, 0, 0},
#endif
};

#undef F

static void add_error(strbuf_t *errs, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void add_error(strbuf_t *errs, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    strbuf_vappendf(errs, fmt, ap);
    va_end(ap);
    strbuf_append_char(errs, '\n');
}

static int parse_int(const char *s, long *out)
{
    char *end;
    errno = 0;
    *out = strtol(s, &end, 10);
    return errno != 0 || end == s || *end != '\0' ? -1 : 0;
}

static int parse_double(const char *s, double *out)
{
    char *end;
    errno = 0;
    *out = strtod(s, &end);
    return errno != 0 || end == s || *end != '\0' || !isfinite(*out) ? -1 : 0;
}

static void load_entry(app_config_t *cfg, const cfg_entry_t *e, unsigned program, strbuf_t *errs)
{
    char *field = (char *)cfg + e->offset;
    const char *raw = getenv(e->name);
    int from_env = raw != NULL && raw[0] != '\0';
    const char *val = from_env ? raw : e->def;

    if (val == NULL) {
        if (e->required & program)
            add_error(errs, "%s: required but not set", e->name);
        return;
    }

    switch (e->type) {
    case CFG_INT: {
        long v;
        if (parse_int(val, &v) != 0 || v < (long)e->min || v > (long)e->max) {
            add_error(errs, "%s: must be an integer from %ld to %ld", e->name, (long)e->min,
                      (long)e->max);
            return;
        }
        *(int *)field = (int)v;
        break;
    }
    case CFG_DOUBLE: {
        double v;
        if (parse_double(val, &v) != 0 || v < e->min || v > e->max) {
            add_error(errs, "%s: must be a number from %g to %g", e->name, e->min, e->max);
            return;
        }
        *(double *)field = v;
        break;
    }
    case CFG_LEVEL:
        if (log_parse_level(val, (log_level_t *)field) != 0) {
            add_error(errs, "%s: must be one of debug, info, warn, error", e->name);
            return;
        }
        break;
    case CFG_STR: {
        size_t len = strlen(val);
        if (len < (size_t)e->min || len > (size_t)e->max) {
            add_error(errs, "%s: length must be from %zu to %zu bytes", e->name, (size_t)e->min,
                      (size_t)e->max);
            return;
        }
        *(char **)field = xstrdup(val);
        break;
    }
    }
}

static int valid_redis_url(const char *u)
{
    return strncmp(u, "redis://", 8) == 0 || strncmp(u, "unix://", 7) == 0;
}

int config_load_env(app_config_t *cfg, unsigned program, char *errbuf, size_t errlen)
{
    strbuf_t errs;
    size_t i;
    int ret;

    memset(cfg, 0, sizeof(*cfg));
    {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        cfg->http_threads = cores > 0 ? (int)cores : 1;
    }
    strbuf_init(&errs);
    for (i = 0; i < sizeof(config_table) / sizeof(config_table[0]); ++i) {
        if (config_table[i].programs & program)
            load_entry(cfg, config_table + i, program, &errs);
    }

    /* Rules that span variables. */
    if (program & CFG_PROG_API) {
        if (cfg->jwt_hs256_secret != NULL && cfg->jwt_public_key_file != NULL)
            add_error(&errs, "JWT_HS256_SECRET: set only one of JWT_HS256_SECRET and "
                             "JWT_PUBLIC_KEY_FILE");
        else if (cfg->jwt_hs256_secret == NULL && cfg->jwt_public_key_file == NULL &&
                 (getenv("JWT_HS256_SECRET") == NULL || getenv("JWT_HS256_SECRET")[0] == '\0'))
            add_error(&errs, "JWT_HS256_SECRET: one of JWT_HS256_SECRET or JWT_PUBLIC_KEY_FILE "
                             "is required");
        if (cfg->jwt_public_key_file != NULL && access(cfg->jwt_public_key_file, R_OK) != 0)
            add_error(&errs, "JWT_PUBLIC_KEY_FILE: cannot read the file");
    }
    if ((program & (CFG_PROG_API | CFG_PROG_RELAY)) && cfg->redis_url != NULL &&
        !valid_redis_url(cfg->redis_url))
        add_error(&errs, "REDIS_URL: must start with redis:// or unix://");
    if ((program & (CFG_PROG_API | CFG_PROG_RELAY)) && cfg->redis_mode != NULL) {
        if (strcmp(cfg->redis_mode, "cluster") == 0)
            cfg->redis_cluster = true;
        else if (strcmp(cfg->redis_mode, "standalone") != 0)
            add_error(&errs, "REDIS_MODE: must be standalone or cluster");
    }

    if (errbuf != NULL && errlen > 0) {
        snprintf(errbuf, errlen, "%s", errs.data);
    }
    ret = errs.len == 0 ? 0 : -1;
    strbuf_dispose(&errs);
    return ret;
}

void config_dispose(app_config_t *cfg)
{
    size_t i;
    if (cfg == NULL)
        return;
    for (i = 0; i < sizeof(config_table) / sizeof(config_table[0]); ++i) {
        if (config_table[i].type == CFG_STR) {
            char **p = (char **)((char *)cfg + config_table[i].offset);
            free(*p);
            *p = NULL;
        }
    }
}

void config_mask_dsn(const char *url, char *out, size_t outlen)
{
    const char *scheme, *at, *colon, *pw;
    size_t n;

    if (outlen == 0)
        return;
    out[0] = '\0';
    if (url == NULL)
        return;
    /* a comma list of URIs (REDIS_MODE=cluster seeds): each one masked */
    if (strstr(url, "://") != NULL && strchr(url, ',') != NULL) {
        const char *comma = strchr(url, ',');
        char *first = xstrndup(url, (size_t)(comma - url));
        config_mask_dsn(first, out, outlen);
        free(first);
        n = strlen(out);
        if (n + 1 < outlen) {
            out[n] = ',';
            config_mask_dsn(comma + 1, out + n + 1, outlen - n - 1);
        }
        return;
    }
    /* URI form: scheme://user:password@host */
    if ((scheme = strstr(url, "://")) != NULL && (at = strchr(scheme + 3, '@')) != NULL &&
        (colon = memchr(scheme + 3, ':', (size_t)(at - (scheme + 3)))) != NULL) {
        n = (size_t)(colon + 1 - url);
        snprintf(out, outlen, "%.*s***%s", (int)n, url, at);
        return;
    }
    /* key/value form: ... password=secret ... */
    if ((pw = strstr(url, "password=")) != NULL) {
        const char *end = pw + 9;
        if (*end == '\'') {
            ++end;
            while (*end != '\0' && *end != '\'')
                end += (*end == '\\' && end[1] != '\0') ? 2 : 1;
            if (*end == '\'')
                ++end;
        } else {
            while (*end != '\0' && *end != ' ')
                ++end;
        }
        snprintf(out, outlen, "%.*s***%s", (int)(pw + 9 - url), url, end);
        return;
    }
    snprintf(out, outlen, "%s", url);
}

void config_log_effective(const app_config_t *cfg, unsigned program)
{
    strbuf_t b;
    size_t i;
    int first = 1;

    if (LOG_LEVEL_INFO < log_threshold)
        return;
    strbuf_init(&b);
    strbuf_append_str(&b, "\"config\":{");
    for (i = 0; i < sizeof(config_table) / sizeof(config_table[0]); ++i) {
        const cfg_entry_t *e = config_table + i;
        const char *field = (const char *)cfg + e->offset;
        if (!(e->programs & program))
            continue;
        if (!first)
            strbuf_append_char(&b, ',');
        first = 0;
        strbuf_append_json_string(&b, e->name, strlen(e->name));
        strbuf_append_char(&b, ':');
        switch (e->type) {
        case CFG_INT:
            strbuf_appendf(&b, "%d", *(const int *)field);
            break;
        case CFG_DOUBLE:
            strbuf_appendf(&b, "%g", *(const double *)field);
            break;
        case CFG_LEVEL: {
            static const char *const names[] = {"debug", "info", "warn", "error"};
            strbuf_appendf(&b, "\"%s\"", names[*(const log_level_t *)field]);
            break;
        }
        case CFG_STR: {
            const char *s = *(char *const *)field;
            if (s == NULL) {
                strbuf_append_str(&b, "null");
            } else if (strcmp(e->name, "DATABASE_URL") == 0 || strcmp(e->name, "REDIS_URL") == 0) {
                char masked[4200];
                config_mask_dsn(s, masked, sizeof(masked));
                strbuf_append_json_string(&b, masked, strlen(masked));
            } else if (e->flags & CFG_SECRET) {
                strbuf_append_str(&b, "\"***\"");
            } else {
                strbuf_append_json_string(&b, s, strlen(s));
            }
            break;
        }
        }
    }
    strbuf_append_char(&b, '}');
    log_write_fields(LOG_LEVEL_INFO, LOG_MODULE, NULL, "effective configuration", b.data);
    strbuf_dispose(&b);
}
