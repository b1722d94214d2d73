/*
 * JSON-lines logging to stderr: one object per line with ts, level, service, module, msg and
 * optional request/trace context. Level is checked before any formatting happens.
 */
#ifndef PROFILE_COMMON_LOG_H
#define PROFILE_COMMON_LOG_H

#include <stdbool.h>
#include <stdio.h>

typedef enum {
    LOG_LEVEL_DEBUG = 0,
    LOG_LEVEL_INFO = 1,
    LOG_LEVEL_WARN = 2,
    LOG_LEVEL_ERROR = 3,
} log_level_t;

/** Per-line context; every member is optional (NULL = omitted). */
typedef struct st_log_ctx_t {
    const char *request_id;
    const char *trace_id;
    const char *user;
} log_ctx_t;

/** The current threshold; atomic, because SIGHUP may change it while other threads log. */
extern _Atomic log_level_t log_threshold;

/**
 * Sets the service name written in every line ("profile-api", ...). Not thread-safe: call once
 * at start-up before other threads run. The string is not copied and must outlive logging.
 */
void log_init(const char *service, log_level_t threshold);

/** Parses "debug" | "info" | "warn" | "error" (case-insensitive). Returns 0, or -1 if unknown. */
int log_parse_level(const char *s, log_level_t *out);

/** Sets / reads the threshold at run time (SIGHUP). Thread-safe. */
void log_set_threshold(log_level_t threshold);
log_level_t log_get_threshold(void);

/** "debug", "info", "warn" or "error". */
const char *log_level_name(log_level_t level);

/**
 * Reads a level from the file at `path`: one of the words log_parse_level() knows, with
 * optional surrounding white space (a trailing newline). Returns 0 with `*out` set, or -1 with
 * a one-line reason (naming the path, never more of the content than the level) in errbuf.
 */
int log_read_level_file(const char *path, log_level_t *out, char *errbuf, size_t errlen);

/** Redirects output (tests). NULL restores stderr. */
void log_set_stream(FILE *fp);

/**
 * Writes one line. Prefer the macros, which skip the call when the level is filtered out.
 * Thread-safe: each line is written with a single fwrite under the stream's lock.
 */
void log_write(log_level_t level, const char *module, const log_ctx_t *ctx, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/**
 * Writes a line whose payload is already JSON members (e.g. `"status":200,"route":"/x"`), for
 * the access log. `members` must be valid JSON object members without braces.
 */
void log_write_fields(log_level_t level, const char *module, const log_ctx_t *ctx, const char *msg,
                      const char *members);

/* Each .c file that logs defines LOG_MODULE ("db", "relay", ...) after its includes. */

#define LOG_AT(lvl, ctx, ...)                                                                      \
    do {                                                                                           \
        if ((lvl) >= log_threshold)                                                                \
            log_write((lvl), LOG_MODULE, (ctx), __VA_ARGS__);                                      \
    } while (0)

#define log_debug(...) LOG_AT(LOG_LEVEL_DEBUG, NULL, __VA_ARGS__)
#define log_info(...) LOG_AT(LOG_LEVEL_INFO, NULL, __VA_ARGS__)
#define log_warn(...) LOG_AT(LOG_LEVEL_WARN, NULL, __VA_ARGS__)
#define log_error(...) LOG_AT(LOG_LEVEL_ERROR, NULL, __VA_ARGS__)
#define log_debug_ctx(ctx, ...) LOG_AT(LOG_LEVEL_DEBUG, (ctx), __VA_ARGS__)
#define log_info_ctx(ctx, ...) LOG_AT(LOG_LEVEL_INFO, (ctx), __VA_ARGS__)
#define log_warn_ctx(ctx, ...) LOG_AT(LOG_LEVEL_WARN, (ctx), __VA_ARGS__)
#define log_error_ctx(ctx, ...) LOG_AT(LOG_LEVEL_ERROR, (ctx), __VA_ARGS__)

#endif
