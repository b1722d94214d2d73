/*
 * The single configuration table (STYLE.md rule 20) and its loader. getenv() is called only
 * here. Each entry says which programs read the variable and which require it.
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include "common/buf.h"
#include "common/config.h"

#define LOG_MODULE "config"

typedef enum { CFG_INT, CFG_STR, CFG_DOUBLE, CFG_LEVEL, CFG_BOOL } cfg_type_t;

/* Flags of an entry. */
#define CFG_SECRET 0x1u /* logged as "***" */
#define CFG_DSN 0x2u    /* a connection string: logged with its password masked */

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
    {.name = "HTTP_PORT",
     .type = CFG_INT,
     .offset = F(http_port),
     .def = "8080",
     .min = 0,
     .max = 65535,
     .programs = API},
    {.name = "HTTP_THREADS",
     .type = CFG_INT,
     .offset = F(http_threads),
     .min = 1,
     .max = 256,
     .programs = API},
    {.name = "MAX_CONNECTIONS_PER_THREAD",
     .type = CFG_INT,
     .offset = F(max_connections_per_thread),
     .def = "4096",
     .min = 1,
     .max = 1000000,
     .programs = API},
    {.name = "DATABASE_URL",
     .type = CFG_STR,
     .offset = F(database_url),
     .min = 1,
     .max = 4096,
     .programs = ALL,
     .required = ALL,
     .flags = CFG_DSN},
    {.name = "PG_POOL_MAX",
     .type = CFG_INT,
     .offset = F(pg_pool_max),
     .def = "30",
     .min = 1,
     .max = 1000,
     .programs = API},
    {.name = "OUTBOX_HINT",
     .type = CFG_INT,
     .offset = F(outbox_hint),
     .def = "1",
     .min = 0,
     .max = 1,
     .programs = API},
    {.name = "REDIS_URL",
     .type = CFG_STR,
     .offset = F(redis_url),
     .def = "redis://127.0.0.1:6379/0",
     .min = 1,
     .max = 4096,
     .programs = SERVICES,
     .flags = CFG_DSN},
    {.name = "REDIS_MODE",
     .type = CFG_STR,
     .offset = F(redis_mode),
     .def = "standalone",
     .min = 1,
     .max = 32,
     .programs = SERVICES},
    {.name = "CACHE_TTL_SECONDS",
     .type = CFG_INT,
     .offset = F(cache_ttl_seconds),
     .def = "300",
     .min = 1,
     .max = 86400,
     .programs = SERVICES},
    {.name = "CACHE_LOCAL_MB",
     .type = CFG_INT,
     .offset = F(cache_local_mb),
     .def = "64",
     .min = 0,
     .max = 65536,
     .programs = API},
    {.name = "RATE_LIMIT_PER_MINUTE",
     .type = CFG_INT,
     .offset = F(rate_limit_per_minute),
     .def = "200",
     .min = 0,
     .max = 1000000,
     .programs = API},
    {.name = "JWT_HS256_SECRET",
     .type = CFG_STR,
     .offset = F(jwt_hs256_secret),
     .min = 32,
     .max = 4096,
     .programs = API,
     .flags = CFG_SECRET},
    {.name = "JWT_PUBLIC_KEY_FILE",
     .type = CFG_STR,
     .offset = F(jwt_public_key_file),
     .min = 1,
     .max = 4096,
     .programs = API},
    {.name = "JWT_JWKS_FILE",
     .type = CFG_STR,
     .offset = F(jwt_jwks_file),
     .min = 1,
     .max = 4096,
     .programs = API},
    {.name = "JWT_ISSUER",
     .type = CFG_STR,
     .offset = F(jwt_issuer),
     .min = 1,
     .max = 1024,
     .programs = API,
     .required = API},
    {.name = "JWT_AUDIENCE",
     .type = CFG_STR,
     .offset = F(jwt_audience),
     .min = 1,
     .max = 1024,
     .programs = API,
     .required = API},
    {.name = "CORS_ALLOWED_ORIGINS",
     .type = CFG_STR,
     .offset = F(cors_allowed_origins),
     .def = "",
     .min = 0,
     .max = 65536,
     .programs = API},
    {.name = "IDEMPOTENCY_TTL_SECONDS",
     .type = CFG_INT,
     .offset = F(idempotency_ttl_seconds),
     .def = "86400",
     .min = 1,
     .max = 31536000,
     .programs = API},
    {.name = "KAFKA_BOOTSTRAP_SERVERS",
     .type = CFG_STR,
     .offset = F(kafka_bootstrap_servers),
     .min = 1,
     .max = 4096,
     .programs = RELAY,
     .required = RELAY},
    {.name = "KAFKA_TOPIC",
     .type = CFG_STR,
     .offset = F(kafka_topic),
     .def = "profile.events",
     .min = 1,
     .max = 249,
     .programs = RELAY},
    {.name = "RELAY_BATCH_SIZE",
     .type = CFG_INT,
     .offset = F(relay_batch_size),
     .def = "500",
     .min = 1,
     .max = 100000,
     .programs = RELAY},
    {.name = "RELAY_POLL_INTERVAL_MS",
     .type = CFG_INT,
     .offset = F(relay_poll_interval_ms),
     .def = "1000",
     .min = 10,
     .max = 3600000,
     .programs = RELAY},
    {.name = "RELAY_TAKEOVER_SECONDS",
     .type = CFG_INT,
     .offset = F(relay_takeover_seconds),
     .def = "10",
     .min = 3,
     .max = 3600,
     .programs = RELAY},
    {.name = "LOG_LEVEL",
     .type = CFG_LEVEL,
     .offset = F(log_level),
     .def = "info",
     .programs = ALL},
    {.name = "LOG_LEVEL_FILE",
     .type = CFG_STR,
     .offset = F(log_level_file),
     .def = "",
     .min = 0,
     .max = 4096,
     .programs = SERVICES},
    {.name = "ACCESS_LOG_SAMPLE",
     .type = CFG_DOUBLE,
     .offset = F(access_log_sample),
     .def = "1.0",
     .min = 0,
     .max = 1,
     .programs = API},
    {.name = "AUTH_FAILURE_LIMIT_PER_MINUTE",
     .type = CFG_INT,
     .offset = F(auth_failure_limit_per_minute),
     .def = "600",
     .min = 0,
     .max = 1000000,
     .programs = API},
    {.name = "CE_SOURCE",
     .type = CFG_STR,
     .offset = F(ce_source),
     .def = "/profile-service",
     .min = 1,
     .max = 1024,
     .programs = RELAY},
    {.name = "RELAY_METRICS_PORT",
     .type = CFG_INT,
     .offset = F(relay_metrics_port),
     .def = "9101",
     .min = 0,
     .max = 65535,
     .programs = RELAY},
    {.name = "OUTBOX_RETENTION_SECONDS",
     .type = CFG_INT,
     .offset = F(outbox_retention_seconds),
     .def = "3600",
     .min = 0,
     .max = 31536000,
     .programs = RELAY},
    {.name = "HISTORY_RETENTION_DAYS",
     .type = CFG_INT,
     .offset = F(history_retention_days),
     .def = "0",
     .min = 0,
     .max = 36500,
     .programs = RELAY},
    {.name = "HISTORY_RETENTION_BATCH",
     .type = CFG_INT,
     .offset = F(history_retention_batch),
     .def = "1000",
     .min = 1,
     .max = 10000,
     .programs = RELAY},
    {.name = "OTEL_TRACES_SAMPLER_ARG",
     .type = CFG_DOUBLE,
     .offset = F(otel_traces_sampler_arg),
     .def = "1.0",
     .min = 0,
     .max = 1,
     .programs = SERVICES},
    {.name = "OTEL_EXPORTER_OTLP_ENDPOINT",
     .type = CFG_STR,
     .offset = F(otel_exporter_otlp_endpoint),
     .def = "",
     .min = 0,
     .max = 4096,
     .programs = SERVICES},
    {.name = "SHUTDOWN_DRAIN_SECONDS",
     .type = CFG_INT,
     .offset = F(shutdown_drain_seconds),
     .def = "5",
     .min = 0,
     .max = 600,
     .programs = API},
    {.name = "MIGRATIONS_DIR",
     .type = CFG_STR,
     .offset = F(migrations_dir),
     .def = "",
     .min = 0,
     .max = 4096,
     .programs = CFG_PROG_MIGRATE},
    {.name = "PG_PREPARED_STATEMENTS",
     .type = CFG_BOOL,
     .offset = F(pg_prepared_statements),
     .def = "on",
     .programs = API},
    {.name = "KAFKA_SECURITY_PROTOCOL",
     .type = CFG_STR,
     .offset = F(kafka_security_protocol),
     .def = "plaintext",
     .min = 1,
     .max = 32,
     .programs = RELAY},
    {.name = "KAFKA_SASL_MECHANISM",
     .type = CFG_STR,
     .offset = F(kafka_sasl_mechanism),
     .min = 1,
     .max = 32,
     .programs = RELAY},
    {.name = "KAFKA_SASL_USERNAME",
     .type = CFG_STR,
     .offset = F(kafka_sasl_username),
     .min = 1,
     .max = 1024,
     .programs = RELAY},
    {.name = "KAFKA_SASL_PASSWORD",
     .type = CFG_STR,
     .offset = F(kafka_sasl_password),
     .min = 1,
     .max = 4096,
     .programs = RELAY,
     .flags = CFG_SECRET},
    {.name = "KAFKA_SSL_CA_FILE",
     .type = CFG_STR,
     .offset = F(kafka_ssl_ca_file),
     .min = 1,
     .max = 4096,
     .programs = RELAY},
#ifdef PROFILE_TEST_HOOKS
    /* test-only: holds every cache fill between its PostgreSQL read and its Redis write */
    {.name = "TEST_CACHE_FILL_DELAY_MS",
     .type = CFG_INT,
     .offset = F(test_cache_fill_delay_ms),
     .def = "0",
     .min = 0,
     .max = 60000,
     .programs = API},
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
    case CFG_BOOL:
        if (strcasecmp(val, "on") == 0 || strcasecmp(val, "true") == 0 || strcmp(val, "1") == 0) {
            *(int *)field = 1;
        } else if (strcasecmp(val, "off") == 0 || strcasecmp(val, "false") == 0 ||
                   strcmp(val, "0") == 0) {
            *(int *)field = 0;
        } else {
            add_error(errs, "%s: must be on or off", e->name);
            return;
        }
        break;
    case CFG_LEVEL:
        if (log_parse_level(val, (log_level_t *)field) != 0) {
            strbuf_t names;
            strbuf_init(&names);
            for (int l = LOG_LEVEL_DEBUG; l <= LOG_LEVEL_ERROR; ++l)
                strbuf_appendf(&names, l > LOG_LEVEL_DEBUG ? ", %s" : "%s",
                               log_level_name((log_level_t)l));
            add_error(errs, "%s: must be one of %s", e->name, names.data);
            strbuf_dispose(&names);
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

static int in_list(const char *s, const char *const *list, size_t n)
{
    for (size_t i = 0; i < n; ++i)
        if (strcmp(s, list[i]) == 0)
            return 1;
    return 0;
}

/*
 * Drops a "SCHEME://" prefix from every broker of KAFKA_BOOTSTRAP_SERVERS (managed Kafka
 * consoles print "SASL_SSL://host:9093"; librdkafka wants host:port and its own
 * security.protocol). A scheme that disagrees with KAFKA_SECURITY_PROTOCOL is an error.
 */
static void strip_broker_schemes(char *servers, const char *protocol, strbuf_t *errs)
{
    char *out = servers;
    const char *in = servers;
    while (*in != '\0') {
        const char *end = strchr(in, ','), *sep;
        size_t len = end != NULL ? (size_t)(end - in) : strlen(in);
        while (len > 0 && *in == ' ') {
            ++in;
            --len;
        }
        if ((sep = strstr(in, "://")) != NULL && (size_t)(sep - in) < len) {
            size_t slen = (size_t)(sep - in);
            if (slen != strlen(protocol) || strncasecmp(in, protocol, slen) != 0) {
                add_error(errs,
                          "KAFKA_BOOTSTRAP_SERVERS: scheme %.*s:// does not match "
                          "KAFKA_SECURITY_PROTOCOL=%s (set KAFKA_SECURITY_PROTOCOL to match, "
                          "or give host:port)",
                          (int)slen, in, protocol);
                return;
            }
            len -= slen + 3;
            in = sep + 3;
        }
        if (out != servers)
            *out++ = ',';
        memmove(out, in, len);
        out += len;
        in += len;
        if (*in == ',')
            ++in;
    }
    *out = '\0';
}

/* Kafka security (relay): a known protocol; SASL settings exactly when the protocol uses SASL;
 * a readable CA file only with TLS; broker schemes that agree with the protocol. */
static void check_kafka(app_config_t *cfg, strbuf_t *errs)
{
    static const char *const protocols[] = {"plaintext", "ssl", "sasl_plaintext", "sasl_ssl"};
    static const char *const mechanisms[] = {"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"};
    char *proto = cfg->kafka_security_protocol;
    int sasl, tls;

    if (proto == NULL)
        return; /* its length was out of bounds: already reported */
    for (char *c = proto; *c != '\0'; ++c)
        *c = (char)tolower((unsigned char)*c);
    if (!in_list(proto, protocols, sizeof(protocols) / sizeof(protocols[0]))) {
        add_error(errs, "KAFKA_SECURITY_PROTOCOL: must be one of plaintext, ssl, sasl_plaintext, "
                        "sasl_ssl");
        return;
    }
    sasl = strncmp(proto, "sasl_", 5) == 0;
    tls = strcmp(proto, "ssl") == 0 || strcmp(proto, "sasl_ssl") == 0;
    if (cfg->kafka_sasl_mechanism != NULL) {
        for (char *c = cfg->kafka_sasl_mechanism; *c != '\0'; ++c)
            *c = (char)toupper((unsigned char)*c);
        if (!in_list(cfg->kafka_sasl_mechanism, mechanisms,
                     sizeof(mechanisms) / sizeof(mechanisms[0])))
            add_error(errs, "KAFKA_SASL_MECHANISM: must be one of PLAIN, SCRAM-SHA-256, "
                            "SCRAM-SHA-512");
    }
    if (sasl) {
        if (cfg->kafka_sasl_mechanism == NULL)
            add_error(errs, "KAFKA_SASL_MECHANISM: required with KAFKA_SECURITY_PROTOCOL=%s",
                      proto);
        if (cfg->kafka_sasl_username == NULL)
            add_error(errs, "KAFKA_SASL_USERNAME: required with KAFKA_SECURITY_PROTOCOL=%s", proto);
        if (cfg->kafka_sasl_password == NULL)
            add_error(errs, "KAFKA_SASL_PASSWORD: required with KAFKA_SECURITY_PROTOCOL=%s", proto);
    } else {
        if (cfg->kafka_sasl_mechanism != NULL)
            add_error(errs,
                      "KAFKA_SASL_MECHANISM: needs KAFKA_SECURITY_PROTOCOL=sasl_plaintext "
                      "or sasl_ssl (it is %s)",
                      proto);
        if (cfg->kafka_sasl_username != NULL)
            add_error(errs,
                      "KAFKA_SASL_USERNAME: needs KAFKA_SECURITY_PROTOCOL=sasl_plaintext "
                      "or sasl_ssl (it is %s)",
                      proto);
        if (cfg->kafka_sasl_password != NULL)
            add_error(errs,
                      "KAFKA_SASL_PASSWORD: needs KAFKA_SECURITY_PROTOCOL=sasl_plaintext "
                      "or sasl_ssl (it is %s)",
                      proto);
    }
    if (cfg->kafka_ssl_ca_file != NULL) {
        if (!tls)
            add_error(errs,
                      "KAFKA_SSL_CA_FILE: needs KAFKA_SECURITY_PROTOCOL=ssl or sasl_ssl "
                      "(it is %s)",
                      proto);
        else if (access(cfg->kafka_ssl_ca_file, R_OK) != 0)
            add_error(errs, "KAFKA_SSL_CA_FILE: cannot read the file");
    }
    if (cfg->kafka_bootstrap_servers != NULL)
        strip_broker_schemes(cfg->kafka_bootstrap_servers, proto, errs);
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
        if (cfg->jwt_jwks_file != NULL &&
            (cfg->jwt_hs256_secret != NULL || cfg->jwt_public_key_file != NULL))
            add_error(&errs, "JWT_JWKS_FILE: set only one of JWT_HS256_SECRET, "
                             "JWT_PUBLIC_KEY_FILE and JWT_JWKS_FILE");
        else if (cfg->jwt_hs256_secret != NULL && cfg->jwt_public_key_file != NULL)
            add_error(&errs, "JWT_HS256_SECRET: set only one of JWT_HS256_SECRET and "
                             "JWT_PUBLIC_KEY_FILE");
        else if (cfg->jwt_hs256_secret == NULL && cfg->jwt_public_key_file == NULL &&
                 cfg->jwt_jwks_file == NULL &&
                 (getenv("JWT_HS256_SECRET") == NULL || getenv("JWT_HS256_SECRET")[0] == '\0'))
            add_error(&errs, "JWT_HS256_SECRET: one of JWT_HS256_SECRET, JWT_PUBLIC_KEY_FILE or "
                             "JWT_JWKS_FILE is required");
        if (cfg->jwt_public_key_file != NULL && access(cfg->jwt_public_key_file, R_OK) != 0)
            add_error(&errs, "JWT_PUBLIC_KEY_FILE: cannot read the file");
        if (cfg->jwt_jwks_file != NULL && access(cfg->jwt_jwks_file, R_OK) != 0)
            add_error(&errs, "JWT_JWKS_FILE: cannot read the file");
    }
    if ((program & (CFG_PROG_API | CFG_PROG_RELAY)) && cfg->log_level_file != NULL &&
        cfg->log_level_file[0] != '\0') {
        char why[256];
        if (log_read_level_file(cfg->log_level_file, &cfg->log_level, why, sizeof(why)) != 0)
            add_error(&errs, "LOG_LEVEL_FILE: %s", why);
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
    if (program & CFG_PROG_RELAY)
        check_kafka(cfg, &errs);

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
        case CFG_BOOL:
            strbuf_append_str(&b, *(const int *)field ? "\"on\"" : "\"off\"");
            break;
        case CFG_LEVEL:
            strbuf_appendf(&b, "\"%s\"", log_level_name(*(const log_level_t *)field));
            break;
        case CFG_STR: {
            const char *s = *(char *const *)field;
            if (s == NULL) {
                strbuf_append_str(&b, "null");
            } else if (e->flags & CFG_DSN) {
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

void config_reload_log_level(const app_config_t *cfg)
{
    log_level_t before = log_get_threshold(), level;
    char why[256];

    if (cfg->log_level_file == NULL || cfg->log_level_file[0] == '\0') {
        log_write(LOG_LEVEL_INFO, LOG_MODULE, NULL,
                  "SIGHUP: LOG_LEVEL_FILE is not set; the log level stays %s",
                  log_level_name(before));
        return;
    }
    if (log_read_level_file(cfg->log_level_file, &level, why, sizeof(why)) != 0) {
        log_error("LOG_LEVEL_FILE: %s; the log level stays %s", why, log_level_name(before));
        return;
    }
    log_set_threshold(level);
    /* Written whatever the new level: an operator's change deserves a line. */
    log_write(LOG_LEVEL_INFO, LOG_MODULE, NULL,
              "SIGHUP: log level %s (was %s, from LOG_LEVEL_FILE)", log_level_name(level),
              log_level_name(before));
}
