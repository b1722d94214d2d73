/*
 * Tests common/redis_cluster.c: CRC16 and key slots (vectors of the Redis Cluster
 * specification and of CLUSTER KEYSLOT), MOVED/ASK parsing, CLUSTER SLOTS parsing and the
 * grouping of a batch by slot.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>

#include "common/cache.h"
#include "common/redis_cluster.h"

static unsigned slot_of(const char *key)
{
    return redis_cluster_key_slot(key, strlen(key));
}

static void test_crc16_vector(void **state)
{
    /* the cluster specification's test vector: CRC16 of "123456789" is 0x31C3 */
    assert_int_equal(redis_cluster_crc16("123456789", 9), 0x31C3);
    assert_int_equal(redis_cluster_crc16("", 0), 0);
}

static void test_key_slot(void **state)
{
    assert_int_equal(slot_of("123456789"), 0x31C3 & 16383);
    assert_int_equal(slot_of("foo"), 12182);
    assert_int_equal(slot_of("somekey"), 11058);
    assert_int_equal(slot_of("foo{hash_tag}"), 2515);
    /* hash tags, as the specification's examples */
    assert_int_equal(slot_of("{user1000}.following"), slot_of("user1000"));
    assert_int_equal(slot_of("{user1000}.followers"), slot_of("user1000"));
    assert_int_equal(slot_of("foo{}{bar}"), redis_cluster_crc16("foo{}{bar}", 10) & 16383);
    assert_int_equal(slot_of("foo{{bar}}zap"), slot_of("{bar"));
    assert_int_equal(slot_of("foo{bar}{zap}"), slot_of("bar"));
    assert_int_equal(slot_of("foo{bar"), slot_of("foo{bar") /* no closing brace: whole key */);
    assert_int_equal(slot_of("foo{bar"), redis_cluster_crc16("foo{bar", 7) & 16383);
}

static void test_user_keys_share_a_slot(void **state)
{
    char a[CACHE_KEY_MAX], b[CACHE_KEY_MAX], c[CACHE_KEY_MAX], d[CACHE_KEY_MAX];
    cache_key_version(a, "u42");
    cache_key_list(b, "u42", CACHE_LIST_WATCHLIST);
    cache_key_list(c, "u42", CACHE_LIST_HISTORY);
    cache_key_ratelimit(d, "u42");
    assert_int_equal(slot_of(a), slot_of("u42"));
    assert_int_equal(slot_of(b), slot_of("u42"));
    assert_int_equal(slot_of(c), slot_of("u42"));
    assert_int_equal(slot_of(d), slot_of("u42"));
    cache_key_version(a, "u43");
    assert_int_not_equal(slot_of(a), slot_of("u42"));
}

static void test_redirect(void **state)
{
    redis_cluster_redirect_t r;
    const char *m = "MOVED 3999 127.0.0.1:6381";
    assert_int_equal(redis_cluster_parse_redirect(m, strlen(m), &r), REDIS_CLUSTER_MOVED);
    assert_int_equal(r.slot, 3999);
    assert_string_equal(r.host, "127.0.0.1");
    assert_int_equal(r.port, 6381);
    const char *a = "ASK 16383 [::1]:7000";
    assert_int_equal(redis_cluster_parse_redirect(a, strlen(a), &r), REDIS_CLUSTER_ASK);
    assert_int_equal(r.slot, 16383);
    assert_string_equal(r.host, "::1");
    assert_int_equal(r.port, 7000);
    const char *h = "MOVED 0 redis-2.example:6379";
    assert_int_equal(redis_cluster_parse_redirect(h, strlen(h), &r), REDIS_CLUSTER_MOVED);
    assert_string_equal(r.host, "redis-2.example");
    static const char *const bad[] = {
        "MOVED",
        "MOVED 16384 127.0.0.1:1",
        "MOVED x 127.0.0.1:1",
        "MOVED 1 127.0.0.1",
        "MOVED 1 :6379",
        "MOVED 1 127.0.0.1:0",
        "ASK 1 h:70000",
        "MOVED 1 h:12x",
        "ERR wrong thing",
        "CROSSSLOT Keys in request don't hash to the same slot",
        "MOVED 1  h:1",
        "MOVED 1 []:1",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(redis_cluster_parse_redirect(bad[i], strlen(bad[i]), &r),
                         REDIS_CLUSTER_NO_REDIRECT);
}

/* a reply parsed by hiredis from RESP text, as the server sends it */
static redisReply *parse_resp(const char *text)
{
    redisReader *rd = redisReaderCreate();
    void *reply = NULL;
    assert_int_equal(redisReaderFeed(rd, text, strlen(text)), REDIS_OK);
    assert_int_equal(redisReaderGetReply(rd, &reply), REDIS_OK);
    assert_non_null(reply);
    redisReaderFree(rd);
    return reply;
}

static void test_parse_slots(void **state)
{
    /* Redis 7 shape: master then replica, each [host, port, id, {metadata}] */
    redisReply *r = parse_resp("*2\r\n"
                               "*4\r\n:0\r\n:5460\r\n"
                               "*3\r\n$9\r\n127.0.0.1\r\n:7000\r\n$2\r\nid\r\n"
                               "*3\r\n$9\r\n127.0.0.1\r\n:7004\r\n$2\r\nid\r\n"
                               "*3\r\n:5461\r\n:16383\r\n"
                               "*3\r\n$0\r\n\r\n:7001\r\n$2\r\nid\r\n");
    redis_cluster_range_t ranges[4];
    assert_int_equal(redis_cluster_parse_slots(r, "10.0.0.9", ranges, 4), 2);
    assert_int_equal(ranges[0].start, 0);
    assert_int_equal(ranges[0].end, 5460);
    assert_string_equal(ranges[0].host, "127.0.0.1");
    assert_int_equal(ranges[0].port, 7000);
    assert_int_equal(ranges[1].start, 5461);
    assert_int_equal(ranges[1].end, 16383);
    assert_string_equal(ranges[1].host, "10.0.0.9"); /* empty host: the node asked */
    assert_int_equal(ranges[1].port, 7001);
    assert_int_equal(redis_cluster_parse_slots(r, "h", ranges, 1), -1); /* too many */
    freeReplyObject(r);

    static const char *const bad[] = {
        "-ERR This instance has cluster support disabled\r\n",
        "*1\r\n*2\r\n:0\r\n:1\r\n",                             /* no master */
        "*1\r\n*3\r\n:10\r\n:5\r\n*2\r\n$1\r\nh\r\n:1\r\n",     /* end < start */
        "*1\r\n*3\r\n:0\r\n:16384\r\n*2\r\n$1\r\nh\r\n:1\r\n",  /* slot out of range */
        "*1\r\n*3\r\n:0\r\n:1\r\n*2\r\n$1\r\nh\r\n:0\r\n",      /* port 0 */
        "*1\r\n*3\r\n:0\r\n:1\r\n*2\r\n:1\r\n:1\r\n",           /* host not a string */
        "*1\r\n*3\r\n$1\r\n0\r\n:1\r\n*2\r\n$1\r\nh\r\n:1\r\n", /* start not an integer */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        r = parse_resp(bad[i]);
        assert_int_equal(redis_cluster_parse_slots(r, "h", ranges, 4), -1);
        freeReplyObject(r);
    }
    r = parse_resp("*0\r\n"); /* a cluster with no slots assigned yet */
    assert_int_equal(redis_cluster_parse_slots(r, "h", ranges, 4), 0);
    freeReplyObject(r);
}

static void test_group_by_slot(void **state)
{
    uint16_t slots[] = {7, 3, 7, 9, 3, 7};
    size_t order[6];
    assert_int_equal(redis_cluster_group_by_slot(slots, 6, order), 3);
    /* grouped by slot, arrival order kept inside a group */
    size_t want[] = {1, 4, 0, 2, 5, 3};
    for (size_t i = 0; i < 6; i++)
        assert_int_equal(order[i], want[i]);
    assert_int_equal(redis_cluster_group_by_slot(slots, 0, order), 0);

    /* more than the on-stack room, all one slot but the last */
    enum { N = 1000 };
    uint16_t many[N];
    size_t big[N];
    for (size_t i = 0; i < N; i++)
        many[i] = i + 1 == N ? 1 : 5;
    assert_int_equal(redis_cluster_group_by_slot(many, N, big), 2);
    assert_int_equal(big[0], N - 1);
    for (size_t i = 1; i < N; i++)
        assert_int_equal(big[i], i - 1);
}

static void test_error_kind(void **state)
{
    char k[16];
    const char *e = "CROSSSLOT Keys in request don't hash to the same slot";
    redis_cluster_error_kind(e, strlen(e), k, sizeof(k));
    assert_string_equal(k, "CROSSSLOT");
    redis_cluster_error_kind("CLUSTERDOWN", 11, k, sizeof(k));
    assert_string_equal(k, "CLUSTERDOWN");
    redis_cluster_error_kind("AVERYLONGERRORWORDINDEED x", 26, k, 8);
    assert_string_equal(k, "AVERYLO");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc16_vector),
        cmocka_unit_test(test_key_slot),
        cmocka_unit_test(test_user_keys_share_a_slot),
        cmocka_unit_test(test_redirect),
        cmocka_unit_test(test_parse_slots),
        cmocka_unit_test(test_group_by_slot),
        cmocka_unit_test(test_error_kind),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
