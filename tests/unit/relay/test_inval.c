/* Unit tests for relay/inval.c: REDIS_URL forms, and Redis being down never losing work. */
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
#include "relay/inval.h"
#include "relay/metrics.h"

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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_urls),
        cmocka_unit_test(test_down_keeps_queue_merged),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
