/*
 * Relay-side cache invalidation over hiredis (synchronous, short timeouts, pipelined). A queue
 * keyed by user keeps the highest sequence to apply, so an outage costs bounded memory.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <hiredis/hiredis.h>
#include "common/cache.h"
#include "common/clock.h"
#include "common/log.h"
#include "relay/inval.h"
#include "relay/metrics.h"

#define LOG_MODULE "inval"

#define QUEUE_MAX 100000
#define BACKOFF_MIN_MS 200
#define BACKOFF_MAX_MS 5000

typedef struct st_inval_item_t {
    char *user_id;
    int64_t seq;
} inval_item_t;

struct st_inval_t {
    char host[256];
    int port;
    char unix_path[256];
    char password[256];
    int db;
    int version_ttl_s;
    redisContext *rc;
    char sha[48]; /* SHA1 of cache_lua_invalidate after SCRIPT LOAD on this connection */
    inval_item_t *items;
    int n, cap;
    long long next_attempt_ms;
    int backoff_ms;
    bool down;
};

static int parse_url(inval_t *iv, const char *url, char *errbuf, size_t errlen)
{
    const char *p;
    iv->port = 6379;
    if (strncmp(url, "unix://", 7) == 0) {
        p = url + 7;
        const char *q = strchr(p, '?');
        size_t len = q != NULL ? (size_t)(q - p) : strlen(p);
        if (len == 0 || len >= sizeof(iv->unix_path) || p[0] != '/')
            goto Bad;
        memcpy(iv->unix_path, p, len);
        iv->unix_path[len] = '\0';
        if (q != NULL && strncmp(q, "?db=", 4) == 0)
            iv->db = atoi(q + 4);
        return 0;
    }
    if (strncmp(url, "redis://", 8) != 0)
        goto Bad;
    p = url + 8;
    const char *at = strchr(p, '@');
    if (at != NULL) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        const char *pw = colon != NULL ? colon + 1 : p;
        size_t len = (size_t)(at - pw);
        if (len >= sizeof(iv->password))
            goto Bad;
        memcpy(iv->password, pw, len);
        iv->password[len] = '\0';
        p = at + 1;
    }
    size_t hl = strcspn(p, ":/");
    if (hl == 0 || hl >= sizeof(iv->host))
        goto Bad;
    memcpy(iv->host, p, hl);
    iv->host[hl] = '\0';
    p += hl;
    if (*p == ':') {
        char *end;
        long port = strtol(p + 1, &end, 10);
        if (end == p + 1 || port < 1 || port > 65535)
            goto Bad;
        iv->port = (int)port;
        p = end;
    }
    if (*p == '/' && p[1] != '\0')
        iv->db = atoi(p + 1);
    return 0;
Bad:
    snprintf(errbuf, errlen, "REDIS_URL: not a redis:// or unix:// URL");
    return -1;
}

inval_t *inval_create(const char *url, int version_ttl_s, char *errbuf, size_t errlen)
{
    inval_t *iv = xcalloc(1, sizeof(*iv));
    if (parse_url(iv, url, errbuf, errlen) != 0) {
        free(iv);
        return NULL;
    }
    iv->version_ttl_s = version_ttl_s;
    iv->backoff_ms = BACKOFF_MIN_MS;
    return iv;
}

void inval_destroy(inval_t *iv)
{
    if (iv == NULL)
        return;
    if (iv->rc != NULL)
        redisFree(iv->rc);
    for (int i = 0; i < iv->n; ++i)
        free(iv->items[i].user_id);
    free(iv->items);
    free(iv);
}

void inval_add(inval_t *iv, const char *user_id, int64_t seq)
{
    /* Merging only saves work (the script keeps the highest sequence): look back a little. */
    for (int i = iv->n - 1; i >= 0 && i >= iv->n - 32; --i) {
        if (strcmp(iv->items[i].user_id, user_id) == 0) {
            if (seq > iv->items[i].seq)
                iv->items[i].seq = seq;
            return;
        }
    }
    if (iv->n >= QUEUE_MAX) {
        /* The version TTL bounds staleness anyway; forget the oldest. */
        free(iv->items[0].user_id);
        memmove(iv->items, iv->items + 1, sizeof(*iv->items) * (size_t)(iv->n - 1));
        iv->n--;
        metrics_add(METRIC_REDIS_DROPPED, 1);
    }
    if (iv->n == iv->cap) {
        iv->cap = iv->cap ? iv->cap * 2 : 256;
        iv->items = xrealloc(iv->items, sizeof(*iv->items) * (size_t)iv->cap);
    }
    iv->items[iv->n].user_id = xstrdup(user_id);
    iv->items[iv->n].seq = seq;
    iv->n++;
}

int inval_pending(const inval_t *iv)
{
    return iv->n;
}

static void outage(inval_t *iv, const char *why)
{
    if (!iv->down)
        log_warn("redis unavailable (%s): invalidations are queued and retried", why);
    iv->down = true;
    metrics_add(METRIC_REDIS_ERRORS, 1);
    metrics_set(METRIC_REDIS_UP, 0);
    if (iv->rc != NULL)
        redisFree(iv->rc);
    iv->rc = NULL;
    iv->next_attempt_ms = clock_mono_ms() + iv->backoff_ms;
    iv->backoff_ms = iv->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : iv->backoff_ms * 2;
}

static int simple(inval_t *iv, const char *fmt, const char *arg)
{
    redisReply *r = redisCommand(iv->rc, fmt, arg);
    int ok = r != NULL && r->type != REDIS_REPLY_ERROR;
    if (r != NULL)
        freeReplyObject(r);
    return ok ? 0 : -1;
}

static int connect_redis(inval_t *iv)
{
    struct timeval tv = {0, 500000};
    if (clock_mono_ms() < iv->next_attempt_ms)
        return -1;
    iv->rc = iv->unix_path[0] ? redisConnectUnixWithTimeout(iv->unix_path, tv)
                              : redisConnectWithTimeout(iv->host, iv->port, tv);
    if (iv->rc == NULL || iv->rc->err) {
        outage(iv, iv->rc != NULL ? iv->rc->errstr : "out of memory");
        return -1;
    }
    redisSetTimeout(iv->rc, tv);
    char db[16];
    snprintf(db, sizeof(db), "%d", iv->db);
    if ((iv->password[0] && simple(iv, "AUTH %s", iv->password) != 0) ||
        (iv->db != 0 && simple(iv, "SELECT %s", db) != 0)) {
        outage(iv, "AUTH/SELECT refused");
        return -1;
    }
    redisReply *r = redisCommand(iv->rc, "SCRIPT LOAD %s", cache_lua_invalidate);
    if (r == NULL || r->type != REDIS_REPLY_STRING || r->len >= sizeof(iv->sha)) {
        if (r != NULL)
            freeReplyObject(r);
        outage(iv, "SCRIPT LOAD failed");
        return -1;
    }
    memcpy(iv->sha, r->str, r->len);
    iv->sha[r->len] = '\0';
    freeReplyObject(r);
    if (iv->down)
        log_info("redis reachable again");
    iv->down = false;
    iv->backoff_ms = BACKOFF_MIN_MS;
    metrics_set(METRIC_REDIS_UP, 1);
    return 0;
}

int inval_flush(inval_t *iv)
{
    char ttl[16];
    int sent = 0;
    if (iv->n == 0)
        return 0;
    if (iv->rc == NULL && connect_redis(iv) != 0)
        return -1;
    snprintf(ttl, sizeof(ttl), "%d", iv->version_ttl_s);
    for (int i = 0; i < iv->n; ++i) {
        char kv[CACHE_KEY_MAX], kw[CACHE_KEY_MAX], kh[CACHE_KEY_MAX], seq[24];
        cache_key_version(kv, iv->items[i].user_id);
        cache_key_list(kw, iv->items[i].user_id, CACHE_LIST_WATCHLIST);
        cache_key_list(kh, iv->items[i].user_id, CACHE_LIST_HISTORY);
        snprintf(seq, sizeof(seq), "%lld", (long long)iv->items[i].seq);
        if (redisAppendCommand(iv->rc, "EVALSHA %s 3 %s %s %s %s %s", iv->sha, kv, kw, kh, seq,
                               ttl) != REDIS_OK)
            break;
        sent++;
    }
    int done = 0;
    for (int i = 0; i < sent; ++i) {
        void *reply = NULL;
        if (redisGetReply(iv->rc, &reply) != REDIS_OK || reply == NULL) {
            outage(iv, iv->rc != NULL && iv->rc->errstr[0] ? iv->rc->errstr : "i/o error");
            break;
        }
        redisReply *r = reply;
        if (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOSCRIPT", 8) == 0) {
            /* Script cache flushed: reconnect (which loads it again) and resend the rest. */
            freeReplyObject(reply);
            outage(iv, "script cache flushed");
            break;
        }
        if (r->type == REDIS_REPLY_ERROR)
            log_warn("redis invalidation refused: %s", r->str);
        freeReplyObject(reply);
        done++;
    }
    for (int i = 0; i < done; ++i)
        free(iv->items[i].user_id);
    memmove(iv->items, iv->items + done, sizeof(*iv->items) * (size_t)(iv->n - done));
    iv->n -= done;
    metrics_add(METRIC_REDIS_INVALIDATIONS, (unsigned long long)done);
    return iv->n == 0 ? 0 : -1;
}
