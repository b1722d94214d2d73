/*
 * Field errors: the (member, message) pairs a body or query check reports, for a problem+json
 * answer's `errors`. A leaf: no h2o, nothing else of api/.
 */
#ifndef PROFILE_API_CODEC_FIELD_ERRORS_H
#define PROFILE_API_CODEC_FIELD_ERRORS_H

#include <stddef.h>

#define FIELD_ERRORS_MAX 16
/** Longest field name an error keeps (longer ones are truncated). */
#define FIELD_ERRORS_NAME_MAX 64

/** One validation error: `field` names the member ("videoId", "preferences.language"). */
typedef struct st_field_error_t {
    const char *field;
    const char *message;
} field_error_t;

typedef struct st_field_errors_t {
    field_error_t items[FIELD_ERRORS_MAX];
    size_t count;
    char storage[2048]; /* field names/messages live here */
    size_t used;
} field_errors_t;

/** Empties `errs` (the parsers do this themselves on entry). */
void field_errors_init(field_errors_t *errs);

/**
 * Adds one error; `field` and `message` are copied (field truncated to FIELD_ERRORS_NAME_MAX
 * bytes). Silently drops the error when FIELD_ERRORS_MAX are already held or the storage is full.
 */
void field_errors_add(field_errors_t *errs, const char *field, const char *message);

/** field_errors_add() with a printf-style message (at most 255 bytes are kept). */
void field_errors_addf(field_errors_t *errs, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
