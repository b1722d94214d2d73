/*
 * Per-thread counters summed on scrape. Writers are the owning loop thread only; the scraping
 * thread reads with relaxed atomics, so a scrape may be a few events behind, never torn.
 */
#include <stddef.h>
#include <stdlib.h>
#include "api/http/metrics.h"
#include "api/data/listcache.h"
#include "api/data/localcache.h"
#include "api/data/pgpool.h"
#include "api/data/redis_client.h"
#include "common/alloc.h"
#include "common/otel.h"
#include "common/procstat.h"
#include "common/prom.h"

/* Buckets in seconds around a 50 ms SLO. */
static const double bucket_le[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5};
#define NBUCKETS (sizeof(bucket_le) / sizeof(bucket_le[0]))

/* Buckets in seconds for one PostgreSQL statement or Redis call. */
static const double call_le[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                 0.05,   0.1,   0.25,   0.5,   1,    2.5};
#define NCALL (sizeof(call_le) / sizeof(call_le[0]))

static const char *const redis_op_names[METRICS_REDIS__COUNT] = {
    [METRICS_REDIS_RATELIMIT] = "ratelimit",
    [METRICS_REDIS_AUTH_FAILURE] = "ratelimit.auth_failure",
    [METRICS_REDIS_CACHE_GET] = "cache.get",
    [METRICS_REDIS_CACHE_INVALIDATE] = "cache.invalidate",
};

typedef struct st_metrics_thread_t {
    uint64_t requests[ROUTE__COUNT][ROUTE_METHOD__COUNT][5];
    uint64_t hist[ROUTE__COUNT][ROUTE_METHOD__COUNT][NBUCKETS + 1]; /* last = +Inf */
    uint64_t hist_sum_us[ROUTE__COUNT][ROUTE_METHOD__COUNT];
    metrics_pool_gauges_t pool;
    uint64_t events[METRICS_EVENT__COUNT];
    metrics_redis_t redis;
    uint64_t db_hist[PGPOOL_STMT__COUNT][NCALL + 1]; /* last = +Inf */
    uint64_t db_sum_us[PGPOOL_STMT__COUNT];
    uint64_t redis_hist[METRICS_REDIS__COUNT][NCALL + 1];
    uint64_t redis_sum_us[METRICS_REDIS__COUNT];
    char pad[64];
} metrics_thread_t;

static metrics_thread_t *threads;
static int nthreads;

#define LOAD(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)
#define ADD(x, v) __atomic_store_n(&(x), LOAD(x) + (v), __ATOMIC_RELAXED)

void metrics_init(int n)
{
    nthreads = n;
    threads = xcalloc((size_t)n, sizeof(*threads));
}

void metrics_observe_request(int thread, route_id_t route, route_method_t method, int status,
                             double duration_ms)
{
    metrics_thread_t *t;
    int cls = status / 100 - 1;
    size_t b;
    if (threads == NULL || thread < 0 || thread >= nthreads)
        return;
    t = &threads[thread];
    if (cls < 0 || cls > 4)
        cls = 4;
    if ((unsigned)route >= ROUTE__COUNT)
        route = ROUTE_NONE;
    ADD(t->requests[route][method][cls], 1);
    for (b = 0; b < NBUCKETS; b++)
        if (duration_ms / 1000.0 <= bucket_le[b])
            break;
    ADD(t->hist[route][method][b], 1);
    ADD(t->hist_sum_us[route][method], (uint64_t)(duration_ms * 1000.0));
}

const char *metrics_redis_op_name(metrics_redis_op_t op)
{
    return (unsigned)op < METRICS_REDIS__COUNT ? redis_op_names[op] : "unknown";
}

#define THREAD_OK(i) (threads != NULL && (i) >= 0 && (i) < nthreads)

void metrics_count(int thread, metrics_event_t ev)
{
    if (THREAD_OK(thread) && (unsigned)ev < METRICS_EVENT__COUNT)
        ADD(threads[thread].events[ev], 1);
}

static void observe_call(uint64_t *hist, uint64_t *sum_us, double duration_ms)
{
    size_t b;
    if (duration_ms < 0)
        duration_ms = 0;
    for (b = 0; b < NCALL; b++)
        if (duration_ms / 1000.0 <= call_le[b])
            break;
    ADD(hist[b], 1);
    ADD(*sum_us, (uint64_t)(duration_ms * 1000.0));
}

void metrics_observe_db(int thread, int stmt, double duration_ms)
{
    if (THREAD_OK(thread) && stmt >= 0 && stmt < PGPOOL_STMT__COUNT)
        observe_call(threads[thread].db_hist[stmt], &threads[thread].db_sum_us[stmt], duration_ms);
}

void metrics_observe_redis(int thread, metrics_redis_op_t op, double duration_ms)
{
    if (THREAD_OK(thread) && (unsigned)op < METRICS_REDIS__COUNT)
        observe_call(threads[thread].redis_hist[op], &threads[thread].redis_sum_us[op],
                     duration_ms);
}

void metrics_set_pool(int thread, const metrics_pool_gauges_t *g)
{
    if (threads == NULL || thread < 0 || thread >= nthreads)
        return;
    __atomic_store_n(&threads[thread].pool.conns_total, g->conns_total, __ATOMIC_RELAXED);
    __atomic_store_n(&threads[thread].pool.conns_ready, g->conns_ready, __ATOMIC_RELAXED);
    __atomic_store_n(&threads[thread].pool.inflight, g->inflight, __ATOMIC_RELAXED);
    __atomic_store_n(&threads[thread].pool.queued, g->queued, __ATOMIC_RELAXED);
}

_Static_assert(sizeof(metrics_redis_t) % sizeof(uint64_t) == 0,
               "metrics_set_redis() stores metrics_redis_t as uint64_t words");

void metrics_set_redis(int thread, const metrics_redis_t *r)
{
    if (threads == NULL || thread < 0 || thread >= nthreads)
        return;
    const uint64_t *src = (const uint64_t *)r;
    uint64_t *dst = (uint64_t *)&threads[thread].redis;
    for (size_t i = 0; i < sizeof(*r) / sizeof(uint64_t); i++)
        __atomic_store_n(&dst[i], src[i], __ATOMIC_RELAXED);
}

/* A counter without labels: the uint64_t at `off` in metrics_thread_t, summed on scrape. */
typedef struct st_metrics_counter_def_t {
    const char *name, *help;
    size_t off; /* of a uint64_t in metrics_thread_t */
} metrics_counter_def_t;

/* The uint64_t at byte offset `off` of metrics_thread_t, summed over the threads. */
static uint64_t sum_u64(size_t off)
{
    uint64_t sum = 0;
    for (int i = 0; i < nthreads; i++)
        sum += __atomic_load_n((uint64_t *)((char *)&threads[i] + off), __ATOMIC_RELAXED);
    return sum;
}

#define EVENT(ev) (offsetof(metrics_thread_t, events) + sizeof(uint64_t) * (ev))

static void counter(strbuf_t *out, const char *name, const char *help, size_t off)
{
    prom_counter(out, name, help, sum_u64(off));
}

static void counters(strbuf_t *out, const metrics_counter_def_t *defs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        counter(out, defs[i].name, defs[i].help, defs[i].off);
}
#define COUNTERS(out, defs) counters((out), (defs), sizeof(defs) / sizeof((defs)[0]))

static void gauge(strbuf_t *out, const char *name, const char *help, size_t off)
{
    long sum = 0;
    for (int i = 0; i < nthreads; i++)
        sum += __atomic_load_n((int *)((char *)&threads[i] + off), __ATOMIC_RELAXED);
    prom_family(out, name, PROM_GAUGE, help);
    prom_sample_i64(out, name, NULL, sum);
}

/*
 * One histogram series set (label `label`=`value`) summed over threads; `hist_off`/`sum_off`
 * locate its NCALL + 1 buckets and its sum in metrics_thread_t. Nothing when never observed.
 */
static void call_histogram(strbuf_t *out, const char *name, const char *label, const char *value,
                           size_t hist_off, size_t sum_off)
{
    uint64_t counts[NCALL + 1] = {0}, total_us = 0, any = 0;
    char labels[128];
    for (size_t b = 0; b <= NCALL; b++)
        for (int i = 0; i < nthreads; i++)
            counts[b] += LOAD(((uint64_t *)((char *)&threads[i] + hist_off))[b]);
    for (size_t b = 0; b <= NCALL; b++)
        any += counts[b];
    if (any == 0)
        return;
    for (int i = 0; i < nthreads; i++)
        total_us += LOAD(*(uint64_t *)((char *)&threads[i] + sum_off));
    snprintf(labels, sizeof(labels), "%s=\"%s\"", label, value);
    prom_histogram(out, name, labels, call_le, NCALL, counts, (double)total_us / 1e6);
}

static void render_more(strbuf_t *out)
{
    uint64_t started = sum_u64(EVENT(METRICS_REQUEST_STARTED));
    uint64_t finished = sum_u64(EVENT(METRICS_REQUEST_FINISHED));
    uint64_t exported, dropped, failed;

    char labels[256];

    prom_family(out, "profile_api_build_info", PROM_GAUGE, "Version and git commit of this build.");
    snprintf(labels, sizeof(labels), "version=\"%s\",commit=\"%s\"", PROFILE_VERSION,
             PROFILE_GIT_COMMIT);
    prom_sample_u64(out, "profile_api_build_info", labels, 1);
    prom_family(out, "profile_api_requests_in_flight", PROM_GAUGE, "HTTP requests being served.");
    prom_sample_i64(out, "profile_api_requests_in_flight", NULL,
                    started >= finished ? (int64_t)(started - finished) : 0);
    counter(out, "profile_api_idempotent_replays_total",
            "Writes answered from their stored outcome (Idempotent-Replayed).",
            EVENT(METRICS_IDEMPOTENT_REPLAY));
    counter(out, "profile_api_connections_refused_total",
            "Connections closed at accept: the loop held MAX_CONNECTIONS_PER_THREAD.",
            EVENT(METRICS_CONNECTION_REFUSED));
    prom_family(out, "profile_api_db_duration_seconds", PROM_HISTOGRAM,
                "PostgreSQL statement latency (submit to result, pool wait included) by "
                "statement.");
    for (int st = 0; st < PGPOOL_STMT__COUNT; st++)
        call_histogram(out, "profile_api_db_duration_seconds", "statement",
                       pgpool_stmt_name((pgpool_stmt_t)st),
                       offsetof(metrics_thread_t, db_hist) + sizeof(threads[0].db_hist[0]) * st,
                       offsetof(metrics_thread_t, db_sum_us) + sizeof(uint64_t) * st);
    prom_family(out, "profile_api_redis_duration_seconds", PROM_HISTOGRAM,
                "Redis call latency (call to callback) by operation.");
    for (int op = 0; op < METRICS_REDIS__COUNT; op++)
        call_histogram(out, "profile_api_redis_duration_seconds", "operation", redis_op_names[op],
                       offsetof(metrics_thread_t, redis_hist) +
                           sizeof(threads[0].redis_hist[0]) * op,
                       offsetof(metrics_thread_t, redis_sum_us) + sizeof(uint64_t) * op);
    otel_stats(&exported, &dropped, &failed);
    prom_counter(out, "profile_api_otel_spans_exported_total",
                 "Spans accepted by the OTLP endpoint.", exported);
    prom_counter(out, "profile_api_otel_spans_dropped_total",
                 "Spans dropped because the export queue was full.", dropped);
    prom_counter(out, "profile_api_otel_spans_failed_total", "Spans lost to failed OTLP exports.",
                 failed);
    procstat_render(out);
}

/* The HTTP families: requests by route, method and status class, and their latency. */
static void render_http(strbuf_t *out)
{
    static const char *classes[5] = {"1xx", "2xx", "3xx", "4xx", "5xx"};
    prom_family(out, "profile_api_requests_total", PROM_COUNTER,
                "HTTP requests by route, method and status class.");
    for (int r = 0; r < ROUTE__COUNT; r++)
        for (int m = 0; m < ROUTE_METHOD__COUNT; m++)
            for (int c = 0; c < 5; c++) {
                uint64_t sum = 0;
                char labels[256];
                for (int i = 0; i < nthreads; i++)
                    sum += LOAD(threads[i].requests[r][m][c]);
                if (sum == 0)
                    continue;
                snprintf(labels, sizeof(labels), "route=\"%s\",method=\"%s\",status=\"%s\"",
                         route_template((route_id_t)r), route_method_name((route_method_t)m),
                         classes[c]);
                prom_sample_u64(out, "profile_api_requests_total", labels, sum);
            }
    prom_family(out, "profile_api_request_duration_seconds", PROM_HISTOGRAM,
                "Request latency by route and method (reads: GET, writes: POST/PUT/DELETE).");
    for (int r = 0; r < ROUTE__COUNT; r++) {
        for (int m = 0; m < ROUTE_METHOD__COUNT; m++) {
            uint64_t counts[NBUCKETS + 1] = {0}, total_us = 0, any = 0;
            char labels[256];
            for (size_t b = 0; b <= NBUCKETS; b++)
                for (int i = 0; i < nthreads; i++)
                    counts[b] += LOAD(threads[i].hist[r][m][b]);
            for (size_t b = 0; b <= NBUCKETS; b++)
                any += counts[b];
            if (any == 0)
                continue;
            for (int i = 0; i < nthreads; i++)
                total_us += LOAD(threads[i].hist_sum_us[r][m]);
            snprintf(labels, sizeof(labels), "route=\"%s\",method=\"%s\"",
                     route_template((route_id_t)r), route_method_name((route_method_t)m));
            prom_histogram(out, "profile_api_request_duration_seconds", labels, bucket_le, NBUCKETS,
                           counts, (double)total_us / 1e6);
        }
    }
}

/* The PostgreSQL pool: connections, waiting requests, refusals and retries. */
static void render_pool(strbuf_t *out)
{
    gauge(out, "profile_api_db_pool_connections", "Configured PostgreSQL connections.",
          offsetof(metrics_thread_t, pool.conns_total));
    gauge(out, "profile_api_db_pool_connections_ready", "Connected and prepared connections.",
          offsetof(metrics_thread_t, pool.conns_ready));
    gauge(out, "profile_api_db_pool_inflight", "Statements awaiting their result.",
          offsetof(metrics_thread_t, pool.inflight));
    gauge(out, "profile_api_db_pool_queued", "Requests waiting for a connection.",
          offsetof(metrics_thread_t, pool.queued));
    counter(out, "profile_api_db_pool_rejected_total", "Requests refused with 503 (queue full).",
            EVENT(METRICS_POOL_REJECTED));
    counter(out, "profile_api_db_reconnects_total", "Connections re-established.",
            EVENT(METRICS_POOL_RECONNECT));
    counter(out, "profile_api_db_retries_total",
            "Statements retried after serialization "
            "failure or deadlock.",
            EVENT(METRICS_DB_RETRY));
}

#define R(f) offsetof(metrics_thread_t, redis.f)

/* The list cache counters, in exposition order. */
static const metrics_counter_def_t cache_counters[] = {
    {"profile_api_cache_hits_total", "List cache lookups answered from Redis.", R(cache.hits)},
    {"profile_api_cache_local_hits_total",
     "Cache hits served from this process's copy after Redis confirmed its version "
     "(included in profile_api_cache_hits_total).",
     R(cache.local_hits)},
    {"profile_api_cache_misses_total",
     "List cache lookups not served (absent, Redis error or bypass).", R(cache.misses)},
    {"profile_api_cache_fills_total", "Pages stored in the list cache.", R(cache.fills)},
    {"profile_api_cache_fill_rejections_total",
     "Fills refused as stale by the version check (race prevented).", R(cache.fill_rejections)},
    {"profile_api_cache_errors_total",
     "Redis errors, timeouts or unavailability on cache operations.", R(cache.errors)},
    {"profile_api_cache_invalidations_total", "Invalidations after writes confirmed by Redis.",
     R(cache.invalidations)},
    {"profile_api_cache_invalidation_failures_total",
     "Invalidations that failed and were queued for replay.", R(cache.invalidation_failures)},
    {"profile_api_cache_bypassed_total",
     "Cache reads and fills skipped while invalidations await replay.", R(cache.bypassed)},
};

/* The rate limiter (callers and failed authentications). */
static const metrics_counter_def_t limiter_counters[] = {
    {"profile_api_ratelimit_checks_total", "Requests checked by the rate limiter.",
     R(limiter.checks)},
    {"profile_api_rate_limited_total", "Requests answered 429 (over the limit).",
     R(limiter.denied)},
    {"profile_api_ratelimit_degraded_total",
     "Limiter decisions made without Redis (fail open or local stand-in).", R(limiter.degraded)},
    {"profile_api_ratelimit_local_denied_total",
     "Requests denied by the local stand-in while Redis was down.", R(limiter.local_denied)},
    {"profile_api_ratelimit_errors_total", "Limiter Redis errors and timeouts.", R(limiter.errors)},
    {"profile_api_auth_failures_total", "Failed authentications counted.",
     R(limiter.auth_failures)},
    {"profile_api_auth_failures_limited_total",
     "Failed authentications answered 429 (per-address limit).", R(limiter.auth_failures_denied)},
};

/* The Redis client, up to the redirections (a sum of two fields). */
static const metrics_counter_def_t client_counters[] = {
    {"profile_api_redis_commands_total", "Redis commands sent.", R(client.commands)},
    {"profile_api_redis_errors_total",
     "Redis commands that failed (down, timeout, broken connection).", R(client.failed)},
    {"profile_api_redis_timeouts_total", "Redis command timeouts.", R(client.timeouts)},
    {"profile_api_redis_connects_total", "Redis connections established.", R(client.connects)},
    {"profile_api_redis_disconnects_total", "Redis connections lost or failed to establish.",
     R(client.disconnects)},
    {"profile_api_redis_error_replies_total",
     "Redis error replies (CROSSSLOT, CLUSTERDOWN, WRONGTYPE...; each kind also logged "
     "once per outage).",
     R(client.err_replies)},
};

/* The list cache: Redis pages and this process's copies. */
static void render_cache(strbuf_t *out)
{
    COUNTERS(out, cache_counters);
    prom_family(out, "profile_api_cache_pending_invalidations", PROM_GAUGE,
                "Invalidations waiting for Redis.");
    prom_sample_u64(out, "profile_api_cache_pending_invalidations", NULL,
                    listcache_pending_invalidations());
    {
        localcache_stats_t ls;
        localcache_stats(&ls);
        prom_family(out, "profile_api_cache_local_entries", PROM_GAUGE, "Pages held locally.");
        prom_sample_u64(out, "profile_api_cache_local_entries", NULL, ls.entries);
        prom_family(out, "profile_api_cache_local_bytes", PROM_GAUGE,
                    "Bytes held by the local pages (CACHE_LOCAL_MB bounds it).");
        prom_sample_u64(out, "profile_api_cache_local_bytes", NULL, ls.bytes);
        prom_counter(out, "profile_api_cache_local_evictions_total",
                     "Local pages dropped for room.", ls.evictions);
    }
}

/* The Redis client under the cache and the limiter. */
static void render_redis(strbuf_t *out)
{
    COUNTERS(out, client_counters);
    prom_counter(out, "profile_api_redis_redirects_total",
                 "Redis Cluster MOVED and ASK redirections followed.",
                 sum_u64(R(client.moved)) + sum_u64(R(client.ask)));
    counter(out, "profile_api_redis_slot_map_reads_total",
            "Redis Cluster slot map reads (CLUSTER SLOTS).", R(client.refreshes));
    {
        uint64_t up = nthreads > 0 ? 1 : 0;
        for (int i = 0; i < nthreads; i++)
            if (LOAD(threads[i].redis.up) == 0)
                up = 0;
        prom_family(out, "profile_api_redis_up", PROM_GAUGE,
                    "1 when every event-loop thread is connected to Redis.");
        prom_sample_u64(out, "profile_api_redis_up", NULL, up);
        prom_counter(out, "profile_api_redis_outages_total", "Redis outages seen by this process.",
                     redis_client_outages());
    }
}

#undef R

void metrics_render(strbuf_t *out)
{
    if (threads == NULL)
        return;
    render_http(out);
    render_pool(out);
    render_cache(out);
    COUNTERS(out, limiter_counters);
    render_redis(out);
    render_more(out);
}
