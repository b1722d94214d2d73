/*
 * Tests api/data/redis_client.c against a real redis-server started on a free port: commands,
 * EVALSHA/NOSCRIPT, pipelining, timeouts under SIGSTOP, reconnect after a kill, fail fast;
 * and cluster mode against two cluster-enabled redis-servers sharing the slots: routing by
 * slot from one seed, CROSSSLOT refused, MOVED after a slot moved, ASK during a migration, one
 * master down affecting its slots only.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "api/data/redis_client.h"
#include "common/cache.h"
#include "common/redis_cluster.h"
#include "tests/unit/support/redis_test.h"

static rt_server_t srv;
static h2o_evloop_t *loop;

typedef struct st_result_t {
    int done;
    bool null;
    int type;
    long long integer;
    char str[256];
    uint64_t at_ms;
} result_t;

static void on_result(const redisReply *r, void *ud)
{
    result_t *res = ud;
    res->done++;
    res->at_ms = h2o_now(loop);
    if (r == NULL) {
        res->null = true;
        return;
    }
    res->type = r->type;
    res->integer = r->integer;
    if (r->str != NULL)
        snprintf(res->str, sizeof(res->str), "%s", r->str);
    if (r->type == REDIS_REPLY_ARRAY && r->elements > 0)
        res->integer = r->element[0]->integer;
}

/* Runs the loop until *count >= target or timeout_ms passes. */
static bool run_until(const int *count, int target, int timeout_ms)
{
    uint64_t end = h2o_now(loop) + (uint64_t)timeout_ms;
    while (*count < target && h2o_now(loop) < end)
        h2o_evloop_run(loop, 10);
    return *count >= target;
}

static void run_for(int ms)
{
    uint64_t end = h2o_now(loop) + (uint64_t)ms;
    while (h2o_now(loop) < end)
        h2o_evloop_run(loop, 10);
}

static bool wait_up(redis_client_t *c, int timeout_ms)
{
    uint64_t end = h2o_now(loop) + (uint64_t)timeout_ms;
    while (!redis_client_is_up(c) && h2o_now(loop) < end)
        h2o_evloop_run(loop, 10);
    return redis_client_is_up(c);
}

static int cmd(redis_client_t *c, result_t *res, int argc, const char **argv)
{
    return redis_client_command(c, on_result, res, argc, argv, NULL);
}

#define CMD(c, res, ...)                                                                           \
    cmd((c), (res), (int)(sizeof((const char *[]){__VA_ARGS__}) / sizeof(const char *)),           \
        (const char *[]){__VA_ARGS__})

static redis_client_t *make_client(const char *url, unsigned command_timeout_ms)
{
    char err[200];
    redis_client_config_t cfg = {.url = url,
                                 .connect_timeout_ms = 300,
                                 .command_timeout_ms = command_timeout_ms,
                                 .backoff_min_ms = 20,
                                 .backoff_max_ms = 200};
    redis_client_t *c;
    /* h2o timers count from the loop's cached time: refresh it, or starting redis-server in
     * setup (slow on a loaded machine) already uses up the connect timeout */
    h2o_evloop_run(loop, 0);
    c = redis_client_create(loop, &cfg, err, sizeof(err));
    if (c == NULL)
        fail_msg("create: %s", err);
    return c;
}

static char url[128];

static int setup(void **state)
{
    if (rt_server_start(&srv) != 0)
        return -1;
    /* after the server: the loop's clock starts with the tests (a slow start on a loaded
     * machine would otherwise count against the first connect timeout) */
    loop = h2o_evloop_create();
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d/0", srv.port);
    return 0;
}

static int teardown(void **state)
{
    rt_server_destroy(&srv);
    h2o_evloop_destroy(loop);
    return 0;
}

static void test_url_checks(void **state)
{
    char err[200];
    assert_int_equal(redis_client_check_url("redis://127.0.0.1:6379/0", err, sizeof(err)), 0);
    assert_int_equal(redis_client_check_url("redis://localhost", err, sizeof(err)), 0);
    assert_int_equal(redis_client_check_url("redis://:pw@h:1/15", err, sizeof(err)), 0);
    assert_int_equal(redis_client_check_url("redis://u:pw@[::1]:7000/2", err, sizeof(err)), 0);
    assert_int_equal(redis_client_check_url("unix:///tmp/r.sock", err, sizeof(err)), 0);
    assert_int_equal(redis_client_check_url("unix:///tmp/r.sock?db=3", err, sizeof(err)), 0);
    assert_int_equal(redis_client_check_url("http://x", err, sizeof(err)), -1);
    assert_int_equal(redis_client_check_url("redis://h:0/0", err, sizeof(err)), -1);
    assert_int_equal(redis_client_check_url("redis://h:99999", err, sizeof(err)), -1);
    assert_int_equal(redis_client_check_url("redis://h:1/x", err, sizeof(err)), -1);
    assert_int_equal(redis_client_check_url("redis://secret@h:1/0", err, sizeof(err)), -1);
    assert_null(strstr(err, "secret"));
    assert_int_equal(redis_client_check_url("unix://relative", err, sizeof(err)), -1);
    assert_int_equal(redis_client_check_url("redis://", err, sizeof(err)), -1);
}

static void test_commands_and_eval(void **state)
{
    redis_client_t *c = make_client(url, 500);
    result_t a = {0}, b = {0}, e1 = {0}, e2 = {0};
    /* queued while the first connection is still being made */
    assert_int_equal(CMD(c, &a, "SET", "k1", "hello"), 0);
    assert_int_equal(CMD(c, &b, "GET", "k1"), 0);
    assert_int_equal(a.done + b.done, 0); /* never called from inside the call */
    assert_true(run_until(&b.done, 1, 2000));
    assert_string_equal(b.str, "hello");
    assert_true(redis_client_is_up(c));

    /* EVALSHA of a script Redis has never seen: NOSCRIPT, then EVAL */
    result_t flush = {0};
    CMD(c, &flush, "SCRIPT", "FLUSH");
    assert_true(run_until(&flush.done, 1, 2000));
    static redis_script_t rl;
    redis_script_init(&rl, cache_lua_ratelimit);
    const char *argv[] = {"rl:{t1}", "10", "60", "0"};
    assert_int_equal(redis_client_eval(c, &rl, 1, 4, argv, NULL, on_result, &e1), 0);
    assert_true(run_until(&e1.done, 1, 2000));
    assert_false(e1.null);
    assert_int_equal(e1.type, REDIS_REPLY_ARRAY);
    assert_int_equal(e1.integer, 1);
    redis_client_stats_t st;
    redis_client_get_stats(c, &st);
    assert_int_equal(st.noscript, 1);
    assert_int_equal(redis_client_eval(c, &rl, 1, 4, argv, NULL, on_result, &e2), 0);
    assert_true(run_until(&e2.done, 1, 2000));
    redis_client_get_stats(c, &st);
    assert_int_equal(st.noscript, 1); /* loaded now: EVALSHA went through */
    assert_int_equal(e2.integer, 1);
    /* the script SHA matches what Redis computes */
    result_t load = {0};
    CMD(c, &load, "SCRIPT", "LOAD", cache_lua_ratelimit);
    assert_true(run_until(&load.done, 1, 2000));
    assert_string_equal(load.str, rl.sha1);
    /* error replies are passed through */
    result_t err = {0};
    CMD(c, &err, "INCR", "k1");
    assert_true(run_until(&err.done, 1, 2000));
    assert_int_equal(err.type, REDIS_REPLY_ERROR);
    redis_client_destroy(c);
}

typedef struct st_seq_t {
    int done;
    int in_order;
    uint64_t last_at;
} seq_t;

static seq_t seq;

static void on_incr(const redisReply *r, void *ud)
{
    long long want = (long long)(intptr_t)ud;
    if (r != NULL && r->type == REDIS_REPLY_INTEGER && r->integer == want)
        seq.in_order++;
    seq.done++;
}

static void test_pipelining(void **state)
{
    enum { N = 2000 };
    redis_client_t *c = make_client(url, 2000);
    assert_true(wait_up(c, 2000));
    rt_conn_t probe;
    assert_int_equal(rt_conn_open(&probe, srv.port), 0);
    rt_reply_free(RT_CMD(&probe, "DEL", "ctr"));
    memset(&seq, 0, sizeof(seq));
    for (int i = 0; i < N; i++) {
        const char *argv[] = {"INCR", "ctr"};
        assert_int_equal(redis_client_command(c, on_incr, (void *)(intptr_t)(i + 1), 2, argv, NULL),
                         0);
    }
    int iterations = 0;
    uint64_t t0 = h2o_now(loop);
    while (seq.done < N && iterations < 1000) {
        h2o_evloop_run(loop, 10);
        iterations++;
    }
    uint64_t t1 = h2o_now(loop);
    assert_int_equal(seq.done, N);
    assert_int_equal(seq.in_order, N);
    print_message("pipelined %d INCR in %d loop iterations, %llu ms\n", N, iterations,
                  (unsigned long long)(t1 - t0));
    assert_true(iterations < 100);
    rt_conn_close(&probe);
    redis_client_destroy(c);
}

static void test_timeout_when_stopped(void **state)
{
    redis_client_t *c = make_client(url, 200);
    assert_true(wait_up(c, 2000));
    kill(srv.pid, SIGSTOP);
    result_t r1 = {0}, r2 = {0}, r3 = {0};
    uint64_t t0 = h2o_now(loop);
    assert_int_equal(CMD(c, &r1, "GET", "k1"), 0);
    assert_int_equal(CMD(c, &r2, "GET", "k1"), 0);
    assert_true(run_until(&r2.done, 1, 3000));
    assert_true(r1.null && r2.null);
    uint64_t waited = r1.at_ms - t0;
    print_message("command timeout fired after %llu ms (configured 200)\n",
                  (unsigned long long)waited);
    assert_true(waited >= 180 && waited < 1000);
    assert_false(redis_client_is_up(c));
    /* down now: fail fast, no waiting for any timeout */
    t0 = h2o_now(loop);
    assert_int_equal(CMD(c, &r3, "GET", "k1"), -1);
    assert_int_equal(r3.done, 0);
    assert_true(run_until(&r3.done, 1, 1000));
    assert_true(r3.null);
    assert_true(r3.at_ms - t0 < 50);
    /* reconnect attempts hang in the handshake (the kernel accepts, redis does not answer) */
    run_for(800);
    assert_false(redis_client_is_up(c));
    redis_client_stats_t st;
    redis_client_get_stats(c, &st);
    assert_int_equal(st.timeouts, 1);
    assert_true(st.fail_fast >= 1);
    kill(srv.pid, SIGCONT);
    assert_true(wait_up(c, 3000));
    result_t r4 = {0};
    CMD(c, &r4, "PING");
    assert_true(run_until(&r4.done, 1, 2000));
    assert_string_equal(r4.str, "PONG");
    redis_client_destroy(c);
}

static void test_reconnect_after_kill(void **state)
{
    redis_client_t *c = make_client(url, 300);
    assert_true(wait_up(c, 2000));
    uint64_t outages0 = redis_client_outages();
    rt_server_stop(&srv, SIGKILL);
    result_t r1 = {0};
    CMD(c, &r1, "PING");
    assert_true(run_until(&r1.done, 1, 2000));
    assert_true(r1.null);
    run_for(100);
    assert_false(redis_client_is_up(c));
    assert_int_equal(redis_client_outages(), outages0 + 1);
    /* fail fast while down, many times */
    result_t ff = {0};
    uint64_t t0 = h2o_now(loop);
    for (int i = 0; i < 100; i++)
        CMD(c, &ff, "PING");
    assert_true(run_until(&ff.done, 100, 1000));
    assert_true(ff.null);
    print_message("100 commands failed fast in %llu ms while redis was down\n",
                  (unsigned long long)(h2o_now(loop) - t0));
    assert_true(h2o_now(loop) - t0 < 50);
    run_for(300);
    /* restart on the same port */
    assert_int_equal(rt_server_start(&srv), 0);
    t0 = h2o_now(loop);
    assert_true(wait_up(c, 3000));
    print_message("reconnected %llu ms after redis-server came back\n",
                  (unsigned long long)(h2o_now(loop) - t0));
    result_t r2 = {0};
    CMD(c, &r2, "PING");
    assert_true(run_until(&r2.done, 1, 2000));
    assert_string_equal(r2.str, "PONG");
    assert_int_equal(redis_client_outages(), outages0 + 1);
    redis_client_stats_t st;
    redis_client_get_stats(c, &st);
    assert_true(st.connects >= 2);
    redis_client_destroy(c);
}

static void test_down_at_start_then_up(void **state)
{
    rt_server_t other = {0};
    do
        other.port = 20000 + rand() % 12000;
    while (!rt_port_is_free(other.port));
    char u[128];
    snprintf(u, sizeof(u), "redis://127.0.0.1:%d", other.port);
    redis_client_t *c = make_client(u, 300);
    result_t r1 = {0};
    CMD(c, &r1, "PING");
    assert_true(run_until(&r1.done, 1, 2000));
    assert_true(r1.null);
    assert_false(redis_client_is_up(c));
    assert_int_equal(rt_server_start(&other), 0);
    assert_true(wait_up(c, 3000));
    result_t r2 = {0};
    CMD(c, &r2, "PING");
    assert_true(run_until(&r2.done, 1, 2000));
    assert_string_equal(r2.str, "PONG");
    redis_client_destroy(c);
    rt_server_destroy(&other);
}

static void test_unix_socket_and_db(void **state)
{
    char u[256];
    snprintf(u, sizeof(u), "unix://%s?db=3", srv.sock_path);
    redis_client_t *c = make_client(u, 500);
    result_t r1 = {0};
    CMD(c, &r1, "SET", "unixkey", "v3");
    assert_true(run_until(&r1.done, 1, 2000));
    assert_false(r1.null);
    rt_conn_t probe;
    assert_int_equal(rt_conn_open(&probe, srv.port), 0);
    rt_reply_free(RT_CMD(&probe, "SELECT", "3"));
    rt_reply_t *r = RT_CMD(&probe, "GET", "unixkey");
    assert_string_equal(r->str, "v3");
    rt_reply_free(r);
    rt_conn_close(&probe);
    redis_client_destroy(c);
}

static void test_password(void **state)
{
    rt_conn_t probe;
    assert_int_equal(rt_conn_open(&probe, srv.port), 0);
    rt_reply_free(RT_CMD(&probe, "CONFIG", "SET", "requirepass", "s3cret"));
    char u[128];
    snprintf(u, sizeof(u), "redis://:s3cret@127.0.0.1:%d/1", srv.port);
    redis_client_t *good = make_client(u, 500);
    assert_true(wait_up(good, 2000));
    snprintf(u, sizeof(u), "redis://:wrong@127.0.0.1:%d/1", srv.port);
    redis_client_t *bad = make_client(u, 500);
    result_t r1 = {0}, r2 = {0};
    CMD(bad, &r1, "PING");
    CMD(good, &r2, "PING");
    assert_true(run_until(&r1.done, 1, 2000));
    assert_true(run_until(&r2.done, 1, 2000));
    assert_true(r1.null);
    assert_string_equal(r2.str, "PONG");
    run_for(200);
    assert_false(redis_client_is_up(bad));
    redis_client_destroy(bad);
    redis_client_destroy(good);
    rt_reply_free(RT_CMD(&probe, "AUTH", "s3cret"));
    rt_reply_free(RT_CMD(&probe, "CONFIG", "SET", "requirepass", ""));
    rt_conn_close(&probe);
}

static void test_destroy_with_pending(void **state)
{
    redis_client_t *c = make_client(url, 500);
    assert_true(wait_up(c, 2000));
    result_t r = {0};
    for (int i = 0; i < 10; i++)
        CMD(c, &r, "PING");
    redis_client_destroy(c); /* before the loop ran: all callbacks now, with NULL */
    assert_int_equal(r.done, 10);
    assert_true(r.null);
}

/* ---------- cluster mode ---------- */

static rt_cluster2_t cl;

#define NODE(i, ...) RT_SERVER_CMD(&cl.node[(i)], __VA_ARGS__)

static void node_do(int i, int argc, const char **argv)
{
    rt_reply_t *r = rt_server_cmd(&cl.node[i], argc, argv);
    assert_non_null(r);
    if (r->type == '-')
        fail_msg("%s: %s", argv[0], r->str);
    rt_reply_free(r);
}

#define NODE_DO(i, ...)                                                                            \
    node_do((i), (int)(sizeof((const char *[]){__VA_ARGS__}) / sizeof(const char *)),              \
            (const char *[]){__VA_ARGS__})

static int cluster_setup(void **state)
{
    if (rt_cluster2_start(&cl) != 0)
        return -1;
    loop = h2o_evloop_create(); /* now: its clock starts with the tests */
    return 0;
}

static int cluster_teardown(void **state)
{
    rt_server_destroy(&cl.node[0]);
    rt_server_destroy(&cl.node[1]);
    h2o_evloop_destroy(loop);
    return 0;
}

/* A key "k{<prefix>n}" whose slot lies in [lo, hi] (distinct prefixes: distinct slots). */
static void key_in(char *out, size_t outlen, const char *prefix, unsigned lo, unsigned hi)
{
    for (int n = 0;; n++) {
        snprintf(out, outlen, "k{%s%d}", prefix, n);
        unsigned s = redis_cluster_key_slot(out, strlen(out));
        if (s >= lo && s <= hi)
            return;
    }
}

static redis_client_t *make_cluster_client(const char *seeds)
{
    char err[200];
    redis_client_config_t cfg = {.url = seeds,
                                 .cluster = true,
                                 .connect_timeout_ms = 300,
                                 .command_timeout_ms = 500,
                                 .backoff_min_ms = 20,
                                 .backoff_max_ms = 200};
    redis_client_t *c = redis_client_create(loop, &cfg, err, sizeof(err));
    if (c == NULL)
        fail_msg("create: %s", err);
    return c;
}

static void seed_of(int i, char *out, size_t len)
{
    snprintf(out, len, "redis://127.0.0.1:%d", cl.node[i].port);
}

static void test_cluster_url_checks(void **state)
{
    char err[200];
    assert_int_equal(redis_client_check_cluster_url("redis://a:1,redis://b:2", err, sizeof(err)),
                     0);
    assert_int_equal(redis_client_check_cluster_url("redis://a:1", err, sizeof(err)), 0);
    assert_int_equal(redis_client_check_cluster_url("redis://a:1,unix:///x", err, sizeof(err)), -1);
    assert_int_equal(redis_client_check_cluster_url("redis://a:1/3", err, sizeof(err)), -1);
    assert_int_equal(redis_client_check_cluster_url("redis://a:1,", err, sizeof(err)), -1);
}

static void test_cluster_routes_by_slot(void **state)
{
    char seed[64], ka[64], kb[64];
    seed_of(0, seed, sizeof(seed)); /* one seed: the other master is learnt from the map */
    redis_client_t *c = make_cluster_client(seed);
    key_in(ka, sizeof(ka), "ra", 0, 8191);
    key_in(kb, sizeof(kb), "rb", 8192, 16383);
    result_t s1 = {0}, s2 = {0}, g1 = {0}, g2 = {0};
    assert_int_equal(CMD(c, &s1, "SET", ka, "va"), 0); /* queued behind the first handshake */
    assert_int_equal(CMD(c, &s2, "SET", kb, "vb"), 0);
    assert_true(run_until(&s2.done, 1, 3000));
    assert_false(s1.null || s2.null);
    assert_int_equal(s2.type, REDIS_REPLY_STATUS);
    for (int i = 0; i < 100 && !redis_client_is_up(c); i++)
        run_for(20);
    assert_true(redis_client_is_up(c));
    redis_client_stats_t before, after;
    redis_client_get_stats(c, &before);
    assert_int_equal(CMD(c, &g1, "GET", ka), 0);
    assert_int_equal(CMD(c, &g2, "GET", kb), 0);
    assert_true(run_until(&g2.done, 1, 2000));
    assert_string_equal(g1.str, "va");
    assert_string_equal(g2.str, "vb");
    redis_client_get_stats(c, &after);
    assert_int_equal(after.moved, before.moved); /* the map was right: sent to the owner */
    rt_reply_t *r = NODE(1, "GET", kb);          /* stored on the second master */
    assert_non_null(r);
    assert_string_equal(r->str, "vb");
    rt_reply_free(r);
    assert_true(redis_client_is_up_for(c, ka));
    assert_true(redis_client_is_up_for(c, kb));
    redis_client_destroy(c);
}

static void test_cluster_crossslot_refused(void **state)
{
    char seed[64], ka[64], kb[64];
    seed_of(0, seed, sizeof(seed));
    redis_client_t *c = make_cluster_client(seed);
    key_in(ka, sizeof(ka), "xa", 0, 8191);
    key_in(kb, sizeof(kb), "xb", 8192, 16383);
    result_t m1 = {0}, m2 = {0};
    redis_client_stats_t st;
    assert_int_equal(CMD(c, &m1, "MGET", ka, kb), -1); /* never sent */
    assert_true(run_until(&m1.done, 1, 1000));
    assert_true(m1.null);
    redis_client_get_stats(c, &st);
    assert_int_equal(st.err_replies, 1);
    assert_int_equal(CMD(c, &m2, "MGET", "{u1}a", "{u1}b"), 0); /* one slot: fine */
    assert_true(run_until(&m2.done, 1, 2000));
    assert_false(m2.null);
    assert_int_equal(m2.type, REDIS_REPLY_ARRAY);
    redis_client_destroy(c);
}

static void test_cluster_moved_after_a_slot_moved(void **state)
{
    char seed[64], k[64], slot[16];
    seed_of(0, seed, sizeof(seed));
    redis_client_t *c = make_cluster_client(seed);
    key_in(k, sizeof(k), "mv", 0, 8191);
    snprintf(slot, sizeof(slot), "%u", redis_cluster_key_slot(k, strlen(k)));
    result_t s = {0}, g = {0}, g2 = {0};
    assert_int_equal(CMD(c, &s, "SET", k, "moved-value"), 0);
    assert_true(run_until(&s.done, 1, 3000));
    for (int i = 0; i < 100 && !redis_client_is_up(c); i++)
        run_for(20);
    /* the slot moves from the first master to the second, key included */
    char port[16];
    snprintf(port, sizeof(port), "%d", cl.node[1].port);
    NODE_DO(1, "CLUSTER", "SETSLOT", slot, "IMPORTING", cl.id[0]);
    NODE_DO(0, "CLUSTER", "SETSLOT", slot, "MIGRATING", cl.id[1]);
    NODE_DO(0, "MIGRATE", "127.0.0.1", port, "", "0", "5000", "KEYS", k);
    NODE_DO(1, "CLUSTER", "SETSLOT", slot, "NODE", cl.id[1]);
    NODE_DO(0, "CLUSTER", "SETSLOT", slot, "NODE", cl.id[1]);
    redis_client_stats_t before, after;
    redis_client_get_stats(c, &before);
    assert_int_equal(CMD(c, &g, "GET", k), 0); /* MOVED, followed */
    assert_true(run_until(&g.done, 1, 2000));
    assert_false(g.null);
    assert_string_equal(g.str, "moved-value");
    redis_client_get_stats(c, &after);
    assert_int_equal(after.moved, before.moved + 1);
    run_for(300); /* the map is read again */
    assert_int_equal(CMD(c, &g2, "GET", k), 0);
    assert_true(run_until(&g2.done, 1, 2000));
    assert_string_equal(g2.str, "moved-value");
    redis_client_get_stats(c, &before);
    assert_int_equal(before.moved, after.moved);     /* learnt: no second redirection */
    assert_true(before.refreshes > after.refreshes); /* re-read after the MOVED */
    redis_client_destroy(c);
}

static void test_cluster_ask_during_migration(void **state)
{
    char seed[64], k[64], slot[16];
    seed_of(0, seed, sizeof(seed));
    redis_client_t *c = make_cluster_client(seed);
    key_in(k, sizeof(k), "ask", 0, 8191);
    snprintf(slot, sizeof(slot), "%u", redis_cluster_key_slot(k, strlen(k)));
    for (int i = 0; i < 100 && !redis_client_is_up(c); i++)
        run_for(20);
    assert_true(redis_client_is_up(c));
    /* being migrated: the first master answers ASK for keys it does not have */
    NODE_DO(1, "CLUSTER", "SETSLOT", slot, "IMPORTING", cl.id[0]);
    NODE_DO(0, "CLUSTER", "SETSLOT", slot, "MIGRATING", cl.id[1]);
    result_t s = {0};
    assert_int_equal(CMD(c, &s, "SET", k, "asked"), 0);
    assert_true(run_until(&s.done, 1, 2000));
    assert_false(s.null);
    assert_int_equal(s.type, REDIS_REPLY_STATUS);
    redis_client_stats_t st;
    redis_client_get_stats(c, &st);
    assert_int_equal(st.ask, 1);
    assert_int_equal(st.moved, 0);
    rt_conn_t conn; /* stored on the importing node */
    assert_int_equal(rt_conn_open(&conn, cl.node[1].port), 0);
    rt_reply_free(RT_CMD(&conn, "ASKING"));
    rt_reply_t *r = RT_CMD(&conn, "GET", k);
    assert_non_null(r);
    assert_string_equal(r->str, "asked");
    rt_reply_free(r);
    rt_conn_close(&conn);
    NODE_DO(1, "CLUSTER", "SETSLOT", slot, "NODE", cl.id[1]);
    NODE_DO(0, "CLUSTER", "SETSLOT", slot, "NODE", cl.id[1]);
    redis_client_destroy(c);
}

/* Last: kills the second master. */
static void test_cluster_one_master_down(void **state)
{
    char seeds[128], ka[64], kb[64];
    snprintf(seeds, sizeof(seeds), "redis://127.0.0.1:%d,redis://127.0.0.1:%d", cl.node[0].port,
             cl.node[1].port);
    redis_client_t *c = make_cluster_client(seeds);
    key_in(ka, sizeof(ka), "da", 0, 8191);
    key_in(kb, sizeof(kb), "db", 8192, 16383);
    for (int i = 0; i < 100 && !redis_client_is_up(c); i++)
        run_for(20);
    assert_true(redis_client_is_up(c));
    rt_server_stop(&cl.node[1], SIGKILL);
    result_t a = {0}, b = {0};
    CMD(c, &b, "GET", kb);
    assert_true(run_until(&b.done, 1, 2000));
    assert_true(b.null); /* its master is gone */
    run_for(100);
    assert_false(redis_client_is_up_for(c, kb));
    assert_true(redis_client_is_up_for(c, ka)); /* the other master's users carry on */
    assert_false(redis_client_is_up(c));
    assert_int_equal(CMD(c, &a, "GET", ka), 0);
    assert_true(run_until(&a.done, 1, 2000));
    assert_false(a.null);
    redis_client_destroy(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_url_checks),
        cmocka_unit_test(test_commands_and_eval),
        cmocka_unit_test(test_pipelining),
        cmocka_unit_test(test_unix_socket_and_db),
        cmocka_unit_test(test_password),
        cmocka_unit_test(test_destroy_with_pending),
        cmocka_unit_test(test_timeout_when_stopped),
        cmocka_unit_test(test_reconnect_after_kill),
        cmocka_unit_test(test_down_at_start_then_up),
    };
    const struct CMUnitTest cluster_tests[] = {
        cmocka_unit_test(test_cluster_url_checks),
        cmocka_unit_test(test_cluster_routes_by_slot),
        cmocka_unit_test(test_cluster_crossslot_refused),
        cmocka_unit_test(test_cluster_moved_after_a_slot_moved),
        cmocka_unit_test(test_cluster_ask_during_migration),
        cmocka_unit_test(test_cluster_one_master_down),
    };
    signal(SIGPIPE, SIG_IGN);
    int failed = cmocka_run_group_tests_name("redis_client", tests, setup, teardown);
    return failed + cmocka_run_group_tests_name("redis_client_cluster", cluster_tests,
                                                cluster_setup, cluster_teardown);
}
