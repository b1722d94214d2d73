/*
 * hiredis async context on an h2o evloop: socket adapter (hiredis reads and writes the fd
 * itself, h2o only reports readiness), connect/command timeouts, reconnect with backoff.
 */
#include "api/data/redis_client.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <hiredis/async.h>
#include <openssl/sha.h>

#include "common/clock.h"
#include "common/alloc.h"
#include "common/log.h"

#define LOG_MODULE "redis"

#define BACKOFF_LEVELS 12

typedef enum {
    STATE_DOWN = 0,   /* no context; a reconnect is scheduled */
    STATE_CONNECTING, /* context exists, handshake not finished */
    STATE_UP,         /* handshake finished */
} state_t;

struct st_redis_client_t {
    h2o_loop_t *loop;
    /* address */
    char *host; /* NULL for unix sockets */
    int port;
    char *unix_path; /* NULL for TCP */
    char *user;      /* ACL user, NULL for none */
    char *password;  /* NULL for none */
    int db;
    char masked_url[256];
    /* settings */
    unsigned max_pending;
    /* connection */
    redisAsyncContext *ac;
    state_t state;
    bool healthy;      /* false from any error until a handshake completes */
    bool counted_down; /* this client counts in the process-wide outage */
    bool destroying;
    unsigned pending; /* commands waiting for their reply */
    int64_t down_since_ms;
    char last_error[128];
    unsigned backoff_level;
    unsigned nlevels;
    /* timers */
    h2o_timeout_t connect_timeout;
    h2o_timeout_entry_t connect_entry;
    h2o_timeout_t command_timeout;
    h2o_timeout_t fail_timeout; /* 0 ms: delivers fail-fast callbacks on the next iteration */
    h2o_timeout_t backoff[BACKOFF_LEVELS];
    h2o_timeout_entry_t reconnect_entry;
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

/* One command in flight (or waiting for its fail-fast callback). */
typedef struct st_cmd_t {
    redis_client_t *client;
    redis_client_cb_t cb;
    void *ud;
    h2o_timeout_entry_t entry; /* command timeout, or the fail-fast deferral */
    /* EVALSHA only: what is needed to resend as EVAL */
    const redis_script_t *script;
    int argc; /* including the 3 leading EVAL/sha/numkeys */
    const char **argv;
    size_t *argvlen;
    bool retried;
} cmd_t;

/* Per-context adapter state, freed by the hiredis cleanup hook. */
typedef struct st_adapter_t {
    redisAsyncContext *ac;
    h2o_socket_t *sock;
} adapter_t;

static atomic_uint g_clients_down;
static atomic_uint_fast64_t g_outages;

static void start_connect(redis_client_t *c);

/* ---------- helpers ---------- */

static void set_error(redis_client_t *c, const char *why, const redisAsyncContext *ac)
{
    if (ac != NULL && ac->errstr != NULL && ac->errstr[0] != '\0')
        snprintf(c->last_error, sizeof(c->last_error), "%s: %s", why, ac->errstr);
    else
        snprintf(c->last_error, sizeof(c->last_error), "%s", why);
}

/* Records that this client is down; the first client down in the process logs the outage. */
static void mark_down(redis_client_t *c)
{
    c->healthy = false;
    if (c->counted_down)
        return;
    c->counted_down = true;
    c->down_since_ms = clock_mono_ms();
    if (atomic_fetch_add(&g_clients_down, 1) == 0) {
        atomic_fetch_add(&g_outages, 1);
        log_warn("redis unreachable at %s (%s); caching off, rate limiter failing open until it "
                 "is back",
                 c->masked_url, c->last_error);
    } else {
        log_debug("redis client down at %s (%s)", c->masked_url, c->last_error);
    }
}

static void mark_up(redis_client_t *c)
{
    c->healthy = true;
    c->state = STATE_UP;
    c->backoff_level = 0;
    c->stats.connects++;
    if (!c->counted_down)
        return;
    c->counted_down = false;
    if (atomic_fetch_sub(&g_clients_down, 1) == 1)
        log_info("redis reachable again at %s after %lld ms", c->masked_url,
                 (long long)(clock_mono_ms() - c->down_since_ms));
}

static void schedule_reconnect(redis_client_t *c)
{
    if (c->destroying || h2o_timeout_is_linked(&c->reconnect_entry))
        return;
    h2o_timeout_link(c->loop, &c->backoff[c->backoff_level], &c->reconnect_entry);
    if (c->backoff_level + 1 < c->nlevels)
        c->backoff_level++;
}

/*
 * Forgets the current context: it is being freed (by hiredis after an error, or by us right
 * after). Its pending callbacks still run, with NULL replies, and find state DOWN.
 */
static void detach(redis_client_t *c)
{
    redisAsyncContext *ac = c->ac;
    if (ac == NULL)
        return;
    ac->data = NULL;
    c->ac = NULL;
    c->state = STATE_DOWN;
    c->stats.disconnects++;
    h2o_timeout_unlink(&c->connect_entry);
    if (c->destroying)
        return;
    mark_down(c);
    schedule_reconnect(c);
}

/* Drops the connection on purpose (timeout, failed handshake). A context is never reused. */
static void teardown(redis_client_t *c, const char *why)
{
    redisAsyncContext *ac = c->ac;
    if (ac == NULL)
        return;
    set_error(c, why, NULL);
    detach(c);
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
    redis_client_t *c = a->ac->data;
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
    if (c->ac != NULL && (c->ac->c.flags & REDIS_CONNECTED) != 0)
        redisAsyncHandleWrite(c->ac); /* may free the context (then detach() clears c->ac) */
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

static void attach(redis_client_t *c, redisAsyncContext *ac)
{
    adapter_t *a = xmalloc(sizeof(*a));
    a->ac = ac;
    a->sock = h2o_evloop_socket_create(c->loop, ac->c.fd, H2O_SOCKET_FLAG_DONT_READ);
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
    redis_client_t *c = ac->data;
    if (c == NULL || status == REDIS_OK)
        return; /* success is declared by the handshake's PING reply */
    /* hiredis frees the context right after this callback */
    set_error(c, "connect failed", ac);
    detach(c);
}

static void on_disconnected(const redisAsyncContext *ac, int status)
{
    redis_client_t *c = ac->data;
    if (c == NULL)
        return;
    set_error(c, "connection lost", ac);
    detach(c);
}

static void on_handshake(redisAsyncContext *ac, void *r, void *privdata)
{
    redis_client_t *c = ac->data;
    redisReply *reply = r;
    if (c == NULL || c->ac != ac)
        return;
    if (reply == NULL) {
        set_error(c, "connection lost during handshake", ac);
        detach(c);
        return;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        char why[128];
        snprintf(why, sizeof(why), "handshake refused: %.100s", reply->str);
        teardown(c, why);
        return;
    }
    if (privdata != NULL) { /* the final PING */
        h2o_timeout_unlink(&c->connect_entry);
        mark_up(c);
        log_debug("redis connected to %s", c->masked_url);
    }
}

static void on_connect_timeout(h2o_timeout_entry_t *entry)
{
    redis_client_t *c = H2O_STRUCT_FROM_MEMBER(redis_client_t, connect_entry, entry);
    teardown(c, "connect timeout");
}

static void on_reconnect_timer(h2o_timeout_entry_t *entry)
{
    redis_client_t *c = H2O_STRUCT_FROM_MEMBER(redis_client_t, reconnect_entry, entry);
    start_connect(c);
}

static void start_connect(redis_client_t *c)
{
    redisAsyncContext *ac;
    if (c->ac != NULL || c->destroying)
        return;
    ac = c->unix_path != NULL ? redisAsyncConnectUnix(c->unix_path)
                              : redisAsyncConnect(c->host, c->port);
    if (ac == NULL)
        PROFILE_FATAL("out of memory (redisAsyncConnect)");
    if (ac->err != 0) {
        set_error(c, "connect failed", ac);
        redisAsyncFree(ac); /* no event hooks yet: hiredis closes its fd */
        c->state = STATE_DOWN;
        c->stats.disconnects++;
        mark_down(c);
        schedule_reconnect(c);
        return;
    }
    c->ac = ac;
    c->state = STATE_CONNECTING;
    ac->data = c;
    attach(c, ac);
    redisAsyncSetConnectCallback(ac, on_connected);
    redisAsyncSetDisconnectCallback(ac, on_disconnected);
    h2o_timeout_link(c->loop, &c->connect_timeout, &c->connect_entry);

    /* handshake, pipelined ahead of anything callers queue meanwhile */
    if (c->password != NULL) {
        if (c->user != NULL)
            redisAsyncCommand(ac, on_handshake, NULL, "AUTH %s %s", c->user, c->password);
        else
            redisAsyncCommand(ac, on_handshake, NULL, "AUTH %s", c->password);
    }
    if (c->db != 0)
        redisAsyncCommand(ac, on_handshake, NULL, "SELECT %d", c->db);
    redisAsyncCommand(ac, on_handshake, c, "PING");
}

/* ---------- commands ---------- */

static void free_cmd(cmd_t *cmd)
{
    free(cmd); /* argv and argvlen live in the same allocation */
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
    teardown(c, "command timeout");
}

static void on_reply(redisAsyncContext *ac, void *r, void *privdata);

static int send_cmd(redis_client_t *c, cmd_t *cmd, int argc, const char *const *argv,
                    const size_t *argvlen)
{
    if (redisAsyncCommandArgv(c->ac, on_reply, cmd, argc, (const char **)(uintptr_t)argv,
                              argvlen) != REDIS_OK)
        return -1;
    cmd->entry.cb = on_command_timeout;
    h2o_timeout_link(c->loop, &c->command_timeout, &cmd->entry);
    c->pending++;
    return 0;
}

static void on_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    cmd_t *cmd = privdata;
    redis_client_t *c = cmd->client;
    redisReply *reply = r;

    h2o_timeout_unlink(&cmd->entry);
    c->pending--;
    if (reply == NULL) {
        /* the context is going away; if it is still ours, this is the first news of it */
        if (c->ac == ac) {
            set_error(c, "connection lost", ac);
            detach(c);
        }
        c->stats.failed++;
    } else if (cmd->script != NULL && !cmd->retried && reply->type == REDIS_REPLY_ERROR &&
               strncmp(reply->str, "NOSCRIPT", 8) == 0 && c->ac == ac) {
        cmd->retried = true;
        c->stats.noscript++;
        cmd->argv[0] = "EVAL";
        cmd->argvlen[0] = 4;
        cmd->argv[1] = cmd->script->source;
        cmd->argvlen[1] = strlen(cmd->script->source);
        if (send_cmd(c, cmd, cmd->argc, cmd->argv, cmd->argvlen) == 0)
            return;
        reply = NULL;
        c->stats.failed++;
    }
    if (cmd->cb != NULL)
        cmd->cb(reply, cmd->ud);
    free_cmd(cmd);
}

static bool accepting(const redis_client_t *c)
{
    return c->ac != NULL && c->healthy && c->pending < c->max_pending;
}

int redis_client_command(redis_client_t *c, redis_client_cb_t cb, void *ud, int argc,
                         const char *const *argv, const size_t *argvlen)
{
    cmd_t *cmd = xcalloc(1, sizeof(*cmd));
    cmd->client = c;
    cmd->cb = cb;
    cmd->ud = ud;
    if (accepting(c) && send_cmd(c, cmd, argc, argv, argvlen) == 0) {
        c->stats.commands++;
        return 0;
    }
    fail_later(c, cmd);
    return -1;
}

int redis_client_eval(redis_client_t *c, const redis_script_t *script, int nkeys, int argc,
                      const char *const *argv, const size_t *argvlen, redis_client_cb_t cb,
                      void *ud)
{
    int total = argc + 3;
    size_t bytes = sizeof(cmd_t) + (size_t)total * (sizeof(char *) + sizeof(size_t)) + 16;
    size_t lens[argc > 0 ? argc : 1];
    for (int i = 0; i < argc; i++) {
        lens[i] = argvlen != NULL ? argvlen[i] : strlen(argv[i]);
        bytes += lens[i] + 1;
    }
    /* one allocation: cmd, argv[], argvlen[], numkeys text, argument bytes */
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
    if (!accepting(c)) {
        fail_later(c, cmd);
        return -1;
    }
    cmd->argv[0] = "EVALSHA";
    cmd->argvlen[0] = 7;
    cmd->argv[1] = script->sha1;
    cmd->argvlen[1] = 40;
    cmd->argvlen[2] = (size_t)snprintf(p, 16, "%d", nkeys);
    cmd->argv[2] = p;
    p += 16;
    for (int i = 0; i < argc; i++) {
        memcpy(p, argv[i], lens[i]);
        p[lens[i]] = '\0';
        cmd->argv[3 + i] = p;
        cmd->argvlen[3 + i] = lens[i];
        p += lens[i] + 1;
    }
    if (send_cmd(c, cmd, total, cmd->argv, cmd->argvlen) != 0) {
        fail_later(c, cmd);
        return -1;
    }
    c->stats.commands++;
    return 0;
}

/* ---------- URL ---------- */

/* Long (83 lines): the two URL forms (unix://, redis://) and their options read in one place. */
static int parse_url(const char *url, redis_client_t *c, char *errbuf, size_t errlen)
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

static void free_addr(redis_client_t *c)
{
    free(c->host);
    free(c->unix_path);
    free(c->user);
    free(c->password);
}

int redis_client_check_url(const char *url, char *errbuf, size_t errlen)
{
    redis_client_t tmp;
    memset(&tmp, 0, sizeof(tmp));
    int ret = parse_url(url != NULL ? url : "", &tmp, errbuf, errlen);
    free_addr(&tmp);
    return ret;
}

/* ---------- life cycle ---------- */

redis_client_t *redis_client_create(h2o_loop_t *loop, const redis_client_config_t *cfg,
                                    char *errbuf, size_t errlen)
{
    redis_client_t *c = xcalloc(1, sizeof(*c));
    if (parse_url(cfg->url != NULL ? cfg->url : "", c, errbuf, errlen) != 0) {
        free_addr(c);
        free(c);
        return NULL;
    }
    unsigned connect_ms = cfg->connect_timeout_ms ? cfg->connect_timeout_ms : 1000;
    unsigned command_ms = cfg->command_timeout_ms ? cfg->command_timeout_ms : 500;
    unsigned bmin = cfg->backoff_min_ms ? cfg->backoff_min_ms : 50;
    unsigned bmax = cfg->backoff_max_ms ? cfg->backoff_max_ms : 5000;
    if (bmax < bmin)
        bmax = bmin;
    c->loop = loop;
    c->max_pending = cfg->max_pending ? cfg->max_pending : 10000;
    c->healthy = true;
    h2o_timeout_init(loop, &c->connect_timeout, connect_ms);
    h2o_timeout_init(loop, &c->command_timeout, command_ms);
    h2o_timeout_init(loop, &c->fail_timeout, 0);
    h2o_timeout_init(loop, &c->flush_timeout, 0);
    c->flush_entry.cb = on_flush;
    /* fixed backoff levels: an h2o_timeout_t has one duration and must not be re-initialised
     * while the loop may be walking its timeout list */
    uint64_t ms = bmin;
    for (;;) {
        h2o_timeout_init(loop, &c->backoff[c->nlevels++], ms);
        if (ms >= bmax || c->nlevels == BACKOFF_LEVELS)
            break;
        ms = ms * 2 < bmax ? ms * 2 : bmax;
    }
    c->connect_entry.cb = on_connect_timeout;
    c->reconnect_entry.cb = on_reconnect_timer;
    start_connect(c);
    return c;
}

void redis_client_destroy(redis_client_t *c)
{
    if (c == NULL)
        return;
    c->destroying = true;
    teardown(c, "client destroyed");
    h2o_timeout_unlink(&c->reconnect_entry);
    h2o_timeout_unlink(&c->connect_entry);
    h2o_timeout_unlink(&c->flush_entry);
    while (!h2o_linklist_is_empty(&c->fail_timeout._entries)) {
        h2o_timeout_entry_t *e =
            H2O_STRUCT_FROM_MEMBER(h2o_timeout_entry_t, _link, c->fail_timeout._entries.next);
        h2o_timeout_unlink(e);
        deliver_fail(e);
    }
    if (c->counted_down) {
        c->counted_down = false;
        atomic_fetch_sub(&g_clients_down, 1);
    }
    h2o_timeout_dispose(c->loop, &c->connect_timeout);
    h2o_timeout_dispose(c->loop, &c->command_timeout);
    h2o_timeout_dispose(c->loop, &c->fail_timeout);
    h2o_timeout_dispose(c->loop, &c->flush_timeout);
    for (unsigned i = 0; i < c->nlevels; i++)
        h2o_timeout_dispose(c->loop, &c->backoff[i]);
    free_addr(c);
    free(c);
}

bool redis_client_is_up(const redis_client_t *c)
{
    return c != NULL && c->state == STATE_UP && c->healthy;
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
