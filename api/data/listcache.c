/*
 * Read-through list cache over the redis client: the user's version and an HGET on the way in
 * (only the version when this process holds a copy of the page, api/data/localcache.h),
 * version-checked fill script on a miss, invalidate script after writes, and a replay queue for
 * invalidations that could not reach Redis.
 */
#include "api/data/listcache.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/data/localcache.h"
#include "common/clock.h"
#include "common/alloc.h"
#include "common/buf.h"
#include "common/log.h"
#include "common/redis_cluster.h"

#define LOG_MODULE "listcache"

#define REPLAY_MAX 4096
#define LOCAL_KEY_MAX (CACHE_KEY_MAX + 1 + LISTCACHE_FIELD_MAX)

/*
 * Version probes (gets of pages held locally) collected during one loop iteration leave as
 * one MGET at its end (the redis client's flush hook), in the same write as the limiter's
 * script and any other command.
 */
#define MAX_PROBES_PER_CALL 256

struct st_listcache_t {
    redis_client_t *redis;
    listcache_stats_t stats;
    struct st_get_t *probes; /* collected this iteration, newest first */
    size_t nprobes;
#ifdef PROFILE_TEST_HOOKS
    unsigned fill_delay_ms;
    h2o_loop_t *loop; /* kept: the client may be destroyed first */
    h2o_timeout_t fill_delay;
#endif
};

typedef struct st_get_t {
    struct st_get_t *next; /* collected probes */
    listcache_t *lc;
    listcache_get_cb_t cb;
    void *ud;
    int64_t version;             /* the user's version read just before the HGET, or -1 */
    localcache_entry_t *pinned;  /* a probe: the local copy awaiting the version check */
    const char *field, *user_id; /* in local_key */
    size_t klen;
    char local_key[]; /* the local copy's name (klen bytes), NUL, then the user id */
} get_t;

typedef struct st_inval_t {
    listcache_t *lc;
    listcache_done_cb_t cb;
    void *ud;
    int64_t seq;
    bool replay; /* a replay of a queued entry (which is marked as in flight) */
    char user_id[];
} inval_t;

/* A user whose invalidation did not reach Redis: that user's pages are neither read from nor
 * written to the cache until an invalidation up to `seq` is confirmed. */
typedef struct st_replay_entry_t {
    char *user_id;
    int64_t seq;
    bool sending;        /* a replay is in flight */
    int64_t next_try_ms; /* after a failed replay: not before */
} replay_entry_t;

static void send_probes(void *data);

static int g_ttl = 300;
static redis_script_t g_fill_script, g_inval_script;
#ifdef PROFILE_TEST_HOOKS
static unsigned g_fill_delay_ms;
#endif

/* Users whose invalidation did not reach Redis (queued or being replayed), process-wide. */
static pthread_mutex_t g_replay_lock = PTHREAD_MUTEX_INITIALIZER;
static replay_entry_t g_replay[REPLAY_MAX];
static size_t g_replay_len;
static atomic_uint g_queued;                  /* g_replay_len, readable without the lock */
static atomic_int_fast64_t g_bypass_until_ms; /* after an overflow of the queue: every user */

#define REPLAY_RETRY_MS 200 /* a replay that failed waits this long before the next */

/* The entry of `user_id`, or g_replay_len. Under g_replay_lock. */
static size_t replay_find(const char *user_id)
{
    size_t i;
    for (i = 0; i < g_replay_len; i++)
        if (strcmp(g_replay[i].user_id, user_id) == 0)
            break;
    return i;
}

/* Whether `user_id`'s cache must be bypassed: its invalidation awaits replay (or the queue
 * overflowed). Other users are not affected by one user's pending invalidation. */
static bool bypassing(const char *user_id)
{
    int_fast64_t until = atomic_load_explicit(&g_bypass_until_ms, memory_order_relaxed);
    if (until != 0 && clock_mono_ms() < until)
        return true;
    if (atomic_load_explicit(&g_queued, memory_order_relaxed) == 0)
        return false;
    pthread_mutex_lock(&g_replay_lock);
    bool pending = replay_find(user_id) < g_replay_len;
    pthread_mutex_unlock(&g_replay_lock);
    return pending;
}

/* Remembers that `user_id` must still be invalidated up to `seq`; `sent` is true when this
 * was a replay that failed (its entry is no longer in flight). */
static void replay_push(const char *user_id, int64_t seq, bool sent)
{
    pthread_mutex_lock(&g_replay_lock);
    size_t i = replay_find(user_id);
    if (i < g_replay_len) {
        if (seq > g_replay[i].seq)
            g_replay[i].seq = seq;
        if (sent) {
            g_replay[i].sending = false;
            g_replay[i].next_try_ms = clock_mono_ms() + REPLAY_RETRY_MS;
        }
    } else if (g_replay_len < REPLAY_MAX) {
        g_replay[g_replay_len] = (replay_entry_t){.user_id = xstrdup(user_id), .seq = seq};
        g_replay_len++;
        if (atomic_fetch_add(&g_queued, 1) == 0)
            log_warn("cache invalidation could not reach Redis; the users concerned bypass the "
                     "cache until it is replayed");
    } else {
        /* Too many to remember: every entry filled before now is gone after one TTL. */
        int64_t until = clock_mono_ms() + (int64_t)g_ttl * 1000;
        if (atomic_exchange(&g_bypass_until_ms, until) == 0)
            log_warn("cache invalidation replay queue full; bypassing the cache for %d s", g_ttl);
    }
    pthread_mutex_unlock(&g_replay_lock);
}

/* Redis confirmed `user_id`'s invalidation up to `seq`: its entry goes unless a newer write
 * is still owed. */
static void replay_done(const char *user_id, int64_t seq, bool sent)
{
    if (atomic_load_explicit(&g_queued, memory_order_relaxed) == 0)
        return;
    pthread_mutex_lock(&g_replay_lock);
    size_t i = replay_find(user_id);
    if (i < g_replay_len) {
        if (g_replay[i].seq <= seq) {
            free(g_replay[i].user_id);
            g_replay[i] = g_replay[--g_replay_len];
            if (atomic_fetch_sub(&g_queued, 1) == 1)
                log_info("cache invalidations replayed; caching resumes for every user");
        } else if (sent) {
            g_replay[i].sending = false;
        }
    }
    pthread_mutex_unlock(&g_replay_lock);
}

static void on_inval_reply(const redisReply *r, void *p)
{
    inval_t *iv = p;
    listcache_t *lc = iv->lc;
    bool ok = r != NULL && r->type == REDIS_REPLY_INTEGER && r->integer == 1;
    if (ok) {
        lc->stats.invalidations++;
        replay_done(iv->user_id, iv->seq, iv->replay);
    } else {
        lc->stats.errors++;
        lc->stats.invalidation_failures++;
        /* an error reply was logged (once per kind) and counted by the redis client */
        if (r != NULL && r->type == REDIS_REPLY_ERROR)
            log_debug("cache invalidate script error: %s", r->str);
        replay_push(iv->user_id, iv->seq, iv->replay);
    }
    if (iv->cb != NULL)
        iv->cb(ok, iv->ud);
    free(iv);
}

static void send_invalidate(listcache_t *lc, const char *user_id, int64_t seq, bool replay,
                            listcache_done_cb_t cb, void *ud)
{
    size_t len = strlen(user_id);
    inval_t *iv = xmalloc(sizeof(*iv) + len + 1);
    *iv = (inval_t){.lc = lc, .cb = cb, .ud = ud, .seq = seq, .replay = replay};
    memcpy(iv->user_id, user_id, len + 1);
    char kv[CACHE_KEY_MAX], kw[CACHE_KEY_MAX], kh[CACHE_KEY_MAX], s[24], ttl[16];
    cache_key_version(kv, user_id);
    cache_key_list(kw, user_id, CACHE_LIST_WATCHLIST);
    cache_key_list(kh, user_id, CACHE_LIST_HISTORY);
    snprintf(s, sizeof(s), "%lld", (long long)seq);
    snprintf(ttl, sizeof(ttl), "%d", CACHE_VERSION_TTL_SECONDS);
    const char *argv[] = {kv, kw, kh, s, ttl};
    redis_client_eval(lc->redis, &g_inval_script, 3, 5, argv, NULL, on_inval_reply, iv);
}

/* Whether a command about `user_id` would be sent now: in cluster mode, the master of the
 * user's slot is up (others may be down). */
static bool up_for(listcache_t *lc, const char *user_id)
{
    if (!redis_client_is_cluster(lc->redis))
        return redis_client_is_up(lc->redis);
    char kv[CACHE_KEY_MAX];
    cache_key_version(kv, user_id);
    return redis_client_is_up_for(lc->redis, kv);
}

/* Sends queued invalidations whose Redis node is back (whichever thread gets here first). */
static void drain(listcache_t *lc)
{
    if (atomic_load_explicit(&g_queued, memory_order_relaxed) == 0)
        return;
    struct {
        char *user_id;
        int64_t seq;
    } batch[64];
    size_t n = 0;
    int64_t now = clock_mono_ms();
    pthread_mutex_lock(&g_replay_lock);
    for (size_t i = 0; i < g_replay_len && n < 64; i++) {
        replay_entry_t *e = &g_replay[i];
        if (e->sending || e->next_try_ms > now || !up_for(lc, e->user_id))
            continue;
        e->sending = true;
        batch[n].user_id = xstrdup(e->user_id);
        batch[n].seq = e->seq;
        n++;
    }
    pthread_mutex_unlock(&g_replay_lock);
    for (size_t i = 0; i < n; i++) {
        send_invalidate(lc, batch[i].user_id, batch[i].seq, true, NULL, NULL);
        free(batch[i].user_id);
    }
}

/* ---------- public ---------- */

void listcache_global_init(int ttl_seconds, size_t local_bytes)
{
    g_ttl = ttl_seconds > 0 ? ttl_seconds : 300;
    localcache_init(local_bytes, g_ttl);
    redis_script_init(&g_fill_script, cache_lua_fill);
    redis_script_init(&g_inval_script, cache_lua_invalidate);
}

void listcache_global_dispose(void)
{
    localcache_shutdown();
}

int listcache_set_fill_delay_ms(unsigned ms)
{
#ifdef PROFILE_TEST_HOOKS
    g_fill_delay_ms = ms;
    if (ms > 0)
        log_warn("TEST HOOK: cache fills are delayed by %u ms", ms);
    return 0;
#else
    (void)ms;
    return -1;
#endif
}

listcache_t *listcache_create(redis_client_t *redis)
{
    listcache_t *lc = xcalloc(1, sizeof(*lc));
    lc->redis = redis;
    redis_client_add_flush_hook(redis, send_probes, lc);
#ifdef PROFILE_TEST_HOOKS
    lc->fill_delay_ms = g_fill_delay_ms;
    lc->loop = redis_client_loop(redis);
    if (lc->fill_delay_ms > 0)
        h2o_timeout_init(lc->loop, &lc->fill_delay, lc->fill_delay_ms);
#endif
    return lc;
}

#ifdef PROFILE_TEST_HOOKS
typedef struct st_delayed_fill_t {
    h2o_timeout_entry_t entry;
    listcache_t *lc;
    cache_list_t list;
    int64_t version;
    size_t len;
    char *user_id, *field, *value;
} delayed_fill_t;
#endif

void listcache_destroy(listcache_t *lc)
{
    if (lc == NULL)
        return;
    while (lc->probes != NULL) { /* never sent: misses, like commands the client dropped */
        get_t *g = lc->probes;
        lc->probes = g->next;
        localcache_unpin(g->pinned, false);
        lc->stats.misses++;
        g->cb(NULL, 0, g->ud);
        free(g);
    }
#ifdef PROFILE_TEST_HOOKS
    if (lc->fill_delay_ms > 0) {
        while (!h2o_linklist_is_empty(&lc->fill_delay._entries)) {
            delayed_fill_t *d =
                H2O_STRUCT_FROM_MEMBER(delayed_fill_t, entry._link, lc->fill_delay._entries.next);
            h2o_timeout_unlink(&d->entry);
            free(d);
        }
        h2o_timeout_dispose(lc->loop, &lc->fill_delay);
    }
#endif
    free(lc);
}

const listcache_stats_t *listcache_stats(const listcache_t *lc)
{
    return &lc->stats;
}

unsigned listcache_pending_invalidations(void)
{
    return atomic_load(&g_queued);
}

size_t listcache_field(char *out, size_t outlen, int limit, const char *view, const char *cursor)
{
    char mem[LISTCACHE_FIELD_MAX]; /* on every cached read: no snprintf */
    strbuf_t b;
    strbuf_init_fixed(&b, mem, sizeof(mem));
    strbuf_append(&b, "l=", 2);
    strbuf_append_i64(&b, limit);
    strbuf_append(&b, "|v=", 3);
    strbuf_append_str(&b, view != NULL ? view : "");
    strbuf_append(&b, "|c=", 3);
    strbuf_append_str(&b, cursor != NULL ? cursor : "");
    size_t n = b.len < outlen ? b.len : 0; /* 0: does not fit */
    if (outlen > 0) {
        memcpy(out, b.data, n);
        out[n] = '\0';
    }
    strbuf_dispose(&b);
    return n;
}

/* Writes the name of a page's local copy, "<list key>\0<field>"; returns its length, 0 when
 * the field is too long to keep. */
static size_t local_key(char *out, const char *user_id, cache_list_t list, const char *field)
{
    cache_key_list(out, user_id, list);
    size_t kl = strlen(out), fl = strlen(field);
    if (fl >= LISTCACHE_FIELD_MAX)
        return 0;
    memcpy(out + kl + 1, field, fl + 1);
    return kl + 1 + fl;
}

/* The version key's value, or -1 when it is absent or not a number. */
static int64_t version_of(const redisReply *r)
{
    if (r == NULL || r->type != REDIS_REPLY_STRING || r->len == 0 || r->len > 20)
        return -1;
    char buf[24], *end;
    memcpy(buf, r->str, r->len);
    buf[r->len] = '\0';
    errno = 0;
    long long v = strtoll(buf, &end, 10);
    return errno == 0 && *end == '\0' && v >= 0 ? (int64_t)v : -1;
}

static void on_get_reply(const redisReply *r, void *p)
{
    get_t *g = p;
    listcache_t *lc = g->lc;
    if (r != NULL && r->type == REDIS_REPLY_STRING) {
        lc->stats.hits++;
        /* every field of the hash is at the version read just before, or newer (the fill
         * script keeps them at the version key's value, which only grows): labelled with the
         * older one, a newer page is never served from the copy, an older one cannot exist */
        if (g->version >= 0)
            localcache_put(g->local_key, g->klen, g->version, r->str, r->len);
        g->cb(r->str, r->len, g->ud);
    } else {
        if (r == NULL || r->type != REDIS_REPLY_NIL)
            lc->stats.errors++;
        lc->stats.misses++;
        g->cb(NULL, 0, g->ud);
    }
    free(g);
}

static void on_version_reply(const redisReply *r, void *p)
{
    get_t *g = p;
    g->version = version_of(r);
}

/* Reads the user's version, then the page: the HGET's reply completes the get. */
static void send_fetch(get_t *g)
{
    char kv[CACHE_KEY_MAX];
    cache_key_version(kv, g->user_id);
    const char *vargv[] = {"GET", kv};
    const char *hargv[] = {"HGET", g->local_key, g->field};
    redis_client_command(g->lc->redis, on_version_reply, g, 2, vargv, NULL);
    redis_client_command(g->lc->redis, on_get_reply, g, 3, hargv, NULL);
}

/* The version alone, for a page this process holds: served from the copy when it matches.
 * `r` is the version key's value; `failed` when the MGET got no reply at all. */
static void probe_done(get_t *g, const redisReply *r, bool failed)
{
    listcache_t *lc = g->lc;
    localcache_entry_t *e = g->pinned;
    int64_t version = version_of(r), have = localcache_entry_version(e);

    g->pinned = NULL;
    if (version >= 0 && version == have) {
        size_t len;
        const char *value = localcache_entry_value(e, &len);
        lc->stats.hits++;
        lc->stats.local_hits++;
        g->cb(value, len, g->ud);
        localcache_unpin(e, false);
        free(g);
        return;
    }
    localcache_unpin(e, version > have);
    if (failed) { /* no second try */
        lc->stats.errors++;
        lc->stats.misses++;
        g->cb(NULL, 0, g->ud);
        free(g);
        return;
    }
    send_fetch(g); /* the user wrote since: maybe another process filled the new version */
}

typedef struct st_probe_call_t {
    size_t n;
    get_t *gets[]; /* in MGET key order */
} probe_call_t;

static void on_probes_reply(const redisReply *r, void *p)
{
    probe_call_t *call = p;
    bool array = r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements == call->n;
    if (r != NULL && !array)
        call->gets[0]->lc->stats.errors++;
    for (size_t i = 0; i < call->n; i++)
        probe_done(call->gets[i], array ? r->element[i] : NULL, r == NULL);
    free(call);
}

/* Flush hook: the iteration's probes, as MGETs of the users' version keys; in cluster mode one
 * MGET per slot (an MGET never spans two slots), all pipelined. */
static void send_probes(void *data)
{
    listcache_t *lc = data;
    while (lc->probes != NULL) {
        size_t n = lc->nprobes < MAX_PROBES_PER_CALL ? lc->nprobes : MAX_PROBES_PER_CALL;
        get_t *gets[MAX_PROBES_PER_CALL];
        char keys[MAX_PROBES_PER_CALL][CACHE_KEY_MAX];
        uint16_t slots[MAX_PROBES_PER_CALL];
        size_t order[MAX_PROBES_PER_CALL];
        for (size_t i = n; i-- > 0;) { /* oldest first */
            get_t *g = lc->probes;
            lc->probes = g->next;
            gets[i] = g;
        }
        lc->nprobes -= n;
        for (size_t i = 0; i < n; i++) {
            cache_key_version(keys[i], gets[i]->user_id);
            slots[i] = (uint16_t)redis_client_key_slot(lc->redis, keys[i]);
        }
        redis_cluster_group_by_slot(slots, n, order);
        for (size_t i = 0, end; i < n; i = end) {
            for (end = i + 1; end < n && slots[order[end]] == slots[order[i]]; end++)
                ;
            probe_call_t *call = xmalloc(sizeof(*call) + (end - i) * sizeof(call->gets[0]));
            const char *argv[1 + MAX_PROBES_PER_CALL];
            argv[0] = "MGET";
            call->n = end - i;
            for (size_t k = i; k < end; k++) {
                call->gets[k - i] = gets[order[k]];
                argv[1 + k - i] = keys[order[k]];
            }
            redis_client_command(lc->redis, on_probes_reply, call, (int)(end - i + 1), argv, NULL);
        }
    }
}

listcache_status_t listcache_get(listcache_t *lc, const char *user_id, cache_list_t list,
                                 const char *field, listcache_get_cb_t cb, void *ud)
{
    drain(lc);
    if (bypassing(user_id)) {
        lc->stats.bypassed++;
        lc->stats.misses++;
        return LISTCACHE_DONE;
    }
    if (!up_for(lc, user_id)) {
        lc->stats.errors++;
        lc->stats.misses++;
        return LISTCACHE_DONE;
    }
    char name[LOCAL_KEY_MAX];
    size_t klen = local_key(name, user_id, list, field), ul = strlen(user_id);
    if (klen == 0) { /* longer than any listcache_field() result */
        lc->stats.misses++;
        return LISTCACHE_DONE;
    }
    /* small: many are in flight at once, and the allocator keeps small blocks at hand */
    get_t *g = xmalloc(sizeof(*g) + klen + 1 + ul + 1);
    *g = (get_t){.lc = lc, .cb = cb, .ud = ud, .version = -1, .klen = klen};
    memcpy(g->local_key, name, klen);
    g->local_key[klen] = '\0';
    memcpy(g->local_key + klen + 1, user_id, ul + 1);
    g->field = g->local_key + strlen(g->local_key) + 1;
    g->user_id = g->local_key + klen + 1;
    if ((g->pinned = localcache_pin(g->local_key, g->klen)) != NULL) {
        g->next = lc->probes;
        lc->probes = g;
        lc->nprobes++;
        redis_client_want_flush(lc->redis);
    } else {
        send_fetch(g);
    }
    return LISTCACHE_PENDING;
}

static void on_fill_reply(const redisReply *r, void *p)
{
    listcache_t *lc = p;
    if (r != NULL && r->type == REDIS_REPLY_INTEGER && r->integer == 1) {
        lc->stats.fills++;
    } else if (r != NULL && r->type == REDIS_REPLY_INTEGER && r->integer == 0) {
        lc->stats.fill_rejections++;
        log_debug("stale cache fill refused");
    } else {
        lc->stats.errors++;
        /* an error reply was logged (once per kind) and counted by the redis client */
        if (r != NULL && r->type == REDIS_REPLY_ERROR)
            log_debug("cache fill script error: %s", r->str);
    }
}

static void do_fill(listcache_t *lc, const char *user_id, cache_list_t list, const char *field,
                    const char *value, size_t len, int64_t version)
{
    if (bypassing(user_id)) {
        lc->stats.bypassed++;
        return;
    }
    if (!up_for(lc, user_id)) {
        lc->stats.errors++;
        return;
    }
    char kv[CACHE_KEY_MAX], kl[CACHE_KEY_MAX], ver[24], ttl[16];
    cache_key_version(kv, user_id);
    cache_key_list(kl, user_id, list);
    snprintf(ver, sizeof(ver), "%lld", (long long)version);
    snprintf(ttl, sizeof(ttl), "%d", g_ttl);
    const char *argv[] = {kv, kl, ver, field, value, ttl};
    size_t lens[] = {strlen(kv), strlen(kl), strlen(ver), strlen(field), len, strlen(ttl)};
    /* `lc` as ud: a fill never outlives its thread's cache (destroyed after the client) */
    redis_client_eval(lc->redis, &g_fill_script, 2, 6, argv, lens, on_fill_reply, lc);
}

#ifdef PROFILE_TEST_HOOKS
static void on_fill_delay(h2o_timeout_entry_t *entry)
{
    delayed_fill_t *d = H2O_STRUCT_FROM_MEMBER(delayed_fill_t, entry, entry);
    do_fill(d->lc, d->user_id, d->list, d->field, d->value, d->len, d->version);
    free(d);
}
#endif

void listcache_fill(listcache_t *lc, const char *user_id, cache_list_t list, const char *field,
                    const char *value, size_t len, int64_t version)
{
    drain(lc);
    if (localcache_enabled()) {
        /* read at exactly this version: served only while Redis still says so */
        char key[LOCAL_KEY_MAX];
        size_t klen = local_key(key, user_id, list, field);
        if (klen > 0)
            localcache_put(key, klen, version, value, len);
    }
#ifdef PROFILE_TEST_HOOKS
    if (lc->fill_delay_ms > 0) {
        size_t ul = strlen(user_id) + 1, fl = strlen(field) + 1;
        delayed_fill_t *d = xcalloc(1, sizeof(*d) + ul + fl + len + 1);
        d->user_id = (char *)(d + 1);
        d->field = d->user_id + ul;
        d->value = d->field + fl;
        memcpy(d->user_id, user_id, ul);
        memcpy(d->field, field, fl);
        memcpy(d->value, value, len);
        d->lc = lc;
        d->list = list;
        d->version = version;
        d->len = len;
        d->entry.cb = on_fill_delay;
        h2o_timeout_link(lc->loop, &lc->fill_delay, &d->entry);
        return;
    }
#endif
    do_fill(lc, user_id, list, field, value, len, version);
}

listcache_status_t listcache_invalidate(listcache_t *lc, const char *user_id, int64_t seq,
                                        listcache_done_cb_t cb, void *ud)
{
    drain(lc);
    if (!up_for(lc, user_id)) {
        lc->stats.errors++;
        lc->stats.invalidation_failures++;
        replay_push(user_id, seq, false);
        return LISTCACHE_DONE;
    }
    send_invalidate(lc, user_id, seq, false, cb, ud);
    return LISTCACHE_PENDING;
}
