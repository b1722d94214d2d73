/*
 * Sharded, byte-bounded LRU of version-labeled list pages (api/data/localcache.h).
 */
#include "api/data/localcache.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/clock.h"
#include "common/alloc.h"

#define SHARDS 16
#define INITIAL_BUCKETS 256

typedef struct st_localcache_entry_t {
    struct st_localcache_entry_t *chain;         /* next in the hash bucket */
    struct st_localcache_entry_t *newer, *older; /* LRU order; the sentinel closes the ring */
    atomic_uint refs; /* the cache's own (while linked) plus one per pin */
    bool linked;      /* in the shard (guarded by its lock) */
    uint64_t hash;
    int64_t version;
    int64_t expires_s; /* monotonic seconds */
    size_t klen, vlen;
    char data[]; /* key, then value */
} entry_t;

typedef struct st_shard_t {
    pthread_mutex_t lock;
    entry_t **buckets;
    size_t nbuckets; /* a power of two */
    size_t count;
    size_t bytes;
    uint64_t evictions;
    entry_t lru; /* sentinel: lru.older is the most recently used, lru.newer the least */
} shard_t;

static shard_t g_shards[SHARDS];
static size_t g_shard_budget; /* 0: disabled */
static int g_ttl = 300;

static uint64_t hash_key(const char *key, size_t klen)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < klen; i++) {
        h ^= (unsigned char)key[i];
        h *= 0x100000001b3ULL;
    }
    return h ^ (h >> 29);
}

static size_t entry_bytes(const entry_t *e)
{
    return sizeof(*e) + e->klen + e->vlen;
}

static shard_t *shard_of(uint64_t hash)
{
    return &g_shards[hash % SHARDS];
}

static entry_t **bucket_of(shard_t *s, uint64_t hash)
{
    return &s->buckets[(hash / SHARDS) & (s->nbuckets - 1)];
}

static void lru_unlink(entry_t *e)
{
    e->newer->older = e->older;
    e->older->newer = e->newer;
}

/* Makes `e` the most recently used. */
static void lru_push(shard_t *s, entry_t *e)
{
    e->older = s->lru.older;
    e->newer = &s->lru;
    s->lru.older->newer = e;
    s->lru.older = e;
}

/* Returns the slot pointing at the entry for `key`, or the empty slot at the chain's end. */
static entry_t **find(shard_t *s, uint64_t hash, const char *key, size_t klen)
{
    entry_t **p = bucket_of(s, hash);
    while (*p != NULL &&
           ((*p)->hash != hash || (*p)->klen != klen || memcmp((*p)->data, key, klen) != 0))
        p = &(*p)->chain;
    return p;
}

static void release(entry_t *e)
{
    if (atomic_fetch_sub_explicit(&e->refs, 1, memory_order_acq_rel) == 1)
        free(e);
}

static void drop(shard_t *s, entry_t **slot)
{
    entry_t *e = *slot;
    *slot = e->chain;
    lru_unlink(e);
    e->linked = false;
    s->count--;
    s->bytes -= entry_bytes(e);
    release(e);
}

/* The live entry for `key`, or NULL; an expired one is dropped on the way. */
static entry_t *lookup(shard_t *s, uint64_t hash, const char *key, size_t klen)
{
    entry_t **slot = find(s, hash, key, klen);
    if (*slot != NULL && (*slot)->expires_s <= clock_mono_coarse_s()) {
        drop(s, slot);
        return NULL;
    }
    return *slot;
}

static void grow(shard_t *s)
{
    size_t n = s->nbuckets * 2;
    entry_t **b = xcalloc(n, sizeof(*b));
    for (size_t i = 0; i < s->nbuckets; i++) {
        entry_t *e = s->buckets[i];
        while (e != NULL) {
            entry_t *next = e->chain;
            entry_t **head = &b[(e->hash / SHARDS) & (n - 1)];
            e->chain = *head;
            *head = e;
            e = next;
        }
    }
    free(s->buckets);
    s->buckets = b;
    s->nbuckets = n;
}

void localcache_init(size_t max_bytes, int ttl_seconds)
{
    g_shard_budget = max_bytes / SHARDS;
    g_ttl = ttl_seconds > 0 ? ttl_seconds : 300;
    if (g_shard_budget == 0)
        return;
    for (size_t i = 0; i < SHARDS; i++) {
        shard_t *s = &g_shards[i];
        *s = (shard_t){.nbuckets = INITIAL_BUCKETS}; /* counters too, after a shutdown */
        pthread_mutex_init(&s->lock, NULL);
        s->buckets = xcalloc(s->nbuckets, sizeof(*s->buckets));
        s->lru.newer = s->lru.older = &s->lru;
    }
}

void localcache_shutdown(void)
{
    for (size_t i = 0; i < SHARDS; i++) {
        shard_t *s = &g_shards[i];
        if (s->buckets == NULL)
            continue;
        while (s->lru.newer != &s->lru) {
            entry_t *e = s->lru.newer;
            drop(s, find(s, e->hash, e->data, e->klen));
        }
        free(s->buckets);
        s->buckets = NULL;
        pthread_mutex_destroy(&s->lock);
    }
    g_shard_budget = 0;
}

bool localcache_enabled(void)
{
    return g_shard_budget > 0;
}

localcache_entry_t *localcache_pin(const char *key, size_t klen)
{
    if (g_shard_budget == 0)
        return NULL;
    uint64_t hash = hash_key(key, klen);
    shard_t *s = shard_of(hash);
    pthread_mutex_lock(&s->lock);
    entry_t *e = lookup(s, hash, key, klen);
    if (e != NULL) {
        atomic_fetch_add_explicit(&e->refs, 1, memory_order_relaxed);
        lru_unlink(e);
        lru_push(s, e);
    }
    pthread_mutex_unlock(&s->lock);
    return e;
}

int64_t localcache_entry_version(const localcache_entry_t *e)
{
    return e->version;
}

const char *localcache_entry_value(const localcache_entry_t *e, size_t *len)
{
    *len = e->vlen;
    return e->data + e->klen;
}

void localcache_unpin(localcache_entry_t *e, bool outdated)
{
    if (outdated) {
        shard_t *s = shard_of(e->hash);
        pthread_mutex_lock(&s->lock);
        if (e->linked)
            drop(s, find(s, e->hash, e->data, e->klen));
        pthread_mutex_unlock(&s->lock);
    }
    release(e);
}

void localcache_put(const char *key, size_t klen, int64_t version, const char *value, size_t vlen)
{
    if (g_shard_budget == 0)
        return;
    size_t need = sizeof(entry_t) + klen + vlen;
    if (need > g_shard_budget / 4)
        return; /* one page must not flush a whole shard */
    uint64_t hash = hash_key(key, klen);
    shard_t *s = shard_of(hash);
    entry_t *e = xmalloc(need);
    atomic_init(&e->refs, 1);
    e->linked = true;
    e->hash = hash;
    e->version = version;
    e->expires_s = clock_mono_coarse_s() + g_ttl;
    e->klen = klen;
    e->vlen = vlen;
    memcpy(e->data, key, klen);
    memcpy(e->data + klen, value, vlen);

    pthread_mutex_lock(&s->lock);
    entry_t **slot = find(s, hash, key, klen);
    if (*slot != NULL)
        drop(s, slot);
    while (s->bytes + need > g_shard_budget && s->lru.newer != &s->lru) {
        entry_t *old = s->lru.newer;
        drop(s, find(s, old->hash, old->data, old->klen));
        s->evictions++;
    }
    if (s->count >= s->nbuckets)
        grow(s);
    slot = bucket_of(s, hash);
    e->chain = *slot;
    *slot = e;
    lru_push(s, e);
    s->count++;
    s->bytes += need;
    pthread_mutex_unlock(&s->lock);
}

void localcache_stats(localcache_stats_t *out)
{
    *out = (localcache_stats_t){0};
    if (g_shard_budget == 0)
        return;
    for (size_t i = 0; i < SHARDS; i++) {
        shard_t *s = &g_shards[i];
        pthread_mutex_lock(&s->lock);
        out->entries += s->count;
        out->bytes += s->bytes;
        out->evictions += s->evictions;
        pthread_mutex_unlock(&s->lock);
    }
}
