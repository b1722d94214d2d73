/*
 * Opaque keyset cursors. A cursor carries the sort key of the last row of a page (a timestamp
 * in microseconds since the epoch and a tie-breaking id) and the list it belongs to, with a
 * checksum so a tampered or truncated cursor is rejected (400) rather than misread.
 */
#ifndef PROFILE_API_DATA_CURSOR_H
#define PROFILE_API_DATA_CURSOR_H

#include <stddef.h>
#include <stdint.h>
#include "common/alloc.h"

#define CURSOR_MAX_ID 64
#define CURSOR_MAX_ENCODED 160

typedef struct st_cursor_t {
    char kind;                  /* 'w' watchlist, 'h' history, 'c' history continue, 'r' ratings */
    int64_t ts_us;              /* sort timestamp, microseconds since the Unix epoch */
    char id[CURSOR_MAX_ID + 1]; /* tie-breaker (videoId or entryId), NUL-terminated */
} cursor_t;

/** Encodes into `out` (at least CURSOR_MAX_ENCODED bytes), base64url, NUL-terminated. */
void cursor_encode(const cursor_t *c, char *out);

/**
 * Decodes `s` (`len` bytes). Returns 0 on success, -1 when malformed, tampered, of another
 * `expect_kind`, or out of range.
 */
PROFILE_MUSTCHECK int cursor_decode(const char *s, size_t len, char expect_kind, cursor_t *out);

#endif
