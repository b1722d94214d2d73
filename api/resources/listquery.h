/*
 * The query string of the list endpoints (limit, cursor, view, videoId).
 */
#ifndef PROFILE_API_RESOURCES_LISTQUERY_H
#define PROFILE_API_RESOURCES_LISTQUERY_H

#include <stdbool.h>
#include <stddef.h>
#include "api/resources/validate.h"

/** Longest query string validate_list_query() accepts. */
#define VALIDATE_MAX_QUERY 4096
/** Page sizes: `limit` is 1..LIST_LIMIT_MAX, LIST_LIMIT_DEFAULT when absent. */
#define LIST_LIMIT_MAX 100
#define LIST_LIMIT_DEFAULT 50

/** Query string parameters of list endpoints. */
typedef struct st_list_query_t {
    int limit;          /* 1..LIST_LIMIT_MAX, default LIST_LIMIT_DEFAULT */
    char cursor[161];   /* raw cursor text, "" when absent */
    bool view_continue; /* history: view=continue */
    char video_id[65];  /* ratings: videoId filter, "" when absent */
} list_query_t;

/**
 * Parses a raw query string (without '?', may be NULL) for list endpoints; `allow` is a bit
 * set of accepted parameters (VALIDATE_Q_*). Percent-decodes values. Unknown parameters are
 * ignored; a bad value gives -1 with errors naming the parameter. Also: '+' decodes to a
 * space; a bad %-escape anywhere is an error; a known parameter given twice is an error;
 * `limit` must be 1-LIST_LIMIT_MAX written without sign, leading zeros or spaces; `cursor=` (empty)
 * means the first page; `cursor` is only checked for its alphabet and length here (decode it
 * with cursor_decode()).
 */
#define VALIDATE_Q_VIEW 0x1u
#define VALIDATE_Q_VIDEO_ID 0x2u
PROFILE_MUSTCHECK int validate_list_query(const char *qs, size_t len, unsigned allow,
                                          list_query_t *out, field_errors_t *errs);

#endif
