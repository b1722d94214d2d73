/*
 * Redis Cluster arithmetic: CRC16 key slots, redirection and slot map parsing, grouping a
 * batch by slot (common/redis_cluster.h).
 */
#include "common/redis_cluster.h"

#include "common/alloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* CRC16-CCITT XMODEM, bitwise: a key is short and the table would cost 512 bytes of cache */
uint16_t redis_cluster_crc16(const char *buf, size_t len)
{
    uint16_t crc = 0;
    for (size_t i = 0; i < len; i++) {
        crc ^= (uint16_t)((uint16_t)(unsigned char)buf[i] << 8);
        for (int b = 0; b < 8; b++)
            crc = (crc & 0x8000) != 0 ? (uint16_t)((crc << 1) ^ 0x1021) : (uint16_t)(crc << 1);
    }
    return crc;
}

unsigned redis_cluster_key_slot(const char *key, size_t len)
{
    const char *open = memchr(key, '{', len);
    if (open != NULL) {
        size_t rest = len - (size_t)(open - key) - 1;
        const char *close = memchr(open + 1, '}', rest);
        if (close != NULL && close > open + 1)
            return redis_cluster_crc16(open + 1, (size_t)(close - open - 1)) &
                   (REDIS_CLUSTER_SLOTS - 1);
    }
    return redis_cluster_crc16(key, len) & (REDIS_CLUSTER_SLOTS - 1);
}

/* "host:port" or "[v6]:port" of `len` bytes into host/port; 0 or -1. */
static int parse_endpoint(const char *s, size_t len, char *host, int *port)
{
    const char *colon = NULL;
    for (size_t i = len; i-- > 0;)
        if (s[i] == ':') {
            colon = s + i;
            break;
        }
    if (colon == NULL || colon == s)
        return -1;
    const char *h = s, *hend = colon;
    if (*h == '[') {
        if (hend[-1] != ']' || hend - h < 3)
            return -1;
        h++;
        hend--;
    }
    size_t hl = (size_t)(hend - h);
    if (hl == 0 || hl >= REDIS_CLUSTER_HOST_MAX)
        return -1;
    for (size_t i = 0; i < hl; i++)
        if ((unsigned char)h[i] <= ' ' || h[i] == '[' || h[i] == ']')
            return -1;
    long p = 0;
    const char *q = colon + 1, *end = s + len;
    if (q == end)
        return -1;
    for (; q < end; q++) {
        if (*q < '0' || *q > '9' || (p = p * 10 + (*q - '0')) > 65535)
            return -1;
    }
    if (p < 1)
        return -1;
    memcpy(host, h, hl);
    host[hl] = '\0';
    *port = (int)p;
    return 0;
}

redis_cluster_redirect_kind_t redis_cluster_parse_redirect(const char *err, size_t len,
                                                           redis_cluster_redirect_t *out)
{
    redis_cluster_redirect_kind_t kind;
    size_t skip;
    if (len > 6 && memcmp(err, "MOVED ", 6) == 0) {
        kind = REDIS_CLUSTER_MOVED;
        skip = 6;
    } else if (len > 4 && memcmp(err, "ASK ", 4) == 0) {
        kind = REDIS_CLUSTER_ASK;
        skip = 4;
    } else {
        return REDIS_CLUSTER_NO_REDIRECT;
    }
    const char *p = err + skip, *end = err + len;
    unsigned slot = 0;
    if (p == end || *p < '0' || *p > '9')
        return REDIS_CLUSTER_NO_REDIRECT;
    for (; p < end && *p >= '0' && *p <= '9'; p++)
        if ((slot = slot * 10 + (unsigned)(*p - '0')) >= REDIS_CLUSTER_SLOTS)
            return REDIS_CLUSTER_NO_REDIRECT;
    if (p == end || *p != ' ')
        return REDIS_CLUSTER_NO_REDIRECT;
    p++;
    if (parse_endpoint(p, (size_t)(end - p), out->host, &out->port) != 0)
        return REDIS_CLUSTER_NO_REDIRECT;
    out->kind = kind;
    out->slot = slot;
    return kind;
}

int redis_cluster_parse_slots(const redisReply *r, const char *default_host,
                              redis_cluster_range_t *out, size_t max)
{
    size_t n = 0;
    if (r == NULL || r->type != REDIS_REPLY_ARRAY)
        return -1;
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *e = r->element[i];
        /* [start, end, [host, port, id, ...], replicas...] */
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 ||
            e->element[0]->type != REDIS_REPLY_INTEGER ||
            e->element[1]->type != REDIS_REPLY_INTEGER ||
            e->element[2]->type != REDIS_REPLY_ARRAY || e->element[2]->elements < 2)
            return -1;
        const redisReply *m = e->element[2];
        long long start = e->element[0]->integer, stop = e->element[1]->integer;
        if (start < 0 || stop < start || stop >= REDIS_CLUSTER_SLOTS ||
            m->element[0]->type != REDIS_REPLY_STRING ||
            m->element[1]->type != REDIS_REPLY_INTEGER || m->element[1]->integer < 1 ||
            m->element[1]->integer > 65535)
            return -1;
        const char *host = m->element[0]->str;
        size_t hl = m->element[0]->len;
        if (hl == 0 || (hl == 1 && host[0] == '?')) { /* unknown address: the node we asked */
            host = default_host != NULL ? default_host : "";
            hl = strlen(host);
        }
        if (hl == 0 || hl >= REDIS_CLUSTER_HOST_MAX || n == max)
            return -1;
        out[n].start = (unsigned)start;
        out[n].end = (unsigned)stop;
        memcpy(out[n].host, host, hl);
        out[n].host[hl] = '\0';
        out[n].port = (int)m->element[1]->integer;
        n++;
    }
    return (int)n;
}

typedef struct st_pair_t {
    uint16_t slot;
    size_t index;
} pair_t;

static int cmp_pair(const void *a, const void *b)
{
    const pair_t *x = a, *y = b;
    if (x->slot != y->slot)
        return x->slot < y->slot ? -1 : 1;
    return x->index < y->index ? -1 : x->index > y->index;
}

size_t redis_cluster_group_by_slot(const uint16_t *slots, size_t n, size_t *order)
{
    if (n == 0)
        return 0;
    pair_t stack[256], *p = n <= 256 ? stack : xmalloc(n * sizeof(*p));
    for (size_t i = 0; i < n; i++)
        p[i] = (pair_t){slots[i], i};
    qsort(p, n, sizeof(*p), cmp_pair);
    size_t groups = 0;
    for (size_t i = 0; i < n; i++) {
        order[i] = p[i].index;
        if (i == 0 || p[i].slot != p[i - 1].slot)
            groups++;
    }
    if (p != stack)
        free(p);
    return groups;
}

void redis_cluster_error_kind(const char *err, size_t len, char *out, size_t outlen)
{
    size_t n = 0;
    if (outlen == 0)
        return;
    while (n < len && n + 1 < outlen && err[n] != ' ' && err[n] != '\0')
        n++;
    memcpy(out, err, n);
    out[n] = '\0';
}
