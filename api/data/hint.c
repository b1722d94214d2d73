/*
 * Coalesced relay wake-ups after commit: partitions marked during one loop iteration become one
 * transaction of NOTIFYs on the hint connection, at most one in flight.
 */
#include <stdio.h>
#include <stdlib.h>
#include <h2o.h>
#include "api/data/hint.h"
#include "api/data/pgpool.h"
#include "common/alloc.h"

#define HINT_QUEUE_MAX 4 /* one in flight; the pool's queue only holds it while (re)connecting */

struct st_hint_t {
    h2o_loop_t *loop;
    hint_send_fn send;
    void *ctx;
    uint64_t marked;    /* partitions waiting for the next hint */
    bool in_flight;     /* a hint was handed to the sender and has not completed */
    h2o_timeout_t zero; /* fires at the end of the current loop iteration */
    h2o_timeout_entry_t flush_entry;
    uint64_t sent;
    pgpool_t *pool;  /* hint_create_pg only */
    pgpool_op_t *op; /* the pool's op in flight, detached at destroy */
};

/* "{0,5,63}" from a bit set; buf holds HINT_PARTITIONS * 3 + 3 bytes. */
static void render(uint64_t set, char *buf, size_t cap)
{
    size_t n = 0;
    buf[n++] = '{';
    for (int p = 0; p < HINT_PARTITIONS; p++)
        if (set & ((uint64_t)1 << p))
            n += (size_t)snprintf(buf + n, cap - n, n > 1 ? ",%d" : "%d", p);
    buf[n++] = '}';
    buf[n] = '\0';
}

static void flush(hint_t *h)
{
    char buf[HINT_PARTITIONS * 3 + 3];
    if (h->in_flight || h->marked == 0)
        return;
    render(h->marked, buf, sizeof(buf));
    h->marked = 0;
    h->sent++;
    h->in_flight = true;
    if (h->send(h, h->ctx, buf) != 0)
        h->in_flight = false; /* dropped: the relay's poll covers it */
}

static void on_flush(h2o_timeout_entry_t *entry)
{
    hint_t *h = H2O_STRUCT_FROM_MEMBER(hint_t, flush_entry, entry);
    flush(h);
}

hint_t *hint_create(h2o_loop_t *loop, hint_send_fn send, void *ctx)
{
    hint_t *h = xcalloc(1, sizeof(*h));
    h->loop = loop;
    h->send = send;
    h->ctx = ctx;
    h2o_timeout_init(loop, &h->zero, 0);
    h->flush_entry.cb = on_flush;
    return h;
}

void hint_destroy(hint_t *h)
{
    if (h == NULL)
        return;
    if (h2o_timeout_is_linked(&h->flush_entry))
        h2o_timeout_unlink(&h->flush_entry);
    h2o_timeout_dispose(h->loop, &h->zero);
    if (h->op != NULL)
        pgpool_detach(h->op);
    pgpool_destroy(h->pool);
    free(h);
}

void hint_mark(hint_t *h, int partition)
{
    if (partition >= 0 && partition < HINT_PARTITIONS)
        h->marked |= (uint64_t)1 << partition;
    else
        h->marked = ~(uint64_t)0;
    if (!h->in_flight && !h2o_timeout_is_linked(&h->flush_entry))
        h2o_timeout_link(h->loop, &h->zero, &h->flush_entry);
}

void hint_sent(hint_t *h)
{
    h->in_flight = false;
    if (h->marked != 0 && !h2o_timeout_is_linked(&h->flush_entry))
        h2o_timeout_link(h->loop, &h->zero, &h->flush_entry);
}

uint64_t hint_sent_count(const hint_t *h)
{
    return h->sent;
}

static void on_pool_done(void *data, const PGresult *res, pgpool_err_t err)
{
    hint_t *h = data;
    (void)res;
    (void)err; /* a failed hint costs latency only: nothing to retry */
    h->op = NULL;
    hint_sent(h);
}

static int pool_send(hint_t *h, void *ctx, const char *partitions)
{
    (void)ctx;
    if (pgpool_submit(h->pool, PGPOOL_STMT_OUTBOX_HINT, 1, &partitions, on_pool_done, h, &h->op) !=
        PGPOOL_OK)
        return -1;
    return 0;
}

hint_t *hint_create_pg(h2o_loop_t *loop, const char *conninfo, bool prepared)
{
    hint_t *h = hint_create(loop, pool_send, NULL);
    /* thread -1: the hint connection stays out of the request pool's gauges */
    h->pool = pgpool_create(loop, conninfo, 1, -1, HINT_QUEUE_MAX);
    pgpool_set_prepared(h->pool, prepared); /* behind a transaction-mode pooler: unnamed */
    return h;
}
