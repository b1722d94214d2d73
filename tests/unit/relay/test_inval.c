/* Unit tests for relay/inval.c: REDIS_URL forms, Redis being down never losing work, and
 * cluster mode against two cluster-enabled redis-servers (routing by slot from one seed, MOVED
 * after a slot moved, an invalidation kept through a slot migration). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <string.h>
#include <stdio.h>
#include <unistd.h>
#include "common/cache.h"
#include "common/redis_cluster.h"
#include "relay/inval.h"
#include "relay/metrics.h"
#include "tests/unit/support/redis_test.h"

static void test_urls(void **state)
{
    const char *good[] = {
        "redis://127.0.0.1:6379/0",   "redis://localhost",     "redis://h:1/3",
        "redis://:secret@h:6380/1",   "redis://user:secret@h", "unix:///run/redis.sock",
        "unix:///run/redis.sock?db=2"};
    const char *bad[] = {"",
                         "http://h:1",
                         "redis://",
                         "redis://h:0",
                         "redis://h:70000",
                         "redis://h:x",
                         "unix://relative.sock",
                         "unix://"};
    char err[256];
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); ++i) {
        inval_t *iv = inval_create(good[i], 600, err, sizeof(err));
        assert_non_null(iv);
        inval_destroy(iv);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); ++i) {
        err[0] = '\0';
        assert_null(inval_create(bad[i], 600, err, sizeof(err)));
        assert_non_null(strstr(err, "REDIS_URL"));
    }
    inval_destroy(NULL);
}

/* A port with nothing listening: bind, read the port, close. */
static int dead_port(void)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
    close(fd);
    return ntohs(sa.sin_port);
}

static void test_down_keeps_queue_merged(void **state)
{
    char url[64], err[256];
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d/0", dead_port());
    inval_t *iv = inval_create(url, 600, err, sizeof(err));
    assert_non_null(iv);
    inval_add(iv, "u1", 3);
    inval_add(iv, "u2", 1);
    inval_add(iv, "u1", 7); /* merged: one entry per user, highest sequence */
    inval_add(iv, "u1", 5);
    assert_int_equal(inval_pending(iv), 2);
    long long errors = metrics_get(METRIC_REDIS_ERRORS);
    assert_int_equal(inval_flush(iv), -1);
    assert_int_equal(inval_pending(iv), 2);
    assert_true(metrics_get(METRIC_REDIS_ERRORS) > errors);
    assert_int_equal(metrics_get(METRIC_REDIS_UP), 0);
    /* within the backoff no new connection attempt is made */
    assert_int_equal(inval_flush(iv), -1);
    inval_destroy(iv);
}

/* ---------- cluster mode ---------- */

static rt_cluster2_t cl;

#define NODE(i, ...) RT_SERVER_CMD(&cl.node[(i)], __VA_ARGS__)

static void node_ok(rt_reply_t *r)
{
    assert_non_null(r);
    if (r->type == '-')
        fail_msg("%s", r->str);
    rt_reply_free(r);
}

static int cluster_setup(void **state)
{
    if (rt_cluster2_start(&cl) != 0)
        return -1;
    return 0;
}

static int cluster_teardown(void **state)
{
    rt_server_destroy(&cl.node[0]);
    rt_server_destroy(&cl.node[1]);
    return 0;
}

/* A user "<prefix><n>" whose keys' slot lies in [lo, hi]. */
static void user_in(char *out, size_t outlen, const char *prefix, unsigned lo, unsigned hi)
{
    char kv[CACHE_KEY_MAX];
    for (int n = 0;; n++) {
        snprintf(out, outlen, "%s%d", prefix, n);
        cache_key_version(kv, out);
        unsigned s = redis_cluster_key_slot(kv, strlen(kv));
        if (s >= lo && s <= hi)
            return;
    }
}

/* The user's version on node i, or -1. */
static long long version_on(int i, const char *user)
{
    char kv[CACHE_KEY_MAX];
    rt_conn_t c;
    cache_key_version(kv, user);
    assert_int_equal(rt_conn_open(&c, cl.node[i].port), 0);
    rt_reply_t *r = RT_CMD(&c, "GET", kv);
    long long v = r != NULL && r->type == '$' && r->str != NULL ? atoll(r->str) : -1;
    rt_reply_free(r);
    rt_conn_close(&c);
    return v;
}

static inval_t *cluster_inval(void)
{
    char url[64], err[256];
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d", cl.node[0].port); /* one seed */
    inval_t *iv = inval_create(url, 600, err, sizeof(err));
    assert_non_null(iv);
    assert_int_equal(inval_set_cluster(iv, true, err, sizeof(err)), 0);
    return iv;
}

static void test_cluster_mode_checks(void **state)
{
    char err[256];
    inval_t *iv = inval_create("redis://h1:1,redis://h2:2", 600, err, sizeof(err));
    assert_non_null(iv);
    assert_int_equal(inval_set_cluster(iv, false, err, sizeof(err)), -1); /* a list needs it */
    inval_destroy(iv);
    iv = inval_create("unix:///tmp/x.sock", 600, err, sizeof(err));
    assert_int_equal(inval_set_cluster(iv, true, err, sizeof(err)), -1);
    inval_destroy(iv);
}

static void test_cluster_routes_by_slot(void **state)
{
    char ua[32], ub[32];
    user_in(ua, sizeof(ua), "ia", 0, 8191);
    user_in(ub, sizeof(ub), "ib", 8192, 16383);
    inval_t *iv = cluster_inval();
    long long errors = metrics_get(METRIC_REDIS_ERRORS);
    inval_add(iv, ua, 4);
    inval_add(iv, ub, 6);
    assert_int_equal(inval_flush(iv), 0);
    assert_int_equal(inval_pending(iv), 0);
    assert_int_equal(version_on(0, ua), 4);
    assert_int_equal(version_on(1, ub), 6); /* learnt from the map: the other master */
    assert_int_equal(metrics_get(METRIC_REDIS_ERRORS), errors);
    inval_destroy(iv);
}

static void test_cluster_moved_and_migrating(void **state)
{
    char um[32], ua[32], slot[16], port[16];
    user_in(um, sizeof(um), "im", 0, 8191);
    inval_t *iv = cluster_inval();
    inval_add(iv, um, 1);
    assert_int_equal(inval_flush(iv), 0); /* map read; the user's slot is on node 0 */

    /* the slot moves to node 1, key included: the relay's map is stale -> MOVED */
    char kv[CACHE_KEY_MAX];
    cache_key_version(kv, um);
    snprintf(slot, sizeof(slot), "%u", redis_cluster_key_slot(kv, strlen(kv)));
    snprintf(port, sizeof(port), "%d", cl.node[1].port);
    node_ok(NODE(1, "CLUSTER", "SETSLOT", slot, "IMPORTING", cl.id[0]));
    node_ok(NODE(0, "CLUSTER", "SETSLOT", slot, "MIGRATING", cl.id[1]));
    node_ok(NODE(0, "MIGRATE", "127.0.0.1", port, "", "0", "5000", "KEYS", kv));
    node_ok(NODE(1, "CLUSTER", "SETSLOT", slot, "NODE", cl.id[1]));
    node_ok(NODE(0, "CLUSTER", "SETSLOT", slot, "NODE", cl.id[1]));
    inval_add(iv, um, 2);
    assert_int_equal(inval_flush(iv), 0);
    assert_int_equal(inval_pending(iv), 0);
    assert_int_equal(version_on(1, um), 2);

    /* a slot being migrated: the three-key script gets TRYAGAIN (Redis 7.0 answers ASK only to
     * single-key commands there); the invalidation is kept and applied once the slot has
     * moved (then through a MOVED) */
    user_in(ua, sizeof(ua), "iask", 0, 8191);
    cache_key_version(kv, ua);
    snprintf(slot, sizeof(slot), "%u", redis_cluster_key_slot(kv, strlen(kv)));
    node_ok(NODE(1, "CLUSTER", "SETSLOT", slot, "IMPORTING", cl.id[0]));
    node_ok(NODE(0, "CLUSTER", "SETSLOT", slot, "MIGRATING", cl.id[1]));
    inval_add(iv, ua, 9);
    assert_int_equal(inval_flush(iv), -1);
    assert_int_equal(inval_pending(iv), 1); /* kept, not dropped */
    node_ok(NODE(1, "CLUSTER", "SETSLOT", slot, "NODE", cl.id[1]));
    node_ok(NODE(0, "CLUSTER", "SETSLOT", slot, "NODE", cl.id[1]));
    assert_int_equal(inval_flush(iv), 0);
    assert_int_equal(inval_pending(iv), 0);
    assert_int_equal(version_on(1, ua), 9);
    inval_destroy(iv);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_urls),
        cmocka_unit_test(test_down_keeps_queue_merged),
    };
    const struct CMUnitTest cluster_tests[] = {
        cmocka_unit_test(test_cluster_mode_checks),
        cmocka_unit_test(test_cluster_routes_by_slot),
        cmocka_unit_test(test_cluster_moved_and_migrating),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    return failed + cmocka_run_group_tests_name("inval_cluster", cluster_tests, cluster_setup,
                                                cluster_teardown);
}
