/*
 * Strict validation of request bodies, path ids and query parameters (DESIGN.md section 2).
 * Pure functions over bytes: no h2o, no I/O. Every failure yields field errors for
 * problem+json; unknown members are errors.
 */
#ifndef PROFILE_API_VALIDATE_H
#define PROFILE_API_VALIDATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "common/alloc.h"
#include "api/problem.h"

#define VALIDATE_MAX_ERRORS 16

typedef struct st_validate_errors_t {
    problem_field_error_t items[VALIDATE_MAX_ERRORS];
    size_t count;
    char storage[2048]; /* field names/messages live here */
    size_t used;
} validate_errors_t;

/** `^[A-Za-z0-9._-]{1,64}$` */
bool validate_id(const char *s, size_t len);
/** 1-255 printable ASCII characters (0x20-0x7e). */
bool validate_idempotency_key(const char *s, size_t len);
/** `application/json` with optional parameters, case-insensitive; false when absent. */
bool validate_json_content_type(const char *s, size_t len);

/**
 * Checks UTF-8 validity and counts code points. Returns the count, or -1 when invalid UTF-8 or
 * (when `reject_controls`) a control character (C0, DEL, C1) is present.
 */
long validate_utf8_count(const char *s, size_t len, bool reject_controls);

typedef struct st_profile_input_t {
    char *display_name;     /* malloc'ed, NUL-terminated */
    char *avatar_url;       /* malloc'ed or NULL */
    char *preferences_json; /* malloc'ed canonical JSON object text ("{}" by default) */
} profile_input_t;

typedef struct st_watchlist_input_t {
    char video_id[65];
} watchlist_input_t;

typedef struct st_history_input_t {
    char video_id[65];
    int position_seconds;
    int duration_seconds; /* -1 when absent */
    char watched_at[40];  /* RFC 3339 as given (validated), "" when absent */
} history_input_t;

typedef struct st_rating_input_t {
    char video_id[65];
    int rating;
    char *review; /* malloc'ed or NULL */
} rating_input_t;

/**
 * Each parser takes the raw body bytes. Returns 0 and fills `out`, or -1 and fills `errs`
 * (malformed JSON gives one error with field "" and the parser's message). On -1 nothing in
 * `out` needs freeing. JSON nesting depth and element counts are bounded.
 */
PROFILE_MUSTCHECK int validate_profile_body(const char *body, size_t len, profile_input_t *out,
                                            validate_errors_t *errs);
void validate_profile_input_dispose(profile_input_t *p);
PROFILE_MUSTCHECK int validate_watchlist_body(const char *body, size_t len, watchlist_input_t *out,
                                              validate_errors_t *errs);
PROFILE_MUSTCHECK int validate_history_body(const char *body, size_t len, history_input_t *out,
                                            validate_errors_t *errs);
PROFILE_MUSTCHECK int validate_rating_body(const char *body, size_t len, rating_input_t *out,
                                           validate_errors_t *errs);
void validate_rating_input_dispose(rating_input_t *r);

/** Query string parameters of list endpoints. */
typedef struct st_list_query_t {
    int limit;          /* 1..100, default 50 */
    char cursor[161];   /* raw cursor text, "" when absent */
    bool view_continue; /* history: view=continue */
    char video_id[65];  /* ratings: videoId filter, "" when absent */
} list_query_t;

/**
 * Parses a raw query string (without '?', may be NULL) for list endpoints; `allow` is a bit
 * set of accepted parameters (VALIDATE_Q_*). Percent-decodes values. Unknown parameters are
 * ignored; a bad value gives -1 with errors naming the parameter.
 */
#define VALIDATE_Q_VIEW 0x1u
#define VALIDATE_Q_VIDEO_ID 0x2u
PROFILE_MUSTCHECK int validate_list_query(const char *qs, size_t len, unsigned allow,
                                          list_query_t *out, validate_errors_t *errs);

#endif
