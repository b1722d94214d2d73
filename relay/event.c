/*
 * CloudEvents header mapping of outbox rows, traceparent generation and dead-letter id parsing.
 * Pure functions (no I/O besides the random source) so they are unit-tested directly.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include "relay/event.h"

static const char *const type_names[EVENT_TYPE_COUNT] = {
    [EVENT_TYPE_WATCHLIST] = "WatchlistUpdated",
    [EVENT_TYPE_HISTORY] = "HistoryUpdated",
    [EVENT_TYPE_RATING] = "VideoRated",
    [EVENT_TYPE_PROFILE] = "ProfileUpdated",
    [EVENT_TYPE_PROFILE_DELETED] = "ProfileDeleted",
};

/*
 * The `ce_dataschema` of each type: the `$id` of schemas/events/<Type>.v<N>.json for the version
 * of `data` the database writes today. A change that needs a new version (docs/events.md,
 * Versioning) adds the next schema file; publishing both versions while consumers move needs a
 * second record per event, which the relay does not do yet (no type has a second version).
 */
static const char *const dataschemas[EVENT_TYPE_COUNT] = {
    [EVENT_TYPE_WATCHLIST] = EVENT_SCHEMA_URN_PREFIX "WatchlistUpdated:1",
    [EVENT_TYPE_HISTORY] = EVENT_SCHEMA_URN_PREFIX "HistoryUpdated:1",
    [EVENT_TYPE_RATING] = EVENT_SCHEMA_URN_PREFIX "VideoRated:1",
    [EVENT_TYPE_PROFILE] = EVENT_SCHEMA_URN_PREFIX "ProfileUpdated:1",
    [EVENT_TYPE_PROFILE_DELETED] = EVENT_SCHEMA_URN_PREFIX "ProfileDeleted:1",
};

event_type_t event_type_from_name(const char *name)
{
    for (int i = 0; i < EVENT_TYPE_COUNT; ++i) {
        if (name != NULL && strcmp(name, type_names[i]) == 0)
            return (event_type_t)i;
    }
    return EVENT_TYPE_COUNT;
}

const char *event_type_name(event_type_t t)
{
    return (int)t >= 0 && t < EVENT_TYPE_COUNT ? type_names[t] : "unknown";
}

const char *event_dataschema(event_type_t t)
{
    return (int)t >= 0 && t < EVENT_TYPE_COUNT ? dataschemas[t] : NULL;
}

static bool all_hex_lower(const char *s, size_t n, bool *all_zero)
{
    *all_zero = true;
    for (size_t i = 0; i < n; ++i) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return false;
        if (c != '0')
            *all_zero = false;
    }
    return true;
}

bool event_traceparent_valid(const char *s)
{
    bool zero;
    if (s == NULL || strlen(s) != EVENT_TRACEPARENT_LEN)
        return false;
    if (s[0] != '0' || s[1] != '0' || s[2] != '-' || s[35] != '-' || s[52] != '-')
        return false;
    if (!all_hex_lower(s + 3, 32, &zero) || zero)
        return false;
    if (!all_hex_lower(s + 36, 16, &zero) || zero)
        return false;
    return all_hex_lower(s + 53, 2, &zero);
}

static uint8_t hex_byte(const char *s)
{
    int hi = s[0] <= '9' ? s[0] - '0' : s[0] - 'a' + 10;
    int lo = s[1] <= '9' ? s[1] - '0' : s[1] - 'a' + 10;
    return (uint8_t)(hi << 4 | lo);
}

int event_traceparent_parse(const char *s, uint8_t trace_id[16], uint8_t span_id[8], uint8_t *flags)
{
    if (!event_traceparent_valid(s))
        return -1;
    for (size_t i = 0; i < 16; ++i)
        trace_id[i] = hex_byte(s + 3 + 2 * i);
    for (size_t i = 0; i < 8; ++i)
        span_id[i] = hex_byte(s + 36 + 2 * i);
    *flags = hex_byte(s + 53);
    return 0;
}

static void fill_random(unsigned char *p, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = getrandom(p + got, n - got, 0);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            PROFILE_FATAL("getrandom failed");
        }
        got += (size_t)r;
    }
}

static void hex_nonzero(char *out, size_t bytes)
{
    static const char digits[] = "0123456789abcdef";
    unsigned char raw[16];
    bool zero;
    do {
        fill_random(raw, bytes);
        zero = true;
        for (size_t i = 0; i < bytes; ++i) {
            out[2 * i] = digits[raw[i] >> 4];
            out[2 * i + 1] = digits[raw[i] & 0xf];
            if (raw[i] != 0)
                zero = false;
        }
    } while (zero);
}

void event_new_traceparent(char out[EVENT_TRACEPARENT_LEN + 1])
{
    memcpy(out, "00-", 3);
    hex_nonzero(out + 3, 16);
    out[35] = '-';
    hex_nonzero(out + 36, 8);
    memcpy(out + 52, "-01", 4); /* includes the NUL */
}

int event_build_headers(const relay_event_t *ev, const char *ce_source, event_header_buf_t *scratch,
                        event_header_t out[EVENT_HEADER_MAX])
{
    const char *tp = ev->traceparent;
    const char *schema = event_dataschema(event_type_from_name(ev->event_type));
    int n = snprintf(scratch->seq, sizeof(scratch->seq), "%lld", (long long)ev->seq);

    if (!event_traceparent_valid(tp)) {
        event_new_traceparent(scratch->traceparent);
        tp = scratch->traceparent;
    }
#define SET(i, nm, val, l)                                                                         \
    do {                                                                                           \
        out[i].name = (nm);                                                                        \
        out[i].value = (val);                                                                      \
        out[i].len = (l);                                                                          \
    } while (0)
    SET(0, "ce_specversion", "1.0", 3);
    SET(1, "ce_id", ev->event_id, strlen(ev->event_id));
    SET(2, "ce_source", ce_source, strlen(ce_source));
    SET(3, "ce_type", ev->event_type, strlen(ev->event_type));
    SET(4, "ce_dataschema", schema != NULL ? schema : "", schema != NULL ? strlen(schema) : 0);
    SET(5, "ce_subject", ev->user_id, strlen(ev->user_id));
    SET(6, "ce_time", ev->ce_time, strlen(ev->ce_time));
    SET(7, "ce_sequence", scratch->seq, (size_t)n);
    SET(8, "content-type", "application/json", 16);
    SET(9, "traceparent", tp, EVENT_TRACEPARENT_LEN);
    if (ev->snapshot_id == NULL || ev->snapshot_id[0] == '\0')
        return EVENT_HEADER_COUNT;
    SET(10, "ce_snapshot", ev->snapshot_id, strlen(ev->snapshot_id));
#undef SET
    return EVENT_HEADER_MAX;
}

static bool valid_user_id(const char *s, size_t len)
{
    if (len < 1 || len > 64)
        return false;
    for (size_t i = 0; i < len; ++i) {
        unsigned char c = (unsigned char)s[i];
        if (!(isalnum(c) || c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

static bool parse_uuid(const char *s, char *out)
{
    if (strlen(s) != EVENT_UUID_LEN)
        return false;
    for (size_t i = 0; i < EVENT_UUID_LEN; ++i) {
        char c = s[i];
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (c != '-')
                return false;
        } else if (!isxdigit((unsigned char)c)) {
            return false;
        }
        out[i] = (char)tolower((unsigned char)c);
    }
    out[EVENT_UUID_LEN] = '\0';
    return true;
}

int event_parse_dlq_id(const char *s, event_dlq_id_t *out)
{
    const char *colon;
    memset(out, 0, sizeof(*out));
    if (s == NULL)
        return -1;
    colon = strrchr(s, ':');
    if (colon == NULL) {
        if (!parse_uuid(s, out->uuid))
            return -1;
        out->by_uuid = true;
        return 0;
    }
    if (!valid_user_id(s, (size_t)(colon - s)))
        return -1;
    const char *num = colon + 1;
    if (*num == '\0' || strlen(num) > 18)
        return -1;
    for (const char *p = num; *p; ++p) {
        if (!isdigit((unsigned char)*p))
            return -1;
    }
    out->seq = strtoll(num, NULL, 10);
    if (out->seq < 1)
        return -1;
    memcpy(out->user_id, s, (size_t)(colon - s));
    out->user_id[colon - s] = '\0';
    return 0;
}
