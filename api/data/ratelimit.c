/*
 * Rate limiter: GCRA in Redis (shared budget), failing open with a per-process stand-in while
 * Redis is unavailable; per-address limit on failed authentications.
 */
#include "common/stringify.h"
#include "api/data/ratelimit.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/clock.h"
#include "common/alloc.h"
#include "common/cache.h"
#include "common/log.h"
#include "common/redis_cluster.h"

#define LOG_MODULE "ratelimit"

/* Local stand-in: a fixed table, 4-way probing, the oldest entry is evicted when full. */
#define LOCAL_SLOTS 8192
#define LOCAL_PROBE 4

/*
 * Coalescing: the checks of one caller (or one address) that arrive on a thread within one
 * event-loop iteration are decided by one script call at the end of that iteration (the
 * script's ARGV[4]), each still getting its own decision and headers. The call leaves in the
 * same write as the iteration's other Redis commands (cache reads). A caller with many
 * concurrent requests then costs one script call per iteration instead of one per request; a
 * caller with one request at a time sees no difference.
 */
#define FLIGHT_BUCKETS 1024
#define MAX_BATCH 1000       /* requests of one caller decided by one key of a call */
#define MAX_KEYS_PER_CALL 64 /* callers per script call */

typedef struct st_waiter_t {
    struct st_waiter_t *next;
    ratelimit_cb_t cb;
    void *ud;
} waiter_t;

typedef struct st_flight_t {
    struct st_flight_t *hnext; /* bucket chain, while collecting */
    struct st_flight_t *anext; /* every batch collecting in this iteration */
    ratelimit_t *rl;
    uint64_t hash;
    bool auth;       /* auth-failure check */
    waiter_t *first; /* in arrival order */
    waiter_t **tail;
    unsigned n;
    char name[]; /* subject or address */
} flight_t;

struct st_ratelimit_t {
    redis_client_t *redis;
    ratelimit_stats_t stats;
    flight_t *buckets[FLIGHT_BUCKETS]; /* batches collecting, by caller */
    flight_t *collecting;              /* the same, as one list */
};

typedef struct st_local_slot_t {
    uint64_t key; /* 0 = empty */
    double tat_us;
} local_slot_t;

static ratelimit_config_t g_cfg;
static redis_script_t g_script;
static local_slot_t *g_local;
static pthread_mutex_t g_local_lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_bool g_degraded; /* process-wide: for logging once per outage */
static atomic_uint_fast64_t g_degraded_decisions;

/* ---------- GCRA ---------- */

void ratelimit_gcra(double *tat_us, double now_us, int limit, int window_seconds,
                    ratelimit_result_t *out)
{
    double window = (double)window_seconds * 1e6, t = window / limit;
    double tat = *tat_us > now_us ? *tat_us : now_us;
    double new_tat = tat + t, allow_at = new_tat - window;
    out->limit = limit;
    if (now_us < allow_at) {
        int retry = (int)ceil((allow_at - now_us) / 1e6);
        out->allowed = false;
        out->remaining = 0;
        out->reset_seconds = (int)ceil((tat - now_us) / 1e6);
        out->retry_after_seconds = retry < 1 ? 1 : retry;
        return;
    }
    *tat_us = new_tat;
    int remaining = (int)floor((now_us + window - new_tat) / t + 1e-6);
    out->allowed = true;
    out->remaining = remaining < 0 ? 0 : remaining;
    out->reset_seconds = (int)ceil((new_tat - now_us) / 1e6);
    out->retry_after_seconds = 0;
}

static uint64_t hash_name(const char *s, bool auth)
{
    uint64_t h = auth ? 0x84222325cbf29ce4ULL : 0xcbf29ce484222325ULL;
    for (; *s != '\0'; s++) {
        h ^= (unsigned char)*s;
        h *= 0x100000001b3ULL;
    }
    return h != 0 ? h : 1;
}

/* Decides without Redis: fail open, or the per-process stand-in when it is on. */
static void decide_locally(ratelimit_t *rl, const char *name, bool auth, int limit,
                           ratelimit_result_t *out)
{
    if (!atomic_exchange(&g_degraded, true))
        log_warn("rate limiter: Redis unavailable, failing open%s until it is back",
                 g_local != NULL ? " (per-process limiter standing in)" : "");
    atomic_fetch_add(&g_degraded_decisions, 1);
    if (!auth)
        rl->stats.degraded++;
    if (g_local == NULL) {
        *out = (ratelimit_result_t){.allowed = true, .limit = limit, .remaining = limit};
    } else {
        uint64_t key = hash_name(name, auth);
        double now = (double)clock_mono_us();
        size_t base = (size_t)(key % LOCAL_SLOTS), pick = base;
        pthread_mutex_lock(&g_local_lock);
        for (size_t i = 0; i < LOCAL_PROBE; i++) {
            local_slot_t *s = &g_local[(base + i) % LOCAL_SLOTS];
            if (s->key == key || s->key == 0) {
                pick = (base + i) % LOCAL_SLOTS;
                break;
            }
            if (s->tat_us < g_local[pick].tat_us)
                pick = (base + i) % LOCAL_SLOTS;
        }
        local_slot_t *slot = &g_local[pick];
        if (slot->key != key) {
            slot->key = key;
            slot->tat_us = 0;
        }
        ratelimit_gcra(&slot->tat_us, now, limit, RATELIMIT_WINDOW_SECONDS, out);
        pthread_mutex_unlock(&g_local_lock);
        if (!out->allowed && !auth)
            rl->stats.local_denied++;
    }
    out->degraded = true;
}

static void note_redis_ok(void)
{
    if (atomic_load_explicit(&g_degraded, memory_order_relaxed) &&
        atomic_exchange(&g_degraded, false))
        log_info("rate limiter: back on Redis (%llu decisions were made without it)",
                 (unsigned long long)atomic_exchange(&g_degraded_decisions, 0));
}

/* ---------- public ---------- */

void ratelimit_global_init(const ratelimit_config_t *cfg)
{
    g_cfg = *cfg;
    redis_script_init(&g_script, cache_lua_ratelimit);
    if (!cfg->no_local_fallback && g_local == NULL)
        g_local = xcalloc(LOCAL_SLOTS, sizeof(*g_local));
}

void ratelimit_global_dispose(void)
{
    free(g_local);
    g_local = NULL;
}

bool ratelimit_enabled(void)
{
    return g_cfg.limit_per_minute > 0;
}

static void on_flush(void *data);
static void deliver(flight_t *f, size_t i, const redisReply *r);
static void flight_key(const flight_t *f, char *key);

ratelimit_t *ratelimit_create(redis_client_t *redis)
{
    ratelimit_t *rl = xcalloc(1, sizeof(*rl));
    rl->redis = redis;
    redis_client_add_flush_hook(redis, on_flush, rl);
    return rl;
}

void ratelimit_destroy(ratelimit_t *rl)
{
    if (rl == NULL)
        return;
    while (rl->collecting != NULL) { /* never sent: decided here without Redis */
        flight_t *f = rl->collecting;
        rl->collecting = f->anext;
        deliver(f, 0, NULL);
    }
    free(rl);
}

const ratelimit_stats_t *ratelimit_stats(const ratelimit_t *rl)
{
    return &rl->stats;
}

/* Key `i` of the reply: {allowed count, remaining, reset, retry}: `*allowed` of its `n`
 * requests passed. */
static bool parse_reply(const redisReply *r, size_t i, int limit, unsigned n, unsigned *allowed,
                        ratelimit_result_t *out)
{
    if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements < 4 * (i + 1))
        return false;
    redisReply **e = r->element + 4 * i;
    for (size_t k = 0; k < 4; k++)
        if (e[k]->type != REDIS_REPLY_INTEGER)
            return false;
    if (e[0]->integer < 0 || e[0]->integer > (long long)n)
        return false;
    *allowed = (unsigned)e[0]->integer;
    out->allowed = *allowed > 0;
    out->limit = limit;
    out->remaining = (int)e[1]->integer;
    out->reset_seconds = (int)e[2]->integer;
    out->retry_after_seconds = (int)e[3]->integer;
    out->degraded = false;
    return true;
}

static void count_decision(ratelimit_t *rl, bool auth, const ratelimit_result_t *res)
{
    if (res->allowed)
        return;
    if (auth)
        rl->stats.auth_failures_denied++;
    else
        rl->stats.denied++;
}

/* One script call: the batches of up to MAX_KEYS_PER_CALL callers. */
typedef struct st_call_t {
    unsigned n;
    flight_t *flights[];
} call_t;

static void on_reply(const redisReply *r, void *p)
{
    call_t *call = p;
    for (unsigned i = 0; i < call->n; i++)
        deliver(call->flights[i], i, r);
    free(call);
}

static void send_call(ratelimit_t *rl, call_t *call)
{
    /* per key: limit, window, "0" (the script reads Redis' clock, so replicas with skewed
     * clocks share one budget), count */
    enum { PER_KEY = 5 };
    char(*buf)[CACHE_KEY_MAX] = xmalloc(call->n * PER_KEY * sizeof(*buf));
    const char **argv = xmalloc(call->n * PER_KEY * sizeof(*argv));
    for (unsigned i = 0; i < call->n; i++) {
        flight_t *f = call->flights[i];
        char *key = buf[i * PER_KEY], *lim = buf[i * PER_KEY + 1], *cnt = buf[i * PER_KEY + 2];
        flight_key(f, key);
        snprintf(lim, CACHE_KEY_MAX, "%d",
                 f->auth ? g_cfg.auth_failure_limit_per_minute : g_cfg.limit_per_minute);
        snprintf(cnt, CACHE_KEY_MAX, "%u", f->n);
        argv[i] = key;
        argv[call->n + 4 * i] = lim;
        argv[call->n + 4 * i + 1] = PROFILE_STR(RATELIMIT_WINDOW_SECONDS);
        argv[call->n + 4 * i + 2] = "0";
        argv[call->n + 4 * i + 3] = cnt;
    }
    redis_client_eval(rl->redis, &g_script, (int)call->n, (int)(call->n * PER_KEY), argv, NULL,
                      on_reply, call);
    free(argv);
    free(buf);
}

static void flight_key(const flight_t *f, char *key)
{
    if (f->auth)
        cache_key_auth_failure(key, f->name);
    else
        cache_key_ratelimit(key, f->name);
}

/* End of the loop iteration (the client's flush hook): the callers seen in it are decided by
 * one script call, sent in the same write as the iteration's other commands. In cluster mode a
 * call carries the callers of one slot only (one call per slot, pipelined). */
static void on_flush(void *data)
{
    ratelimit_t *rl = data;
    flight_t *f = rl->collecting;
    size_t n = 0;
    rl->collecting = NULL;
    for (flight_t *g = f; g != NULL; g = g->anext)
        n++;
    if (n == 0)
        return;
    flight_t **all = xmalloc(n * sizeof(*all));
    uint16_t *slots = xmalloc(n * sizeof(*slots));
    size_t *order = xmalloc(n * sizeof(*order));
    bool cluster = redis_client_is_cluster(rl->redis);
    for (size_t i = 0; f != NULL; f = f->anext, i++) {
        char key[CACHE_KEY_MAX];
        rl->buckets[f->hash % FLIGHT_BUCKETS] = NULL; /* every batch of the bucket goes now */
        all[i] = f;
        slots[i] = 0;
        if (cluster) {
            flight_key(f, key);
            slots[i] = (uint16_t)redis_client_key_slot(rl->redis, key);
        }
    }
    redis_cluster_group_by_slot(slots, n, order);
    for (size_t i = 0; i < n;) {
        call_t *call = xmalloc(sizeof(*call) + MAX_KEYS_PER_CALL * sizeof(call->flights[0]));
        uint16_t slot = slots[order[i]];
        call->n = 0;
        for (; i < n && call->n < MAX_KEYS_PER_CALL && slots[order[i]] == slot; i++)
            call->flights[call->n++] = all[order[i]];
        send_call(rl, call);
    }
    free(order);
    free(slots);
    free(all);
}

/* Decides every check of batch `f` from key `i` of the script's reply (Redis when it parses,
 * else the local stand-in) and frees it. */
static void deliver(flight_t *f, size_t i, const redisReply *r)
{
    ratelimit_t *rl = f->rl;
    int limit = f->auth ? g_cfg.auth_failure_limit_per_minute : g_cfg.limit_per_minute;
    unsigned allowed = 0, j = 0;
    ratelimit_result_t base;
    bool ok = parse_reply(r, i, limit, f->n, &allowed, &base);

    if (ok) {
        note_redis_ok();
    } else {
        rl->stats.errors++;
        if (r != NULL && r->type == REDIS_REPLY_ERROR)
            log_debug("rate limit script error: %s", r->str);
    }
    for (waiter_t *w = f->first; w != NULL; j++) {
        waiter_t *next = w->next;
        ratelimit_result_t res;
        if (!ok) {
            decide_locally(rl, f->name, f->auth, limit, &res);
        } else if (j < allowed) { /* the j-th allowed one left this many behind it */
            res = base;
            res.allowed = true;
            res.remaining = base.remaining + (int)(allowed - 1 - j);
            res.retry_after_seconds = 0;
        } else {
            res = base;
            res.allowed = false;
            res.remaining = 0;
        }
        count_decision(rl, f->auth, &res);
        w->cb(&res, w->ud);
        free(w);
        w = next;
    }
    free(f);
}

/* Whether a script call for this caller would be sent now (cluster mode: its slot's master is
 * up; a master being down sends only its own callers to the local stand-in). */
static bool up_for(ratelimit_t *rl, const char *name, bool auth)
{
    if (!redis_client_is_cluster(rl->redis))
        return redis_client_is_up(rl->redis);
    char key[CACHE_KEY_MAX];
    if (auth)
        cache_key_auth_failure(key, name);
    else
        cache_key_ratelimit(key, name);
    return redis_client_is_up_for(rl->redis, key);
}

static ratelimit_status_t check(ratelimit_t *rl, const char *name, bool auth, int limit,
                                ratelimit_result_t *out, ratelimit_cb_t cb, void *ud)
{
    if (limit <= 0) {
        *out = (ratelimit_result_t){.allowed = true};
        return RATELIMIT_DONE;
    }
    if (!up_for(rl, name, auth)) {
        decide_locally(rl, name, auth, limit, out);
        count_decision(rl, auth, out);
        return RATELIMIT_DONE;
    }
    uint64_t hash = hash_name(name, auth);
    flight_t **slot = &rl->buckets[hash % FLIGHT_BUCKETS], *f;
    waiter_t *w = xmalloc(sizeof(*w));
    *w = (waiter_t){NULL, cb, ud};
    for (f = *slot; f != NULL; f = f->hnext)
        if (f->hash == hash && f->auth == auth && f->n < MAX_BATCH && strcmp(f->name, name) == 0)
            break;
    if (f == NULL) {
        size_t len = strlen(name);
        f = xmalloc(sizeof(*f) + len + 1);
        *f = (flight_t){
            .hnext = *slot, .anext = rl->collecting, .rl = rl, .hash = hash, .auth = auth};
        f->tail = &f->first;
        memcpy(f->name, name, len + 1);
        *slot = f;
        rl->collecting = f;
        redis_client_want_flush(rl->redis);
    }
    *f->tail = w;
    f->tail = &w->next;
    f->n++;
    return RATELIMIT_PENDING;
}

ratelimit_status_t ratelimit_check(ratelimit_t *rl, const char *subject, ratelimit_result_t *out,
                                   ratelimit_cb_t cb, void *ud)
{
    if (g_cfg.limit_per_minute > 0)
        rl->stats.checks++;
    return check(rl, subject != NULL ? subject : "", false, g_cfg.limit_per_minute, out, cb, ud);
}

ratelimit_status_t ratelimit_auth_failure(ratelimit_t *rl, const char *client_addr,
                                          ratelimit_result_t *out, ratelimit_cb_t cb, void *ud)
{
    if (g_cfg.auth_failure_limit_per_minute > 0)
        rl->stats.auth_failures++;
    return check(rl, client_addr != NULL ? client_addr : "", true,
                 g_cfg.auth_failure_limit_per_minute, out, cb, ud);
}

static size_t fit(char *out, size_t outlen, int n)
{
    if (n < 0 || (size_t)n >= outlen) {
        if (outlen > 0)
            out[0] = '\0';
        return 0;
    }
    return (size_t)n;
}

size_t ratelimit_format_policy(char *out, size_t outlen, int limit)
{
    return fit(out, outlen,
               snprintf(out, outlen, "\"user\";q=%d;w=%d", limit, RATELIMIT_WINDOW_SECONDS));
}

size_t ratelimit_format_header(char *out, size_t outlen, const ratelimit_result_t *res)
{
    return fit(out, outlen,
               snprintf(out, outlen, "\"user\";r=%d;t=%d", res->remaining, res->reset_seconds));
}
