/*
 * traceparent parsing and generation per W3C Trace Context level 1.
 */
#include <errno.h>
#include <string.h>
#include <sys/random.h>
#include "common/alloc.h"
#include "api/codec/hex.h"
#include "api/http/trace.h"

static int lhex(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Lowercase hex into bytes; false on any other character. */
static bool unhex(const char *s, size_t nbytes, uint8_t *out)
{
    size_t i;

    for (i = 0; i < nbytes; ++i) {
        int hi = lhex(s[2 * i]), lo = lhex(s[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return false;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return true;
}

static bool all_zero(const uint8_t *b, size_t n)
{
    size_t i;

    for (i = 0; i < n; ++i) {
        if (b[i] != 0)
            return false;
    }
    return true;
}

bool trace_parse_traceparent(const char *s, size_t len, trace_context_t *out)
{
    trace_context_t t;
    uint8_t version;

    if (s == NULL)
        return false;
    while (len > 0 && (s[0] == ' ' || s[0] == '\t'))
        ++s, --len;
    while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t'))
        --len;
    if (len < TRACE_TRACEPARENT_LEN)
        return false;
    if (!unhex(s, 1, &version) || version == 0xff)
        return false;
    if (version == 0 ? len != TRACE_TRACEPARENT_LEN
                     : (len > TRACE_TRACEPARENT_LEN && s[TRACE_TRACEPARENT_LEN] != '-'))
        return false;
    if (s[2] != '-' || s[35] != '-' || s[52] != '-')
        return false;
    if (!unhex(s + 3, TRACE_ID_LEN, t.trace_id) || !unhex(s + 36, TRACE_SPAN_ID_LEN, t.span_id) ||
        !unhex(s + 53, 1, &t.flags))
        return false;
    if (all_zero(t.trace_id, TRACE_ID_LEN) || all_zero(t.span_id, TRACE_SPAN_ID_LEN))
        return false;
    *out = t;
    return true;
}

/* Random bytes for ids, drawn from getrandom() in blocks of 4096 per thread, so a request's
 * trace and span ids cost no system call of their own. */
static void random_bytes(uint8_t *buf, size_t n)
{
    static __thread uint8_t pool[4096];
    static __thread size_t avail;

    while (n > 0) {
        size_t take;
        if (avail == 0) {
            size_t got = 0;
            while (got < sizeof(pool)) {
                ssize_t r = getrandom(pool + got, sizeof(pool) - got, 0);
                if (r < 0) {
                    if (errno == EINTR)
                        continue;
                    PROFILE_FATAL("getrandom failed");
                }
                got += (size_t)r;
            }
            avail = sizeof(pool);
        }
        take = n < avail ? n : avail;
        memcpy(buf, pool + sizeof(pool) - avail, take);
        memset(pool + sizeof(pool) - avail, 0, take); /* never hand out the same bytes twice */
        avail -= take;
        buf += take;
        n -= take;
    }
}

void trace_new_span_id(uint8_t span_id[TRACE_SPAN_ID_LEN])
{
    do {
        random_bytes(span_id, TRACE_SPAN_ID_LEN);
    } while (all_zero(span_id, TRACE_SPAN_ID_LEN));
}

void trace_generate(trace_context_t *out, uint8_t flags)
{
    do {
        random_bytes(out->trace_id, TRACE_ID_LEN);
    } while (all_zero(out->trace_id, TRACE_ID_LEN));
    trace_new_span_id(out->span_id);
    out->flags = flags;
}

void trace_format_traceparent(const trace_context_t *t, char *out)
{
    memcpy(out, "00-", 3);
    hex_encode(t->trace_id, TRACE_ID_LEN, out + 3);
    out[35] = '-';
    hex_encode(t->span_id, TRACE_SPAN_ID_LEN, out + 36);
    out[52] = '-';
    hex_encode(&t->flags, 1, out + 53);
}

uint8_t trace_sampling_decide(uint8_t parent_flags, bool exporter_on, bool ratio_ok, bool *record)
{
    bool parent_sampled = (parent_flags & TRACE_FLAG_SAMPLED) != 0;

    *record = exporter_on && parent_sampled && ratio_ok;
    if (exporter_on)
        return *record ? TRACE_FLAG_SAMPLED : 0;
    return parent_sampled ? TRACE_FLAG_SAMPLED : 0;
}
