/*
 * hiredis async contexts on an h2o evloop: socket adapter (hiredis reads and writes the fd
 * itself, h2o only reports readiness), connect/command timeouts, reconnect with backoff, and in
 * cluster mode one connection per node, the slot map and MOVED/ASK redirections.
 */
#include "api/data/redis_client.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <hiredis/async.h>
#include <openssl/sha.h>

#include "common/clock.h"
#include "common/alloc.h"
#include "common/log.h"
#include "common/redis_cluster.h"

#define LOG_MODULE "redis"

#define BACKOFF_LEVELS 12
#define MAX_NODES 64         /* distinct node addresses one client remembers */
#define MAX_REDIRECTS 5      /* MOVED/ASK hops of one command before it fails */
#define MAX_RANGES 1024      /* slot ranges of a CLUSTER SLOTS reply */
#define REFRESH_DELAY_MS 100 /* slot map re-read: after MOVED, or while a master is down */
#define ERROR_KINDS 16       /* error reply kinds remembered for logging once per outage */
#define ERROR_RELOG_MS 60000 /* a kind seen again outside any outage is logged again after */

typedef enum {
    STATE_DOWN = 0,   /* no context; a reconnect is scheduled (unless retired) */
    STATE_CONNECTING, /* context exists, handshake not finished */
    STATE_UP,         /* handshake finished */
} state_t;

/* One Redis server: the only one in standalone mode, one master (or seed) in cluster mode. */
typedef struct st_node_t {
    redis_client_t *client;
    char *host; /* NULL for unix sockets */
    int port;
    char *unix_path; /* NULL for TCP */
    char masked_url[REDIS_CLUSTER_HOST_MAX + 64];
    redisAsyncContext *ac;
    state_t state;
    bool healthy;      /* false from any error until a handshake completes */
    bool counted_down; /* this node counts in the process-wide outage */
    bool in_map;       /* cluster: serves slots of the current map (or a MOVED named it) */
    bool retired;      /* cluster: left the map while down; no reconnects */
    unsigned pending;  /* commands waiting for their reply */
    uint64_t down_since_ms;
    char last_error[128];
    unsigned backoff_level;
    h2o_timeout_entry_t connect_entry;
    h2o_timeout_entry_t reconnect_entry;
} node_t;

struct st_redis_client_t {
    h2o_loop_t *loop;
    bool cluster;
    /* credentials and database, the same for every node */
    char *user;     /* ACL user, NULL for none */
    char *password; /* NULL for none */
    int db;
    /* settings */
    unsigned max_pending;
    /* nodes: standalone uses nodes[0] only; in cluster mode the first nseeds are the seeds */
    node_t *nodes[MAX_NODES];
    unsigned nnodes;
    unsigned nseeds;
    int8_t *slot_node; /* cluster: node index per slot, -1 = unknown */
    bool map_known;
    bool refreshing; /* a CLUSTER SLOTS is in flight */
    h2o_timeout_t refresh_timeout;
    h2o_timeout_entry_t refresh_entry;
    bool destroying;
    /* timers */
    h2o_timeout_t connect_timeout;
    h2o_timeout_t command_timeout;
    h2o_timeout_t fail_timeout; /* 0 ms: delivers fail-fast callbacks on the next iteration */
    h2o_timeout_t backoff[BACKOFF_LEVELS];
    unsigned nlevels;
    h2o_timeout_t flush_timeout; /* 0 ms: the end of the current loop iteration */
    h2o_timeout_entry_t flush_entry;
    bool in_flush_hook; /* the write follows: commands need nothing more */
    bool flushing;      /* writing: what the socket does not take waits for writability */
    struct {
        redis_client_hook_t cb;
        void *data;
    } flush_hooks[REDIS_CLIENT_MAX_FLUSH_HOOKS];
    int nflush_hooks;
    redis_client_stats_t stats;
};

/* One command in flight (or waiting for its fail-fast callback). Owns a copy of its arguments,
 * so that a redirection, or NOSCRIPT, can send it again. */
typedef struct st_cmd_t {
    redis_client_t *client;
    node_t *node; /* where it was sent */
    node_t *ask;  /* the next send goes to this node, behind ASKING */
    node_t *only; /* sent to this node and nowhere else (CLUSTER SLOTS) */
    redis_client_cb_t cb;
    void *ud;
    h2o_timeout_entry_t entry;    /* command timeout, or the fail-fast deferral */
    const redis_script_t *script; /* EVALSHA: resent as EVAL on NOSCRIPT */
    int slot;                     /* -1: no key */
    unsigned redirects;
    bool retried;
    int argc;
    const char **argv;
    size_t *argvlen;
} cmd_t;

/* Per-context adapter state, freed by the hiredis cleanup hook. */
typedef struct st_adapter_t {
    redisAsyncContext *ac;
    h2o_socket_t *sock;
} adapter_t;

static atomic_uint g_nodes_down;
static atomic_uint_fast64_t g_outages;

/* Error replies by kind, process-wide: each kind is logged once per outage (see note_error). */
static pthread_mutex_t g_kinds_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
    char kind[24];
    uint64_t outage;   /* g_outages when last logged */
    uint64_t at_ms;    /* when last logged */
    uint64_t unlogged; /* seen since */
} g_kinds[ERROR_KINDS];
static unsigned g_nkinds;

static void start_connect(node_t *n);
static void request_refresh(redis_client_t *c);
static bool map_has_down_node(const redis_client_t *c);
static void uncount_down(node_t *n, const char *how);
static int submit(redis_client_t *c, cmd_t *cmd);

/* ---------- helpers ---------- */

static uint64_t now_ms(redis_client_t *c)
{
    return h2o_now(c->loop);
}

static void set_error(node_t *n, const char *why, const redisAsyncContext *ac)
{
    if (ac != NULL && ac->errstr != NULL && ac->errstr[0] != '\0')
        snprintf(n->last_error, sizeof(n->last_error), "%s: %s", why, ac->errstr);
    else
        snprintf(n->last_error, sizeof(n->last_error), "%s", why);
}

/* Counts an error reply (or a refused command) of kind `text`'s first word and logs it once
 * per kind and outage (again after ERROR_RELOG_MS when no outage intervenes). */
static void note_error(redis_client_t *c, const node_t *n, const char *text, size_t len)
{
    char kind[24];
    uint64_t outage = atomic_load(&g_outages), now = now_ms(c), unlogged = 0;
    bool log = false;
    c->stats.err_replies++;
    redis_cluster_error_kind(text, len, kind, sizeof(kind));
    pthread_mutex_lock(&g_kinds_lock);
    unsigned i;
    for (i = 0; i < g_nkinds; i++)
        if (strcmp(g_kinds[i].kind, kind) == 0)
            break;
    if (i == g_nkinds && g_nkinds < ERROR_KINDS) {
        memcpy(g_kinds[i].kind, kind, sizeof(kind));
        g_kinds[i].at_ms = 0;
        g_kinds[i].outage = outage;
        g_nkinds++;
        log = true;
    } else if (i < g_nkinds) {
        log = g_kinds[i].outage != outage || now - g_kinds[i].at_ms >= ERROR_RELOG_MS;
    }
    if (i < g_nkinds) {
        if (log) {
            unlogged = g_kinds[i].unlogged;
            g_kinds[i].outage = outage;
            g_kinds[i].at_ms = now;
            g_kinds[i].unlogged = 0;
        } else {
            g_kinds[i].unlogged++;
        }
    }
    pthread_mutex_unlock(&g_kinds_lock);
    if (log)
        log_warn("redis error from %s: %.*s (each kind logged once per outage; %llu more "
                 "before this one)",
                 n != NULL ? n->masked_url : "client", (int)(len < 200 ? len : 200), text,
                 (unsigned long long)unlogged);
}

/* Records that this node is down; the first node down in the process logs the outage. */
static void mark_down(node_t *n)
{
    redis_client_t *c = n->client;
    n->healthy = false;
    if (c->cluster) {
        request_refresh(c); /* maybe a replica takes over its slots */
        if (c->map_known && !n->in_map) {
            n->retired = true; /* serves no slot: not worth reconnecting, nor an outage */
            h2o_timeout_unlink(&n->reconnect_entry);
            uncount_down(n, "cluster healed: a node that left the slot map is gone");
            return;
        }
    }
    if (n->counted_down || n->retired)
        return;
    n->counted_down = true;
    n->down_since_ms = now_ms(c);
    if (atomic_fetch_add(&g_nodes_down, 1) == 0) {
        atomic_fetch_add(&g_outages, 1);
        if (c->cluster)
            log_warn("redis node %s unreachable (%s); caching off and rate limiter failing open "
                     "for the users of its slots until it or its replica is back",
                     n->masked_url, n->last_error);
        else
            log_warn("redis unreachable at %s (%s); caching off, rate limiter failing open "
                     "until it is back",
                     n->masked_url, n->last_error);
    } else {
        log_debug("redis client down at %s (%s)", n->masked_url, n->last_error);
    }
}

/* This node no longer counts as down (it is back, or left the cluster's map). */
static void uncount_down(node_t *n, const char *how)
{
    if (!n->counted_down)
        return;
    n->counted_down = false;
    if (atomic_fetch_sub(&g_nodes_down, 1) == 1)
        log_info("redis %s at %s after %llu ms", how, n->masked_url,
                 (unsigned long long)(now_ms(n->client) - n->down_since_ms));
}

static void mark_up(node_t *n)
{
    redis_client_t *c = n->client;
    n->healthy = true;
    n->state = STATE_UP;
    n->backoff_level = 0;
    c->stats.connects++;
    uncount_down(n, "reachable again");
    if (c->cluster && (!c->map_known || map_has_down_node(c)))
        request_refresh(c);
}

static void schedule_reconnect(node_t *n)
{
    redis_client_t *c = n->client;
    if (c->destroying || n->retired || h2o_timeout_is_linked(&n->reconnect_entry))
        return;
    h2o_timeout_link(c->loop, &c->backoff[n->backoff_level], &n->reconnect_entry);
    if (n->backoff_level + 1 < c->nlevels)
        n->backoff_level++;
}

/*
 * Forgets the node's current context: it is being freed (by hiredis after an error, or by us
 * right after). Its pending callbacks still run, with NULL replies, and find state DOWN.
 */
static void detach(node_t *n)
{
    redisAsyncContext *ac = n->ac;
    if (ac == NULL)
        return;
    ac->data = NULL;
    n->ac = NULL;
    n->state = STATE_DOWN;
    n->client->stats.disconnects++;
    h2o_timeout_unlink(&n->connect_entry);
    if (n->client->destroying)
        return;
    mark_down(n);
    schedule_reconnect(n);
}

/* Drops the connection on purpose (timeout, failed handshake). A context is never reused. */
static void teardown(node_t *n, const char *why)
{
    redisAsyncContext *ac = n->ac;
    if (ac == NULL)
        return;
    set_error(n, why, NULL);
    detach(n);
    redisAsyncFree(ac); /* runs pending callbacks with NULL now, or after the current one */
}

/* ---------- h2o socket adapter ---------- */

static void on_sock_read(h2o_socket_t *sock, const char *err)
{
    adapter_t *a = sock->data;
    redisAsyncHandleRead(a->ac); /* may free a */
}

static void on_sock_write(h2o_socket_t *sock, const char *err)
{
    adapter_t *a = sock->data;
    redisAsyncHandleWrite(a->ac); /* may free a */
}

static void ev_add_read(void *p)
{
    adapter_t *a = p;
    if (!h2o_socket_is_reading(a->sock))
        h2o_socket_read_start(a->sock, on_sock_read);
}

static void ev_del_read(void *p)
{
    adapter_t *a = p;
    if (h2o_socket_is_reading(a->sock))
        h2o_socket_read_stop(a->sock);
}

static void ev_add_write(void *p)
{
    adapter_t *a = p;
    node_t *n = a->ac->data;
    redis_client_t *c = n != NULL ? n->client : NULL;
    /* Connected: the commands of this loop iteration are written at its end in one write, with
     * no wait for a writability event (the socket nearly always takes them). */
    if (c != NULL && (a->ac->c.flags & REDIS_CONNECTED) != 0) {
        if (c->in_flush_hook)
            return; /* the write follows the hook */
        if (!c->flushing) {
            redis_client_want_flush(c);
            return;
        }
    }
    /* Connecting, or what the socket did not take: h2o's write notification is one-shot;
     * hiredis asks again while its buffer is not empty */
    if (!h2o_socket_is_writing(a->sock))
        h2o_socket_notify_write(a->sock, on_sock_write);
}

static void on_flush(h2o_timeout_entry_t *entry)
{
    redis_client_t *c = H2O_STRUCT_FROM_MEMBER(redis_client_t, flush_entry, entry);
    c->in_flush_hook = true;
    for (int i = 0; i < c->nflush_hooks; i++)
        c->flush_hooks[i].cb(c->flush_hooks[i].data); /* last commands for this write */
    c->in_flush_hook = false;
    c->flushing = true;
    for (unsigned i = 0; i < c->nnodes; i++) {
        node_t *n = c->nodes[i];
        if (n->ac != NULL && (n->ac->c.flags & REDIS_CONNECTED) != 0)
            redisAsyncHandleWrite(n->ac); /* may free the context (detach() clears n->ac) */
    }
    c->flushing = false;
}

void redis_client_add_flush_hook(redis_client_t *c, redis_client_hook_t cb, void *data)
{
    if (c->nflush_hooks == REDIS_CLIENT_MAX_FLUSH_HOOKS)
        PROFILE_FATAL("too many redis flush hooks"); /* a programming error */
    c->flush_hooks[c->nflush_hooks].cb = cb;
    c->flush_hooks[c->nflush_hooks].data = data;
    c->nflush_hooks++;
}

void redis_client_want_flush(redis_client_t *c)
{
    if (!c->in_flush_hook && !h2o_timeout_is_linked(&c->flush_entry))
        h2o_timeout_link(c->loop, &c->flush_timeout, &c->flush_entry);
}

static void ev_del_write(void *p)
{
    /* nothing: a pending one-shot notification finds an empty buffer and is harmless */
}

static void ev_cleanup(void *p)
{
    adapter_t *a = p;
    a->ac->c.fd = -1; /* h2o closes the fd; keep hiredis from closing it a second time */
    h2o_socket_close(a->sock);
    free(a);
}

static void attach(node_t *n, redisAsyncContext *ac)
{
    adapter_t *a = xmalloc(sizeof(*a));
    a->ac = ac;
    a->sock = h2o_evloop_socket_create(n->client->loop, ac->c.fd, H2O_SOCKET_FLAG_DONT_READ);
    a->sock->data = a;
    ac->ev.data = a;
    ac->ev.addRead = ev_add_read;
    ac->ev.delRead = ev_del_read;
    ac->ev.addWrite = ev_add_write;
    ac->ev.delWrite = ev_del_write;
    ac->ev.cleanup = ev_cleanup;
}

/* ---------- connection life cycle ---------- */

static void on_connected(const redisAsyncContext *ac, int status)
{
    node_t *n = ac->data;
    if (n == NULL || status == REDIS_OK)
        return; /* success is declared by the handshake's PING reply */
    /* hiredis frees the context right after this callback */
    set_error(n, "connect failed", ac);
    detach(n);
}

static void on_disconnected(const redisAsyncContext *ac, int status)
{
    node_t *n = ac->data;
    if (n == NULL)
        return;
    set_error(n, "connection lost", ac);
    detach(n);
}

static void on_handshake(redisAsyncContext *ac, void *r, void *privdata)
{
    node_t *n = ac->data;
    redisReply *reply = r;
    if (n == NULL || n->ac != ac)
        return;
    if (reply == NULL) {
        set_error(n, "connection lost during handshake", ac);
        detach(n);
        return;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        char why[128];
        snprintf(why, sizeof(why), "handshake refused: %.100s", reply->str);
        teardown(n, why);
        return;
    }
    if (privdata != NULL) { /* the final PING */
        h2o_timeout_unlink(&n->connect_entry);
        mark_up(n);
        log_debug("redis connected to %s", n->masked_url);
    }
}

static void on_connect_timeout(h2o_timeout_entry_t *entry)
{
    node_t *n = H2O_STRUCT_FROM_MEMBER(node_t, connect_entry, entry);
    teardown(n, "connect timeout");
}

static void on_reconnect_timer(h2o_timeout_entry_t *entry)
{
    node_t *n = H2O_STRUCT_FROM_MEMBER(node_t, reconnect_entry, entry);
    start_connect(n);
}

static void start_connect(node_t *n)
{
    redis_client_t *c = n->client;
    redisAsyncContext *ac;
    if (n->ac != NULL || c->destroying || n->retired)
        return;
    ac = n->unix_path != NULL ? redisAsyncConnectUnix(n->unix_path)
                              : redisAsyncConnect(n->host, n->port);
    if (ac == NULL)
        PROFILE_FATAL("out of memory (redisAsyncConnect)");
    if (ac->err != 0) {
        set_error(n, "connect failed", ac);
        redisAsyncFree(ac); /* no event hooks yet: hiredis closes its fd */
        n->state = STATE_DOWN;
        c->stats.disconnects++;
        mark_down(n);
        schedule_reconnect(n);
        return;
    }
    n->ac = ac;
    n->state = STATE_CONNECTING;
    ac->data = n;
    attach(n, ac);
    redisAsyncSetConnectCallback(ac, on_connected);
    redisAsyncSetDisconnectCallback(ac, on_disconnected);
    h2o_timeout_link(c->loop, &c->connect_timeout, &n->connect_entry);

    /* handshake, pipelined ahead of anything callers queue meanwhile */
    if (c->password != NULL) {
        if (c->user != NULL)
            redisAsyncCommand(ac, on_handshake, NULL, "AUTH %s %s", c->user, c->password);
        else
            redisAsyncCommand(ac, on_handshake, NULL, "AUTH %s", c->password);
    }
    if (c->db != 0)
        redisAsyncCommand(ac, on_handshake, NULL, "SELECT %d", c->db);
    redisAsyncCommand(ac, on_handshake, n, "PING");
}

/* ---------- nodes and the slot map ---------- */

static node_t *new_node(redis_client_t *c, const char *host, int port, const char *unix_path)
{
    node_t *n = xcalloc(1, sizeof(*n));
    n->client = c;
    n->host = host != NULL ? xstrdup(host) : NULL;
    n->port = port;
    n->unix_path = unix_path != NULL ? xstrdup(unix_path) : NULL;
    n->healthy = true;
    n->connect_entry.cb = on_connect_timeout;
    n->reconnect_entry.cb = on_reconnect_timer;
    if (unix_path != NULL) {
        snprintf(n->masked_url, sizeof(n->masked_url), "unix://%s", unix_path);
    } else {
        bool v6 = strchr(host, ':') != NULL;
        snprintf(n->masked_url, sizeof(n->masked_url), "redis://%s%s%s%s:%d/%d",
                 c->password != NULL ? "***@" : "", v6 ? "[" : "", host, v6 ? "]" : "", port,
                 c->db);
    }
    return n;
}

static void free_node(node_t *n)
{
    if (n == NULL)
        return;
    free(n->host);
    free(n->unix_path);
    free(n);
}

/* The node at host:port (cluster mode), added and connecting when new; -1 when the table is
 * full. A retired node comes back. */
static int node_index(redis_client_t *c, const char *host, int port)
{
    unsigned i;
    for (i = 0; i < c->nnodes; i++)
        if (c->nodes[i]->port == port && c->nodes[i]->host != NULL &&
            strcmp(c->nodes[i]->host, host) == 0)
            break;
    if (i == c->nnodes) {
        if (c->nnodes == MAX_NODES)
            return -1;
        c->nodes[c->nnodes++] = new_node(c, host, port, NULL);
    }
    node_t *n = c->nodes[i];
    n->in_map = true;
    if (n->retired) {
        n->retired = false;
        n->healthy = true;
        n->backoff_level = 0;
    }
    if (n->ac == NULL && !h2o_timeout_is_linked(&n->reconnect_entry))
        start_connect(n);
    return (int)i;
}

/* A node that left the map: no more reconnects while it is down, and out of the outage. */
static void retire(node_t *n)
{
    n->in_map = false;
    if (n->state != STATE_DOWN || n->retired)
        return;
    n->retired = true;
    h2o_timeout_unlink(&n->reconnect_entry);
    uncount_down(n, "cluster healed: a replica took over from the node lost");
}

static bool usable(const node_t *n)
{
    return n->state == STATE_UP && n->healthy && !n->retired;
}

/* Up, or opening its connection with no error since it was added or last connected: a command
 * queues behind the handshake (bounded by the command timeout), as a fresh client's first
 * commands do. A node that failed is not healthy until a handshake completes again. */
static bool usable_soon(const node_t *n)
{
    return usable(n) ||
           (n->state == STATE_CONNECTING && n->healthy && !n->retired && n->ac != NULL);
}

/* Whether the map points at a node that is down (then it is read again, soon). */
static bool map_has_down_node(const redis_client_t *c)
{
    for (unsigned i = 0; i < c->nnodes; i++)
        if (c->nodes[i]->in_map && !usable(c->nodes[i]))
            return true;
    return false;
}

static void apply_map(redis_client_t *c, const redis_cluster_range_t *r, int nr)
{
    bool ref[MAX_NODES] = {false};
    int8_t *map = xmalloc(REDIS_CLUSTER_SLOTS);
    memset(map, -1, REDIS_CLUSTER_SLOTS);
    for (int i = 0; i < nr; i++) {
        int idx = node_index(c, r[i].host, r[i].port);
        if (idx < 0) {
            log_warn("redis cluster has more than %d nodes; slots %u-%u left unmapped", MAX_NODES,
                     r[i].start, r[i].end);
            continue;
        }
        ref[idx] = true;
        memset(map + r[i].start, idx, r[i].end - r[i].start + 1);
    }
    bool changed = !c->map_known || memcmp(map, c->slot_node, REDIS_CLUSTER_SLOTS) != 0;
    memcpy(c->slot_node, map, REDIS_CLUSTER_SLOTS);
    free(map);
    c->map_known = true;
    for (unsigned i = 0; i < c->nnodes; i++)
        if (!ref[i])
            retire(c->nodes[i]);
    if (changed) {
        unsigned masters = 0;
        for (unsigned i = 0; i < c->nnodes; i++)
            masters += ref[i];
        log_debug("redis cluster slot map: %d ranges on %u masters", nr, masters);
    }
}

typedef struct st_refresh_t {
    redis_client_t *c;
    node_t *asked;
} refresh_t;

static void on_slots_reply(const redisReply *reply, void *ud)
{
    refresh_t *rf = ud;
    redis_client_t *c = rf->c;
    c->refreshing = false;
    if (reply != NULL && reply->type != REDIS_REPLY_ERROR && !c->destroying) {
        redis_cluster_range_t *ranges = xmalloc(sizeof(*ranges) * MAX_RANGES);
        int nr = redis_cluster_parse_slots(reply, rf->asked->host, ranges, MAX_RANGES);
        if (nr >= 0)
            apply_map(c, ranges, nr);
        else
            note_error(c, rf->asked, "BADSLOTMAP CLUSTER SLOTS reply not understood", 45);
        free(ranges);
    }
    free(rf);
    if (!c->destroying && (!c->map_known || map_has_down_node(c)))
        request_refresh(c);
}

static cmd_t *new_cmd(redis_client_t *c, redis_client_cb_t cb, void *ud,
                      const redis_script_t *script, int nkeys, int argc, const char *const *argv,
                      const size_t *argvlen);

static void on_refresh_timer(h2o_timeout_entry_t *entry)
{
    redis_client_t *c = H2O_STRUCT_FROM_MEMBER(redis_client_t, refresh_entry, entry);
    node_t *n = NULL;
    /* any node that answers: the slot map is the same from each of them */
    for (unsigned i = 0; i < c->nnodes && n == NULL; i++)
        if (usable(c->nodes[i]))
            n = c->nodes[i];
    if (n == NULL)
        return; /* the next handshake asks again */
    refresh_t *rf = xmalloc(sizeof(*rf));
    *rf = (refresh_t){c, n};
    static const char *const argv[] = {"CLUSTER", "SLOTS"};
    cmd_t *cmd = new_cmd(c, on_slots_reply, rf, NULL, 0, 2, argv, NULL);
    cmd->only = n;
    c->refreshing = true;
    c->stats.refreshes++;
    submit(c, cmd);
}

static void request_refresh(redis_client_t *c)
{
    if (!c->cluster || c->destroying || c->refreshing || h2o_timeout_is_linked(&c->refresh_entry))
        return;
    h2o_timeout_link(c->loop, &c->refresh_timeout, &c->refresh_entry);
}

/* ---------- commands ---------- */

static void free_cmd(cmd_t *cmd)
{
    free(cmd); /* argv, argvlen and the argument bytes live in the same allocation */
}

static void deliver_fail(h2o_timeout_entry_t *entry)
{
    cmd_t *cmd = H2O_STRUCT_FROM_MEMBER(cmd_t, entry, entry);
    if (cmd->cb != NULL)
        cmd->cb(NULL, cmd->ud);
    free_cmd(cmd);
}

static void fail_later(redis_client_t *c, cmd_t *cmd)
{
    c->stats.failed++;
    c->stats.fail_fast++;
    cmd->entry.cb = deliver_fail;
    h2o_timeout_link(c->loop, &c->fail_timeout, &cmd->entry);
}

static void on_command_timeout(h2o_timeout_entry_t *entry)
{
    cmd_t *cmd = H2O_STRUCT_FROM_MEMBER(cmd_t, entry, entry);
    redis_client_t *c = cmd->client;
    c->stats.timeouts++;
    /* replies come in order, so everything behind this one is late too: start afresh */
    teardown(cmd->node, "command timeout");
}

static bool name_is(const char *arg, size_t len, const char *name)
{
    return strlen(name) == len && strncasecmp(arg, name, len) == 0;
}

/* Which arguments of a command are keys: [*first, *end). */
static void key_args(const cmd_t *cmd, int nkeys, int *first, int *end)
{
    const char *name = cmd->argv[0];
    size_t len = cmd->argvlen[0];
    static const char *const keyless[] = {"PING",   "CLUSTER",  "SCRIPT",  "INFO",    "ECHO",
                                          "TIME",   "FLUSHALL", "FLUSHDB", "DBSIZE",  "CONFIG",
                                          "CLIENT", "COMMAND",  "ASKING",  "READONLY"};
    *first = 1;
    *end = cmd->argc > 1 ? 2 : 1;
    if (cmd->script != NULL) {
        *first = 3;
        *end = 3 + nkeys <= cmd->argc ? 3 + nkeys : cmd->argc;
        return;
    }
    if (name_is(name, len, "MGET") || name_is(name, len, "DEL") || name_is(name, len, "UNLINK") ||
        name_is(name, len, "EXISTS") || name_is(name, len, "TOUCH")) {
        *end = cmd->argc;
        return;
    }
    for (size_t i = 0; i < sizeof(keyless) / sizeof(keyless[0]); i++)
        if (name_is(name, len, keyless[i]))
            *end = *first;
}

/* The slot of the command's keys: -1 without keys, -2 when they span slots. */
static int command_slot(const cmd_t *cmd, int nkeys)
{
    int first, end, slot = -1;
    key_args(cmd, nkeys, &first, &end);
    for (int i = first; i < end; i++) {
        int s = (int)redis_cluster_key_slot(cmd->argv[i], cmd->argvlen[i]);
        if (slot >= 0 && s != slot)
            return -2;
        slot = s;
    }
    return slot;
}

/* One allocation: cmd, argv[], argvlen[], numkeys text, argument bytes. A script call is sent
 * as EVALSHA sha numkeys, followed by `argv`. */
static cmd_t *new_cmd(redis_client_t *c, redis_client_cb_t cb, void *ud,
                      const redis_script_t *script, int nkeys, int argc, const char *const *argv,
                      const size_t *argvlen)
{
    int head = script != NULL ? 3 : 0, total = head + argc;
    size_t bytes = sizeof(cmd_t) + (size_t)total * (sizeof(char *) + sizeof(size_t)) + 16;
    size_t lens[argc > 0 ? argc : 1];
    for (int i = 0; i < argc; i++) {
        lens[i] = argvlen != NULL ? argvlen[i] : strlen(argv[i]);
        bytes += lens[i] + 1;
    }
    cmd_t *cmd = xcalloc(1, bytes);
    char *p = (char *)(cmd + 1);
    cmd->argv = (const char **)p;
    p += (size_t)total * sizeof(char *);
    cmd->argvlen = (size_t *)p;
    p += (size_t)total * sizeof(size_t);
    cmd->client = c;
    cmd->cb = cb;
    cmd->ud = ud;
    cmd->script = script;
    cmd->argc = total;
    if (script != NULL) {
        cmd->argv[0] = "EVALSHA";
        cmd->argvlen[0] = 7;
        cmd->argv[1] = script->sha1;
        cmd->argvlen[1] = 40;
        cmd->argvlen[2] = (size_t)snprintf(p, 16, "%d", nkeys);
        cmd->argv[2] = p;
    }
    p += 16;
    for (int i = 0; i < argc; i++) {
        memcpy(p, argv[i], lens[i]);
        p[lens[i]] = '\0';
        cmd->argv[head + i] = p;
        cmd->argvlen[head + i] = lens[i];
        p += lens[i] + 1;
    }
    cmd->slot = c->cluster && argc > 0 ? command_slot(cmd, nkeys) : -1;
    return cmd;
}

/* The node serving the command's slot; in cluster mode without a map entry, any node that is
 * up (a MOVED then teaches the way). NULL when there is none. */
static node_t *route(redis_client_t *c, const cmd_t *cmd)
{
    if (cmd->only != NULL)
        return cmd->only;
    if (!c->cluster)
        return c->nodes[0];
    if (cmd->slot >= 0 && c->slot_node[cmd->slot] >= 0)
        return c->nodes[c->slot_node[cmd->slot]];
    node_t *connecting = NULL;
    for (unsigned i = 0; i < c->nnodes; i++) {
        node_t *n = c->nodes[i];
        if (usable(n))
            return n;
        if (connecting == NULL && n->ac != NULL && n->healthy && !n->retired)
            connecting = n; /* queued behind its handshake, as the very first commands are */
    }
    return connecting;
}

static void on_reply(redisAsyncContext *ac, void *r, void *privdata);

/* Sends `cmd` to its node (or its ASK target). 0 when sent; -1 leaves it to the caller. */
static int dispatch(redis_client_t *c, cmd_t *cmd)
{
    node_t *n = cmd->ask != NULL ? cmd->ask : route(c, cmd);
    if (n == NULL || c->destroying || n->ac == NULL || !n->healthy || n->pending >= c->max_pending)
        return -1;
    if (cmd->ask != NULL) {
        if (redisAsyncCommand(n->ac, NULL, NULL, "ASKING") != REDIS_OK)
            return -1;
        cmd->ask = NULL;
    }
    if (redisAsyncCommandArgv(n->ac, on_reply, cmd, cmd->argc, (const char **)(uintptr_t)cmd->argv,
                              cmd->argvlen) != REDIS_OK)
        return -1;
    cmd->node = n;
    cmd->entry.cb = on_command_timeout;
    h2o_timeout_link(c->loop, &c->command_timeout, &cmd->entry);
    n->pending++;
    return 0;
}

static int submit(redis_client_t *c, cmd_t *cmd)
{
    if (cmd->slot == -2) {
        static const char msg[] = "CROSSSLOT keys of one command in different slots (not sent)";
        note_error(c, NULL, msg, sizeof(msg) - 1);
    } else if (dispatch(c, cmd) == 0) {
        c->stats.commands++;
        return 0;
    }
    fail_later(c, cmd);
    return -1;
}

/*
 * A reply that asks for the command again: MOVED (the map is out of date: learn the slot's new
 * master now, re-read the whole map soon), ASK (one command to the importing node) or NOSCRIPT
 * (resent as EVAL, which also loads the script). 1 when resent, 0 when the reply stands, -1
 * when the resend failed.
 */
static int resend(redis_client_t *c, cmd_t *cmd, const redisReply *reply)
{
    redis_cluster_redirect_t rd;
    if (c->cluster &&
        redis_cluster_parse_redirect(reply->str, reply->len, &rd) != REDIS_CLUSTER_NO_REDIRECT) {
        if (cmd->redirects >= MAX_REDIRECTS || cmd->only != NULL)
            return 0;
        int idx = node_index(c, rd.host, rd.port);
        if (idx < 0)
            return 0;
        cmd->redirects++;
        if (rd.kind == REDIS_CLUSTER_MOVED) {
            c->stats.moved++;
            c->slot_node[rd.slot] = (int8_t)idx;
            request_refresh(c);
        } else {
            c->stats.ask++;
            cmd->ask = c->nodes[idx];
        }
        return dispatch(c, cmd) == 0 ? 1 : -1;
    }
    if (cmd->script != NULL && !cmd->retried && strncmp(reply->str, "NOSCRIPT", 8) == 0) {
        cmd->retried = true;
        c->stats.noscript++;
        cmd->argv[0] = "EVAL";
        cmd->argvlen[0] = 4;
        cmd->argv[1] = cmd->script->source;
        cmd->argvlen[1] = strlen(cmd->script->source);
        return dispatch(c, cmd) == 0 ? 1 : -1;
    }
    return 0;
}

static void on_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    cmd_t *cmd = privdata;
    node_t *n = cmd->node;
    redis_client_t *c = cmd->client;
    redisReply *reply = r;

    h2o_timeout_unlink(&cmd->entry);
    n->pending--;
    if (reply == NULL) {
        /* the context is going away; if it is still ours, this is the first news of it */
        if (n->ac == ac) {
            set_error(n, "connection lost", ac);
            detach(n);
        }
        c->stats.failed++;
    } else if (reply->type == REDIS_REPLY_ERROR) {
        int resent = resend(c, cmd, reply);
        if (resent > 0)
            return;
        if (resent < 0) {
            reply = NULL;
            c->stats.failed++;
        } else {
            note_error(c, n, reply->str, reply->len);
        }
    }
    if (cmd->cb != NULL)
        cmd->cb(reply, cmd->ud);
    free_cmd(cmd);
}

int redis_client_command(redis_client_t *c, redis_client_cb_t cb, void *ud, int argc,
                         const char *const *argv, const size_t *argvlen)
{
    return submit(c, new_cmd(c, cb, ud, NULL, 0, argc, argv, argvlen));
}

int redis_client_eval(redis_client_t *c, const redis_script_t *script, int nkeys, int argc,
                      const char *const *argv, const size_t *argvlen, redis_client_cb_t cb,
                      void *ud)
{
    return submit(c, new_cmd(c, cb, ud, script, nkeys, argc, argv, argvlen));
}

/* ---------- URL ---------- */

/* One parsed URL. */
typedef struct st_url_t {
    char *host; /* NULL for unix sockets */
    int port;
    char *unix_path; /* NULL for TCP */
    char *user;      /* ACL user, NULL for none */
    char *password;  /* NULL for none */
    int db;
    char masked_url[256];
} url_t;

/* Long (86 lines): the URL read left to right, each part with its own error message. */
static int parse_url(const char *url, url_t *c, char *errbuf, size_t errlen)
{
    const char *p;
    if (strncmp(url, "unix://", 7) == 0) {
        const char *path = url + 7, *q = strchr(path, '?');
        size_t n = q != NULL ? (size_t)(q - path) : strlen(path);
        if (n == 0 || path[0] != '/') {
            snprintf(errbuf, errlen, "unix:// URL needs an absolute socket path");
            return -1;
        }
        c->unix_path = xstrndup(path, n);
        if (q != NULL) {
            char *end;
            if (strncmp(q, "?db=", 4) != 0 || (c->db = (int)strtol(q + 4, &end, 10)) < 0 ||
                *end != '\0' || end == q + 4) {
                snprintf(errbuf, errlen, "unix:// URL: only ?db=N is understood");
                return -1;
            }
        }
        snprintf(c->masked_url, sizeof(c->masked_url), "unix://%s", c->unix_path);
        return 0;
    }
    if (strncmp(url, "redis://", 8) != 0) {
        snprintf(errbuf, errlen, "must start with redis:// or unix://");
        return -1;
    }
    p = url + 8;
    const char *at = strrchr(p, '@');
    if (at != NULL) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        if (colon == NULL) {
            snprintf(errbuf, errlen, "credentials must be [user]:password@");
            return -1;
        }
        if (colon > p)
            c->user = xstrndup(p, (size_t)(colon - p));
        if (at - colon - 1 > 0)
            c->password = xstrndup(colon + 1, (size_t)(at - colon - 1));
        p = at + 1;
    }
    const char *hend;
    if (*p == '[') { /* IPv6 literal */
        const char *rb = strchr(p, ']');
        if (rb == NULL) {
            snprintf(errbuf, errlen, "unterminated [IPv6] host");
            return -1;
        }
        c->host = xstrndup(p + 1, (size_t)(rb - p - 1));
        hend = rb + 1;
    } else {
        hend = p + strcspn(p, ":/");
        c->host = xstrndup(p, (size_t)(hend - p));
    }
    if (c->host[0] == '\0') {
        snprintf(errbuf, errlen, "missing host");
        return -1;
    }
    c->port = 6379;
    if (*hend == ':') {
        char *end;
        long port = strtol(hend + 1, &end, 10);
        if (end == hend + 1 || port < 1 || port > 65535 || (*end != '\0' && *end != '/')) {
            snprintf(errbuf, errlen, "bad port");
            return -1;
        }
        c->port = (int)port;
        hend = end;
    }
    if (*hend == '/' && hend[1] != '\0') {
        char *end;
        long db = strtol(hend + 1, &end, 10);
        if (end == hend + 1 || *end != '\0' || db < 0 || db > 1000000) {
            snprintf(errbuf, errlen, "bad database number");
            return -1;
        }
        c->db = (int)db;
    } else if (*hend != '\0' && !(*hend == '/' && hend[1] == '\0')) {
        snprintf(errbuf, errlen, "unexpected text after host");
        return -1;
    }
    bool v6 = strchr(c->host, ':') != NULL;
    snprintf(c->masked_url, sizeof(c->masked_url), "redis://%s%s%s%s:%d/%d",
             c->password != NULL ? "***@" : "", v6 ? "[" : "", c->host, v6 ? "]" : "", c->port,
             c->db);
    return 0;
}

static void free_addr(url_t *c)
{
    free(c->host);
    free(c->unix_path);
    free(c->user);
    free(c->password);
}

int redis_client_check_url(const char *url, char *errbuf, size_t errlen)
{
    url_t tmp;
    memset(&tmp, 0, sizeof(tmp));
    int ret = parse_url(url != NULL ? url : "", &tmp, errbuf, errlen);
    free_addr(&tmp);
    return ret;
}

/* Parses a comma list of seed URLs (cluster mode) into `seeds` (at most MAX_NODES); returns
 * how many, or -1 with a reason. Cluster nodes have database 0 only and speak TCP. */
static int parse_seeds(const char *list, url_t *seeds, char *errbuf, size_t errlen)
{
    int n = 0;
    const char *p = list;
    for (;;) {
        while (*p == ' ')
            p++;
        size_t len = strcspn(p, ",");
        while (len > 0 && p[len - 1] == ' ')
            len--;
        if (n == MAX_NODES) {
            snprintf(errbuf, errlen, "more than %d seed nodes", MAX_NODES);
            return -1;
        }
        char *one = xstrndup(p, len);
        char why[200];
        int ret = parse_url(one, &seeds[n], why, sizeof(why));
        free(one);
        n++;
        if (ret != 0) {
            snprintf(errbuf, errlen, "seed %d: %s", n, why);
            return -1;
        }
        if (seeds[n - 1].unix_path != NULL || seeds[n - 1].db != 0) {
            snprintf(errbuf, errlen,
                     "seed %d: cluster mode takes redis://host:port seeds with database 0", n);
            return -1;
        }
        p += strcspn(p, ",");
        if (*p == '\0')
            return n;
        p++;
    }
}

int redis_client_check_cluster_url(const char *list, char *errbuf, size_t errlen)
{
    url_t seeds[MAX_NODES];
    memset(seeds, 0, sizeof(seeds));
    int n = parse_seeds(list != NULL ? list : "", seeds, errbuf, errlen);
    for (int i = 0; i < MAX_NODES; i++)
        free_addr(&seeds[i]);
    return n > 0 ? 0 : -1;
}

/* ---------- life cycle ---------- */

redis_client_t *redis_client_create(h2o_loop_t *loop, const redis_client_config_t *cfg,
                                    char *errbuf, size_t errlen)
{
    redis_client_t *c = xcalloc(1, sizeof(*c));
    url_t urls[MAX_NODES];
    int nurls;
    memset(urls, 0, sizeof(urls));
    c->cluster = cfg->cluster;
    if (c->cluster)
        nurls = parse_seeds(cfg->url != NULL ? cfg->url : "", urls, errbuf, errlen);
    else
        nurls = parse_url(cfg->url != NULL ? cfg->url : "", &urls[0], errbuf, errlen) == 0 ? 1 : -1;
    if (nurls < 0) {
        for (int i = 0; i < MAX_NODES; i++)
            free_addr(&urls[i]);
        free(c);
        return NULL;
    }
    for (int i = 0; i < nurls && c->password == NULL; i++) {
        if (urls[i].password != NULL) { /* every node takes the same credentials */
            c->password = xstrdup(urls[i].password);
            c->user = urls[i].user != NULL ? xstrdup(urls[i].user) : NULL;
        }
    }
    c->db = urls[0].db;
    unsigned connect_ms = cfg->connect_timeout_ms ? cfg->connect_timeout_ms : 1000;
    unsigned command_ms = cfg->command_timeout_ms ? cfg->command_timeout_ms : 500;
    unsigned bmin = cfg->backoff_min_ms ? cfg->backoff_min_ms : 50;
    unsigned bmax = cfg->backoff_max_ms ? cfg->backoff_max_ms : 5000;
    if (bmax < bmin)
        bmax = bmin;
    c->loop = loop;
    c->max_pending = cfg->max_pending ? cfg->max_pending : 10000;
    h2o_timeout_init(loop, &c->connect_timeout, connect_ms);
    h2o_timeout_init(loop, &c->command_timeout, command_ms);
    h2o_timeout_init(loop, &c->fail_timeout, 0);
    h2o_timeout_init(loop, &c->flush_timeout, 0);
    h2o_timeout_init(loop, &c->refresh_timeout, REFRESH_DELAY_MS);
    c->flush_entry.cb = on_flush;
    c->refresh_entry.cb = on_refresh_timer;
    /* fixed backoff levels: an h2o_timeout_t has one duration and must not be re-initialised
     * while the loop may be walking its timeout list */
    uint64_t ms = bmin;
    for (;;) {
        h2o_timeout_init(loop, &c->backoff[c->nlevels++], ms);
        if (ms >= bmax || c->nlevels == BACKOFF_LEVELS)
            break;
        ms = ms * 2 < bmax ? ms * 2 : bmax;
    }
    if (c->cluster) {
        c->slot_node = xmalloc(REDIS_CLUSTER_SLOTS);
        memset(c->slot_node, -1, REDIS_CLUSTER_SLOTS);
    }
    for (int i = 0; i < nurls; i++)
        c->nodes[c->nnodes++] = new_node(c, urls[i].host, urls[i].port, urls[i].unix_path);
    c->nseeds = c->nnodes;
    for (int i = 0; i < MAX_NODES; i++)
        free_addr(&urls[i]);
    for (unsigned i = 0; i < c->nnodes; i++)
        start_connect(c->nodes[i]);
    return c;
}

void redis_client_destroy(redis_client_t *c)
{
    if (c == NULL)
        return;
    c->destroying = true;
    for (unsigned i = 0; i < c->nnodes; i++) {
        teardown(c->nodes[i], "client destroyed");
        h2o_timeout_unlink(&c->nodes[i]->reconnect_entry);
        h2o_timeout_unlink(&c->nodes[i]->connect_entry);
    }
    h2o_timeout_unlink(&c->flush_entry);
    h2o_timeout_unlink(&c->refresh_entry);
    while (!h2o_linklist_is_empty(&c->fail_timeout._entries)) {
        h2o_timeout_entry_t *e =
            H2O_STRUCT_FROM_MEMBER(h2o_timeout_entry_t, _link, c->fail_timeout._entries.next);
        h2o_timeout_unlink(e);
        deliver_fail(e);
    }
    for (unsigned i = 0; i < c->nnodes; i++) {
        if (c->nodes[i]->counted_down) {
            c->nodes[i]->counted_down = false;
            atomic_fetch_sub(&g_nodes_down, 1);
        }
        free_node(c->nodes[i]);
    }
    h2o_timeout_dispose(c->loop, &c->connect_timeout);
    h2o_timeout_dispose(c->loop, &c->command_timeout);
    h2o_timeout_dispose(c->loop, &c->fail_timeout);
    h2o_timeout_dispose(c->loop, &c->flush_timeout);
    h2o_timeout_dispose(c->loop, &c->refresh_timeout);
    for (unsigned i = 0; i < c->nlevels; i++)
        h2o_timeout_dispose(c->loop, &c->backoff[i]);
    free(c->slot_node);
    free(c->user);
    free(c->password);
    free(c);
}

bool redis_client_is_up(const redis_client_t *c)
{
    if (c == NULL)
        return false;
    if (!c->cluster)
        return usable(c->nodes[0]);
    return c->map_known && !map_has_down_node(c);
}

bool redis_client_is_up_for(const redis_client_t *c, const char *key)
{
    if (c == NULL || !c->cluster)
        return redis_client_is_up(c);
    if (!c->map_known) {
        /* commands wait behind the first seed's handshake, then a MOVED teaches the way */
        for (unsigned i = 0; i < c->nnodes; i++)
            if (usable_soon(c->nodes[i]))
                return true;
        return false;
    }
    int idx = c->slot_node[redis_cluster_key_slot(key, strlen(key))];
    return idx >= 0 && usable_soon(c->nodes[idx]);
}

bool redis_client_is_cluster(const redis_client_t *c)
{
    return c->cluster;
}

int redis_client_key_slot(const redis_client_t *c, const char *key)
{
    return c->cluster ? (int)redis_cluster_key_slot(key, strlen(key)) : 0;
}

h2o_loop_t *redis_client_loop(const redis_client_t *c)
{
    return c->loop;
}

void redis_client_get_stats(const redis_client_t *c, redis_client_stats_t *out)
{
    *out = c->stats;
}

void redis_script_init(redis_script_t *s, const char *source)
{
    unsigned char md[SHA_DIGEST_LENGTH];
    s->source = source;
    SHA1((const unsigned char *)source, strlen(source), md);
    for (int i = 0; i < SHA_DIGEST_LENGTH; i++)
        snprintf(s->sha1 + 2 * i, 3, "%02x", md[i]);
}

uint64_t redis_client_outages(void)
{
    return atomic_load(&g_outages);
}
