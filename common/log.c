/*
 * JSON-lines logger. Each line is formatted into a stack buffer and written with one fwrite so
 * that lines from several threads never interleave.
 */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include "common/log.h"
#include "common/buf.h"
#include "common/clock.h"

#define LINE_MAX_BYTES 8192

_Atomic log_level_t log_threshold = LOG_LEVEL_INFO;
static const char *service_name = "profile";
static FILE *out_stream;

/* The one table of level names (config.c parses and logs them through log_parse_level() and
 * log_level_name()). */
static const char *const level_names[] = {
    [LOG_LEVEL_DEBUG] = "debug",
    [LOG_LEVEL_INFO] = "info",
    [LOG_LEVEL_WARN] = "warn",
    [LOG_LEVEL_ERROR] = "error",
};

void log_init(const char *service, log_level_t threshold)
{
    service_name = service;
    log_threshold = threshold;
}

const char *log_level_name(log_level_t level)
{
    return (unsigned)level <= LOG_LEVEL_ERROR ? level_names[level] : "unknown";
}

int log_parse_level(const char *s, log_level_t *out)
{
    for (int i = LOG_LEVEL_DEBUG; i <= LOG_LEVEL_ERROR; ++i) {
        if (strcasecmp(s, level_names[i]) == 0) {
            *out = (log_level_t)i;
            return 0;
        }
    }
    return -1;
}

void log_set_threshold(log_level_t threshold)
{
    log_threshold = threshold;
}

log_level_t log_get_threshold(void)
{
    return log_threshold;
}

int log_read_level_file(const char *path, log_level_t *out, char *errbuf, size_t errlen)
{
    char buf[64], *start, *end;
    FILE *fp = fopen(path, "re");
    size_t n;

    if (fp == NULL) {
        snprintf(errbuf, errlen, "cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    n = fread(buf, 1, sizeof(buf) - 1, fp);
    fclose(fp);
    buf[n] = '\0';
    for (start = buf; *start != '\0' && isspace((unsigned char)*start); ++start)
        ;
    for (end = start; *end != '\0' && !isspace((unsigned char)*end); ++end)
        ;
    for (char *rest = end; *rest != '\0'; ++rest) {
        if (!isspace((unsigned char)*rest)) {
            snprintf(errbuf, errlen, "%s must hold one word: debug, info, warn or error", path);
            return -1;
        }
    }
    *end = '\0';
    if (n == sizeof(buf) - 1 || log_parse_level(start, out) != 0) {
        snprintf(errbuf, errlen, "%s must hold one of debug, info, warn, error", path);
        return -1;
    }
    return 0;
}

void log_set_stream(FILE *fp)
{
    out_stream = fp;
}

static void put_prefix(strbuf_t *b, log_level_t level, const char *module)
{
    int64_t now_ns = clock_wall_ns();
    time_t secs = (time_t)(now_ns / 1000000000);
    struct tm tm;
    char ts[40];
    gmtime_r(&secs, &tm);
    strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    strbuf_appendf(b, "{\"ts\":\"%s.%03dZ\",\"level\":\"%s\",\"service\":", ts,
                   (int)(now_ns / 1000000 % 1000), level_names[level]);
    strbuf_append_json_string(b, service_name, strlen(service_name));
    strbuf_append(b, ",\"module\":", 10);
    strbuf_append_json_string(b, module, strlen(module));
}

static void put_ctx(strbuf_t *b, const log_ctx_t *ctx)
{
    if (ctx == NULL)
        return;
    if (ctx->request_id != NULL) {
        strbuf_append(b, ",\"request_id\":", 14);
        strbuf_append_json_string(b, ctx->request_id, strlen(ctx->request_id));
    }
    if (ctx->trace_id != NULL) {
        strbuf_append(b, ",\"trace_id\":", 12);
        strbuf_append_json_string(b, ctx->trace_id, strlen(ctx->trace_id));
    }
    if (ctx->user != NULL) {
        strbuf_append(b, ",\"user\":", 8);
        strbuf_append_json_string(b, ctx->user, strlen(ctx->user));
    }
}

static void emit(strbuf_t *b)
{
    FILE *fp = out_stream != NULL ? out_stream : stderr;
    strbuf_append(b, "}\n", 2);
    flockfile(fp);
    fwrite(b->data, 1, b->len, fp);
    fflush(fp);
    funlockfile(fp);
}

void log_write(log_level_t level, const char *module, const log_ctx_t *ctx, const char *fmt, ...)
{
    char stack[LINE_MAX_BYTES], msg[LINE_MAX_BYTES];
    strbuf_t b;
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    if ((size_t)n >= sizeof(msg))
        n = sizeof(msg) - 1;

    strbuf_init_fixed(&b, stack, sizeof(stack));
    put_prefix(&b, level, module);
    strbuf_append(&b, ",\"msg\":", 7);
    strbuf_append_json_string(&b, msg, (size_t)n);
    put_ctx(&b, ctx);
    emit(&b);
    strbuf_dispose(&b);
}

void log_write_fields(log_level_t level, const char *module, const log_ctx_t *ctx, const char *msg,
                      const char *members)
{
    char stack[LINE_MAX_BYTES];
    strbuf_t b;

    if (level < log_threshold)
        return;
    strbuf_init_fixed(&b, stack, sizeof(stack));
    put_prefix(&b, level, module);
    strbuf_append(&b, ",\"msg\":", 7);
    strbuf_append_json_string(&b, msg, strlen(msg));
    put_ctx(&b, ctx);
    if (members != NULL && members[0] != '\0') {
        strbuf_append(&b, ",", 1);
        strbuf_append(&b, members, strlen(members));
    }
    emit(&b);
    strbuf_dispose(&b);
}
