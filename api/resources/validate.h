/*
 * The body rules of the resources (docs/openapi.yaml), and the field errors every check
 * reports (the id and Idempotency-Key rules are in api/codec/ids.h). Pure functions over bytes:
 * no h2o, no I/O. Every failure yields field errors for problem+json; unknown members are errors.
 */
#ifndef PROFILE_API_RESOURCES_VALIDATE_H
#define PROFILE_API_RESOURCES_VALIDATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "common/alloc.h"
#include "api/codec/field_errors.h"

/** Largest JSON encoding of `preferences`. */
#define VALIDATE_MAX_PREFERENCES 8192

/**
 * Strict RFC 3339 date-time: `YYYY-MM-DDTHH:MM:SS[.f{1,9}](Z|+hh:mm|-hh:mm)`, `T`/`Z` in either
 * case, year 1900-9999 (also in UTC: 9999-12-31T23:30:00-01:00 is refused), real calendar
 * dates, seconds 00-59 (a leap second 60 is refused).
 */
bool validate_rfc3339(const char *s, size_t len);

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
 * `out` needs freeing. JSON nesting depth and element counts are bounded. `errs` may be
 * uninitialised on entry. Rules beyond docs/openapi.yaml that callers may rely on:
 * - A duplicate member name anywhere is one error naming its dotted path ("preferences.x").
 * - Integers are JSON integers only: "3", 3.0, 1e2 and true are all refused.
 * - Profile: unknown members are errors except userId/version/createdAt/updatedAt (ignored).
 *   avatarUrl: https:// (scheme case-insensitive), host[:port], printable ASCII without
 *   space, quotes, <, >, \, ^, `, {, |, } and no user info. preferences: free-form object,
 *   but "language" must be a language tag, "autoplay" a boolean, "subtitles" a boolean, null
 *   or a short string, "maturityRating" a short string or an integer; its canonical JSON
 *   (json-c, no spaces) is what preferences_json holds and what the 8 KiB limit measures.
 * - History: durationSeconds and watchedAt may be null (= absent).
 * - Rating: review may contain line breaks and tabs (\n, \r, \t); other control characters
 *   (C0, DEL, C1) are refused. An empty review "" is kept as "".
 */
PROFILE_MUSTCHECK int validate_profile_body(const char *body, size_t len, profile_input_t *out,
                                            field_errors_t *errs);
void validate_profile_input_dispose(profile_input_t *p);
PROFILE_MUSTCHECK int validate_watchlist_body(const char *body, size_t len, watchlist_input_t *out,
                                              field_errors_t *errs);
PROFILE_MUSTCHECK int validate_history_body(const char *body, size_t len, history_input_t *out,
                                            field_errors_t *errs);
PROFILE_MUSTCHECK int validate_rating_body(const char *body, size_t len, rating_input_t *out,
                                           field_errors_t *errs);
void validate_rating_input_dispose(rating_input_t *r);

#endif
