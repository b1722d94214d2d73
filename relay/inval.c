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
#include "common/redis_cluster.h"
#include "common/log.h"
#include "relay/inval.h"
#include "relay/metrics.h"

#define LOG_MODULE "inval"

#define QUEUE_MAX 100000
#define BACKOFF_MIN_MS 200
#define BACKOFF_MAX_MS 5000
#define MAX_NODES 64    /* cluster: distinct node addresses remembered */
#define MAX_RANGES 1024 /* cluster: slot ranges of a CLUSTER SLOTS reply */
#define MAX_ROUNDS 3    /* cluster: sends per flush (a MOVED re-reads the map, then resends) */

typedef struct st_inval_item_t {
    char *user_id;
    int64_t seq;
} inval_item_t;

/* One Redis server: the only one, or a cluster master (or seed). */
typedef struct st_node_t {
    char host[256];
    int port;
    redisContext *rc;
    char sha[48]; /* SHA1 of cache_lua_invalidate after SCRIPT LOAD on this connection */
    long long next_attempt_ms;
    int backoff_ms;
} node_t;

struct st_inval_t {
    bool cluster; /* REDIS_MODE=cluster: route each user by slot, follow MOVED/ASK */
    char unix_path[256];
    char password[256];
    int db;
    int version_ttl_s;
    node_t nodes[MAX_NODES]; /* standalone: nodes[0]; cluster: the seeds, then masters seen */
    int nnodes;
    int8_t slot_node[REDIS_CLUSTER_SLOTS]; /* cluster: node index per slot, -1 unknown */
    bool map_known;
    inval_item_t *items;
    int n, cap;
    bool down;
    char logged_kind[24]; /* the last error reply kind logged (once per kind per outage) */
};

static int parse_url(inval_t *iv, node_t *node, const char *url, char *errbuf, size_t errlen)
{
    const char *p;
    node->port = 6379;
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
    if (hl == 0 || hl >= sizeof(node->host))
        goto Bad;
    memcpy(node->host, p, hl);
    node->host[hl] = '\0';
    p += hl;
    if (*p == ':') {
        char *end;
        long port = strtol(p + 1, &end, 10);
        if (end == p + 1 || port < 1 || port > 65535)
            goto Bad;
        node->port = (int)port;
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
    const char *p = url;
    /* a comma list names the seeds of a cluster (REDIS_MODE=cluster) */
    for (;;) {
        size_t len = strcspn(p, ",");
        char *one = xstrndup(p, len);
        int ret = iv->nnodes < MAX_NODES
                      ? parse_url(iv, &iv->nodes[iv->nnodes], one, errbuf, errlen)
                      : -1;
        free(one);
        if (ret != 0) {
            if (iv->nnodes == MAX_NODES)
                snprintf(errbuf, errlen, "REDIS_URL: more than %d seed nodes", MAX_NODES);
            free(iv);
            return NULL;
        }
        iv->nodes[iv->nnodes].backoff_ms = BACKOFF_MIN_MS;
        iv->nnodes++;
        p += len;
        if (*p == '\0')
            break;
        p++;
    }
    iv->cluster = iv->nnodes > 1;
    memset(iv->slot_node, -1, sizeof(iv->slot_node));
    iv->version_ttl_s = version_ttl_s;
    return iv;
}

int inval_set_cluster(inval_t *iv, bool cluster, char *errbuf, size_t errlen)
{
    if (cluster && (iv->unix_path[0] != '\0' || iv->db != 0)) {
        snprintf(errbuf, errlen,
                 "REDIS_URL: cluster mode takes redis://host:port seeds with database 0");
        return -1;
    }
    if (!cluster && iv->nnodes > 1) {
        snprintf(errbuf, errlen, "REDIS_URL: a list of nodes needs REDIS_MODE=cluster");
        return -1;
    }
    iv->cluster = cluster;
    return 0;
}

void inval_destroy(inval_t *iv)
{
    if (iv == NULL)
        return;
    for (int i = 0; i < iv->nnodes; ++i)
        if (iv->nodes[i].rc != NULL)
            redisFree(iv->nodes[i].rc);
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

/* A connection failed: drop it and back off. The first failure of an outage is logged. */
static void outage(inval_t *iv, node_t *node, const char *why)
{
    if (!iv->down)
        log_warn("redis unavailable at %s:%d (%s): invalidations are queued and retried",
                 iv->unix_path[0] ? iv->unix_path : node->host, iv->unix_path[0] ? 0 : node->port,
                 why);
    iv->down = true;
    metrics_add(METRIC_REDIS_ERRORS, 1);
    metrics_set(METRIC_REDIS_UP, 0);
    if (node->rc != NULL)
        redisFree(node->rc);
    node->rc = NULL;
    node->next_attempt_ms = clock_mono_ms() + node->backoff_ms;
    node->backoff_ms =
        node->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : node->backoff_ms * 2;
}

/* An error reply other than a redirection: counted, logged once per kind per outage. */
static void error_reply(inval_t *iv, const char *str, size_t len)
{
    char kind[24];
    redis_cluster_error_kind(str, len, kind, sizeof(kind));
    metrics_add(METRIC_REDIS_ERRORS, 1);
    if (strcmp(kind, iv->logged_kind) == 0)
        return;
    memcpy(iv->logged_kind, kind, sizeof(kind));
    log_warn("redis error on invalidation: %.*s (each kind logged once per outage)",
             (int)(len < 200 ? len : 200), str);
}

static int simple(node_t *node, const char *fmt, const char *arg)
{
    redisReply *r = redisCommand(node->rc, fmt, arg);
    int ok = r != NULL && r->type != REDIS_REPLY_ERROR;
    if (r != NULL)
        freeReplyObject(r);
    return ok ? 0 : -1;
}

static int connect_node(inval_t *iv, node_t *node)
{
    struct timeval tv = {0, 500000};
    if (node->rc != NULL)
        return 0;
    if (clock_mono_ms() < node->next_attempt_ms)
        return -1;
    node->rc = iv->unix_path[0] ? redisConnectUnixWithTimeout(iv->unix_path, tv)
                                : redisConnectWithTimeout(node->host, node->port, tv);
    if (node->rc == NULL || node->rc->err) {
        outage(iv, node, node->rc != NULL ? node->rc->errstr : "out of memory");
        return -1;
    }
    redisSetTimeout(node->rc, tv);
    char db[16];
    snprintf(db, sizeof(db), "%d", iv->db);
    if ((iv->password[0] && simple(node, "AUTH %s", iv->password) != 0) ||
        (iv->db != 0 && simple(node, "SELECT %s", db) != 0)) {
        outage(iv, node, "AUTH/SELECT refused");
        return -1;
    }
    redisReply *r = redisCommand(node->rc, "SCRIPT LOAD %s", cache_lua_invalidate);
    if (r == NULL || r->type != REDIS_REPLY_STRING || r->len >= sizeof(node->sha)) {
        if (r != NULL)
            freeReplyObject(r);
        outage(iv, node, "SCRIPT LOAD failed");
        return -1;
    }
    memcpy(node->sha, r->str, r->len);
    node->sha[r->len] = '\0';
    freeReplyObject(r);
    node->backoff_ms = BACKOFF_MIN_MS;
    return 0;
}

/* The node at host:port, added when new; -1 when the table is full. */
static int node_index(inval_t *iv, const char *host, int port)
{
    for (int i = 0; i < iv->nnodes; i++)
        if (iv->nodes[i].port == port && strcmp(iv->nodes[i].host, host) == 0)
            return i;
    if (iv->nnodes == MAX_NODES || strlen(host) >= sizeof(iv->nodes[0].host))
        return -1;
    node_t *n = &iv->nodes[iv->nnodes];
    memset(n, 0, sizeof(*n));
    snprintf(n->host, sizeof(n->host), "%s", host);
    n->port = port;
    n->backoff_ms = BACKOFF_MIN_MS;
    return iv->nnodes++;
}

/* Reads the slot map (CLUSTER SLOTS) from the first node that answers. */
static int refresh_map(inval_t *iv)
{
    redis_cluster_range_t *ranges = xmalloc(sizeof(*ranges) * MAX_RANGES);
    int ret = -1;
    for (int i = 0; i < iv->nnodes && ret != 0; i++) {
        node_t *node = &iv->nodes[i];
        if (connect_node(iv, node) != 0)
            continue;
        redisReply *r = redisCommand(node->rc, "CLUSTER SLOTS");
        if (r == NULL) {
            outage(iv, node, node->rc->errstr[0] ? node->rc->errstr : "i/o error");
            continue;
        }
        int nr = redis_cluster_parse_slots(r, node->host, ranges, MAX_RANGES);
        if (nr < 0)
            error_reply(iv, r->type == REDIS_REPLY_ERROR ? r->str : "BADSLOTMAP",
                        r->type == REDIS_REPLY_ERROR ? r->len : 10);
        freeReplyObject(r);
        if (nr <= 0)
            continue;
        memset(iv->slot_node, -1, sizeof(iv->slot_node));
        for (int k = 0; k < nr; k++) {
            int idx = node_index(iv, ranges[k].host, ranges[k].port);
            if (idx >= 0)
                memset(iv->slot_node + ranges[k].start, idx, ranges[k].end - ranges[k].start + 1);
        }
        iv->map_known = true;
        ret = 0;
    }
    free(ranges);
    return ret;
}

static void item_args(const inval_t *iv, const inval_item_t *it, char kv[CACHE_KEY_MAX],
                      char kw[CACHE_KEY_MAX], char kh[CACHE_KEY_MAX], char seq[24])
{
    cache_key_version(kv, it->user_id);
    cache_key_list(kw, it->user_id, CACHE_LIST_WATCHLIST);
    cache_key_list(kh, it->user_id, CACHE_LIST_HISTORY);
    snprintf(seq, 24, "%lld", (long long)it->seq);
}

/* ASK: one invalidation to the importing node, behind ASKING. True when it was applied. */
static bool send_asking(inval_t *iv, const inval_item_t *it, const char *host, int port,
                        const char *ttl)
{
    int idx = node_index(iv, host, port);
    if (idx < 0 || connect_node(iv, &iv->nodes[idx]) != 0)
        return false;
    node_t *node = &iv->nodes[idx];
    char kv[CACHE_KEY_MAX], kw[CACHE_KEY_MAX], kh[CACHE_KEY_MAX], seq[24];
    item_args(iv, it, kv, kw, kh, seq);
    redisAppendCommand(node->rc, "ASKING");
    redisAppendCommand(node->rc, "EVALSHA %s 3 %s %s %s %s %s", node->sha, kv, kw, kh, seq, ttl);
    void *a = NULL, *b = NULL;
    if (redisGetReply(node->rc, &a) != REDIS_OK || redisGetReply(node->rc, &b) != REDIS_OK) {
        if (a != NULL)
            freeReplyObject(a);
        outage(iv, node, node->rc->errstr[0] ? node->rc->errstr : "i/o error");
        return false;
    }
    bool ok = ((redisReply *)b)->type != REDIS_REPLY_ERROR;
    if (!ok)
        error_reply(iv, ((redisReply *)b)->str, ((redisReply *)b)->len);
    freeReplyObject(a);
    freeReplyObject(b);
    return ok;
}

/*
 * Sends the items of node `k` (those with where[i] == k), pipelined, and marks in `done` what
 * Redis applied (or refused for good). Sets *moved when a MOVED says the map is stale.
 */
static void flush_node(inval_t *iv, int k, const int *where, bool *done, bool *moved,
                       const char *ttl)
{
    node_t *node = &iv->nodes[k];
    int sent = 0;
    if (connect_node(iv, node) != 0)
        return;
    int *sent_idx = xmalloc(sizeof(*sent_idx) * (size_t)iv->n);
    for (int i = 0; i < iv->n; ++i) {
        if (done[i] || where[i] != k)
            continue;
        char kv[CACHE_KEY_MAX], kw[CACHE_KEY_MAX], kh[CACHE_KEY_MAX], seq[24];
        item_args(iv, &iv->items[i], kv, kw, kh, seq);
        if (redisAppendCommand(node->rc, "EVALSHA %s 3 %s %s %s %s %s", node->sha, kv, kw, kh, seq,
                               ttl) != REDIS_OK)
            break;
        sent_idx[sent++] = i;
    }
    for (int j = 0; j < sent; ++j) {
        void *reply = NULL;
        if (redisGetReply(node->rc, &reply) != REDIS_OK || reply == NULL) {
            outage(iv, node,
                   node->rc != NULL && node->rc->errstr[0] ? node->rc->errstr : "i/o error");
            break;
        }
        redisReply *r = reply;
        int i = sent_idx[j];
        redis_cluster_redirect_t rd;
        if (r->type != REDIS_REPLY_ERROR) {
            done[i] = true;
        } else if (iv->cluster &&
                   redis_cluster_parse_redirect(r->str, r->len, &rd) == REDIS_CLUSTER_MOVED) {
            int idx = node_index(iv, rd.host, rd.port);
            if (idx >= 0)
                iv->slot_node[rd.slot] = (int8_t)idx;
            *moved = true;
        } else if (iv->cluster &&
                   redis_cluster_parse_redirect(r->str, r->len, &rd) == REDIS_CLUSTER_ASK) {
            done[i] = send_asking(iv, &iv->items[i], rd.host, rd.port, ttl);
        } else if (strncmp(r->str, "NOSCRIPT", 8) == 0) {
            /* script cache flushed: reconnect (which loads it again) and resend the rest */
            freeReplyObject(reply);
            for (int rest = j + 1; rest < sent; ++rest) {
                void *skip = NULL;
                if (redisGetReply(node->rc, &skip) != REDIS_OK)
                    break;
                freeReplyObject(skip);
            }
            redisFree(node->rc);
            node->rc = NULL;
            break;
        } else if (strncmp(r->str, "CLUSTERDOWN", 11) == 0 || strncmp(r->str, "TRYAGAIN", 8) == 0 ||
                   strncmp(r->str, "LOADING", 7) == 0 || strncmp(r->str, "MASTERDOWN", 10) == 0) {
            error_reply(iv, r->str, r->len); /* passing: kept and retried */
            *moved = iv->cluster;
        } else {
            error_reply(iv, r->str, r->len);
            done[i] = true; /* refused for good: retrying would not help */
        }
        freeReplyObject(reply);
    }
    free(sent_idx);
}

int inval_flush(inval_t *iv)
{
    char ttl[16];
    if (iv->n == 0)
        return 0;
    snprintf(ttl, sizeof(ttl), "%d", iv->version_ttl_s);
    bool *done = xcalloc((size_t)iv->n, sizeof(*done));
    int *where = xmalloc(sizeof(*where) * (size_t)iv->n);
    for (int round = 0; round < (iv->cluster ? MAX_ROUNDS : 1); round++) {
        bool moved = false;
        if (iv->cluster && !iv->map_known && refresh_map(iv) != 0)
            break;
        for (int i = 0; i < iv->n; ++i) {
            where[i] = 0;
            if (iv->cluster) {
                char kv[CACHE_KEY_MAX];
                cache_key_version(kv, iv->items[i].user_id);
                where[i] = iv->slot_node[redis_cluster_key_slot(kv, strlen(kv))];
                if (where[i] < 0)
                    moved = true; /* a slot without a master: read the map again */
            }
        }
        for (int k = 0; k < iv->nnodes; ++k)
            flush_node(iv, k, where, done, &moved, ttl);
        if (!moved)
            break;
        iv->map_known = false; /* a MOVED, or a slot without a master */
    }
    int kept = 0, ndone = 0;
    for (int i = 0; i < iv->n; ++i) {
        if (done[i]) {
            free(iv->items[i].user_id);
            ndone++;
        } else {
            iv->items[kept++] = iv->items[i];
        }
    }
    iv->n = kept;
    free(done);
    free(where);
    metrics_add(METRIC_REDIS_INVALIDATIONS, (unsigned long long)ndone);
    if (iv->n == 0) {
        if (iv->down)
            log_info("redis reachable again; queued invalidations applied");
        iv->down = false;
        iv->logged_kind[0] = '\0';
        metrics_set(METRIC_REDIS_UP, 1);
        return 0;
    }
    return -1;
}
