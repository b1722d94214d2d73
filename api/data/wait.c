/*
 * A request's Redis steps (timed into metrics and spans) and the thread's Redis, cache and
 * limiter counters published to the metrics registry.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "api/data/wait.h"
#include "api/http/metrics.h"
#include "api/http/span.h"
#include "common/alloc.h"
#include "common/clock.h"

api_wait_t *api_wait_begin(api_req_t *ar, int op)
{
    api_wait_t *w = xmalloc(sizeof(*w));
    w->ar = ar;
    w->thread = ar->thr->index;
    w->op = op;
    clock_mono_ts(&w->t0);
    ar->wait = w;
    return w;
}

api_req_t *api_wait_finish(api_wait_t *w, bool error)
{
    struct timespec now;
    api_req_t *ar = w->ar;

    clock_mono_ts(&now);
    metrics_observe_redis(w->thread, (metrics_redis_op_t)w->op,
                          clock_elapsed_s(&w->t0, &now) * 1e3);
    if (ar != NULL && ar->sampled) {
        char name[64];
        const char *op = metrics_redis_op_name((metrics_redis_op_t)w->op);
        snprintf(name, sizeof(name), "redis %s", op);
        api_span_client(ar, name, "redis", op, &w->t0, &now, error);
    }
    return api_wait_end(w);
}

api_req_t *api_wait_end(api_wait_t *w)
{
    api_req_t *ar = w->ar;
    if (ar != NULL)
        ar->wait = NULL;
    free(w);
    return ar;
}

void api_publish_redis_stats(api_thread_t *thr)
{
    metrics_redis_t m;
    if (thr->redis_closing)
        return; /* the client is being destroyed; the last published figures stay */
    memset(&m, 0, sizeof(m));
    if (thr->lc != NULL)
        m.cache = *listcache_stats(thr->lc);
    if (thr->rl != NULL)
        m.limiter = *ratelimit_stats(thr->rl);
    if (thr->redis != NULL) {
        redis_client_get_stats(thr->redis, &m.client);
        m.up = redis_client_is_up(thr->redis) ? 1 : 0;
    }
    metrics_set_redis(thr->index, &m);
}
