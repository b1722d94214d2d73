/* Unit tests for common/otel.c against a real loopback HTTP receiver run in a thread. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <json-c/json.h>
#include "common/otel.h"

static int listen_fd;
static int port;
static char received[1 << 16];
static size_t received_len;
static int requests;

static void *receiver(void *arg)
{
    int fd = accept(listen_fd, NULL, NULL);
    size_t got = 0;
    if (fd < 0)
        return NULL;
    for (;;) {
        ssize_t n = recv(fd, received + got, sizeof(received) - 1 - got, 0);
        char *body;
        if (n <= 0)
            break;
        got += (size_t)n;
        received[got] = '\0';
        if ((body = strstr(received, "\r\n\r\n")) != NULL) {
            char *cl = strstr(received, "Content-Length: ");
            size_t want = cl != NULL ? strtoul(cl + 16, NULL, 10) : 0;
            if (got - (size_t)(body + 4 - received) >= want)
                break;
        }
    }
    received_len = got;
    ++requests;
    send(fd, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}", 41, MSG_NOSIGNAL);
    close(fd);
    return NULL;
}

static int setup(void **state)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_int_equal(bind(listen_fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(listen_fd, 4), 0);
    getsockname(listen_fd, (struct sockaddr *)&sa, &len);
    port = ntohs(sa.sin_port);
    return 0;
}

static int teardown(void **state)
{
    close(listen_fd);
    return 0;
}

static void test_rejects_https_and_garbage(void **state)
{
    char err[256];
    assert_int_equal(otel_exporter_start("https://collector:4318", "t", 1.0, 64, err, sizeof(err)),
                     -1);
    assert_non_null(strstr(err, "OTEL_EXPORTER_OTLP_ENDPOINT"));
    assert_int_equal(otel_exporter_start("ftp://x", "t", 1.0, 64, err, sizeof(err)), -1);
}

static void test_off_is_noop(void **state)
{
    otel_span_t s = {.name = "x"};
    uint8_t tid[16] = {1};
    otel_export(&s); /* must not crash or queue */
    assert_false(otel_sampled(tid));
}

static void test_exports_span_as_otlp_json(void **state)
{
    char err[256], endpoint[64];
    pthread_t th;
    otel_span_t s = {.name = "POST /profiles/{userId}/watchlist", .kind = OTEL_KIND_SERVER};
    uint64_t exported, dropped, failed;
    json_object *root, *span, *v;
    const char *body;

    memset(s.trace_id, 0xab, 16);
    memset(s.span_id, 0x01, 8);
    memset(s.parent_span_id, 0x02, 8);
    s.start_ns = 1000;
    s.end_ns = 2000;
    s.attrs[0] = (otel_attr_t){.key = "http.status_code", .num = 201};
    s.attrs[1] = (otel_attr_t){.key = "user", .str = "u\"1"};
    s.nattrs = 2;

    pthread_create(&th, NULL, receiver, NULL);
    snprintf(endpoint, sizeof(endpoint), "http://127.0.0.1:%d", port);
    assert_int_equal(otel_exporter_start(endpoint, "profile-api", 1.0, 64, err, sizeof(err)), 0);
    assert_true(otel_sampled(s.trace_id));
    otel_export(&s);
    otel_exporter_stop(5000);
    pthread_join(th, NULL);

    assert_int_equal(requests, 1);
    assert_non_null(strstr(received, "POST /v1/traces HTTP/1.1"));
    body = strstr(received, "\r\n\r\n") + 4;
    root = json_tokener_parse(body);
    assert_non_null(root);
    span = json_object_array_get_idx(
        json_object_object_get(
            json_object_array_get_idx(
                json_object_object_get(
                    json_object_array_get_idx(json_object_object_get(root, "resourceSpans"), 0),
                    "scopeSpans"),
                0),
            "spans"),
        0);
    assert_non_null(span);
    assert_true(json_object_object_get_ex(span, "traceId", &v));
    assert_string_equal(json_object_get_string(v), "abababababababababababababababab");
    assert_true(json_object_object_get_ex(span, "parentSpanId", &v));
    assert_string_equal(json_object_get_string(v), "0202020202020202");
    assert_true(json_object_object_get_ex(span, "kind", &v));
    assert_int_equal(json_object_get_int(v), 2);
    assert_non_null(strstr(body, "\"stringValue\":\"u\\\"1\""));
    json_object_put(root);
    otel_stats(&exported, &dropped, &failed);
    assert_int_equal(exported, 1);
    assert_int_equal(dropped, 0);
}

static void test_full_queue_drops_and_dead_endpoint_fails(void **state)
{
    char err[256];
    otel_span_t s = {.name = "n", .kind = OTEL_KIND_INTERNAL};
    uint64_t e0, d0, f0, e1, d1, f1;
    memset(s.trace_id, 0x11, 16);
    otel_stats(&e0, &d0, &f0);
    /* port 1 on loopback: nothing listens, connect is refused at once */
    assert_int_equal(otel_exporter_start("http://127.0.0.1:1", "t", 1.0, 16, err, sizeof(err)), 0);
    for (int i = 0; i < 100; ++i)
        otel_export(&s);
    otel_exporter_stop(3000);
    otel_stats(&e1, &d1, &f1);
    assert_int_equal(e1, e0);
    assert_true(d1 - d0 >= 84); /* capacity 16: at least 84 of 100 dropped */
    assert_int_equal((d1 - d0) + (f1 - f0), 100);
}

static void test_sampling_ratio_zero(void **state)
{
    char err[256];
    uint8_t tid[16];
    memset(tid, 0xff, sizeof(tid));
    assert_int_equal(otel_exporter_start("http://127.0.0.1:1", "t", 0.0, 16, err, sizeof(err)), 0);
    assert_false(otel_sampled(tid));
    otel_exporter_stop(100);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rejects_https_and_garbage),
        cmocka_unit_test(test_off_is_noop),
        cmocka_unit_test(test_exports_span_as_otlp_json),
        cmocka_unit_test(test_full_queue_drops_and_dead_endpoint_fails),
        cmocka_unit_test(test_sampling_ratio_zero),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
