/*
 * List pages rendered in C: turns the binary result of one api_page_* statement (V003) into the
 * response body {"items":[...],"nextCursor":...}, byte for byte what V002's api_json_watch,
 * api_json_history and api_json_rating produced. Pure functions: no h2o, no I/O.
 */
#ifndef PROFILE_API_DATA_LISTRENDER_H
#define PROFILE_API_DATA_LISTRENDER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <libpq-fe.h>
#include "common/alloc.h"
#include "common/buf.h"
#include "api/data/cursor.h"

/** PostgreSQL's epoch (2000-01-01 UTC) in microseconds since the Unix epoch. */
#define LISTRENDER_PG_EPOCH_UNIX_US 946684800000000LL

/** The column layout of a page (docs/sql-api.md). */
typedef enum {
    LISTRENDER_WATCHLIST = 0, /* version, video_id, added_at */
    LISTRENDER_HISTORY,       /* version, entry_id, video_id, position, duration, watched_at */
    LISTRENDER_RATINGS,       /* version, video_id, rating, review, created_at, updated_at */
} listrender_kind_t;

/**
 * Appends the body of one page to `out`. `res` is the binary-format result of a page function:
 * at least one row, the first column the user's version; an empty page is one row whose item
 * columns are NULL. At most `limit` items are rendered; when more rows came back, nextCursor is
 * the cursor (api/data/cursor.h, kind `cursor_kind`) of item `limit - 1`, else null.
 * Returns 0 and sets *version, or -1 when the result is not what the statement returns (status,
 * column count, types, formats, NULLs, lengths): `out` is then left as it was. Never reads past
 * the result's values. Thread-safe; allocates only to grow `out`.
 */
PROFILE_MUSTCHECK int listrender_page(const PGresult *res, listrender_kind_t kind, int limit,
                                      char cursor_kind, strbuf_t *out, int64_t *version);

/**
 * The items of one page without the list wrapper, for a document streamed page by page (the
 * export): appends at most `limit` items separated by commas, with a leading comma when
 * `after_item` is true and the page has items. Sets *nitems, and *more when the result holds
 * more than `limit` rows: *next is then the keyset of item `limit - 1` (ts_us and id; its kind
 * is unset), to pass as the next page's "after". Returns 0, or -1 (out unchanged) for a result
 * that is not a page or an item that cannot be rendered or continued from.
 */
PROFILE_MUSTCHECK int listrender_items(const PGresult *res, listrender_kind_t kind, int limit,
                                       bool after_item, strbuf_t *out, int *nitems, cursor_t *next,
                                       bool *more);

/**
 * Appends a binary timestamptz (microseconds since 2000-01-01 UTC) as PostgreSQL's
 * to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') writes it (milliseconds
 * truncated, at least four year digits). Returns -1 (nothing appended) for infinity and for
 * years before 1.
 */
PROFILE_MUSTCHECK int listrender_timestamp(strbuf_t *out, int64_t pg_us);

/** Appends a 16-byte uuid as 8-4-4-4-12 lowercase hex. */
void listrender_uuid(strbuf_t *out, const unsigned char *bytes);

#endif
