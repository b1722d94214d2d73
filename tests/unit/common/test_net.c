/* Unit tests for common/net.c: the listening-socket helper of api/ and relay/. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include "common/net.h"

static void test_ephemeral_port_accepts(void **state)
{
    char err[128] = "";
    int port = 0;
    int fd =
        net_listen_tcp(0, 4, NET_LISTEN_REUSEPORT | NET_LISTEN_NODELAY, &port, err, sizeof(err));
    assert_true(fd >= 0);
    assert_true(port > 0);
    /* a second socket shares the port only with SO_REUSEPORT on both */
    int other = 0, fd2 = net_listen_tcp(port, 4, NET_LISTEN_REUSEPORT, &other, err, sizeof(err));
    assert_true(fd2 >= 0);
    assert_int_equal(other, port);
    close(fd2);

    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int c = socket(AF_INET, SOCK_STREAM, 0);
    assert_int_equal(connect(c, (struct sockaddr *)&sa, sizeof(sa)), 0);
    int a = accept(fd, NULL, NULL);
    assert_true(a >= 0);
    close(a);
    close(c);
    close(fd);
}

static void test_port_in_use_fills_errbuf(void **state)
{
    char err[128] = "";
    int port = 0;
    int fd = net_listen_tcp(0, 4, 0, &port, err, sizeof(err));
    assert_true(fd >= 0);
    assert_int_equal(net_listen_tcp(port, 4, 0, NULL, err, sizeof(err)), -1);
    char want[64];
    snprintf(want, sizeof(want), "cannot listen on port %d: ", port);
    assert_memory_equal(err, want, strlen(want));
    assert_non_null(strstr(err, "in use"));
    close(fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ephemeral_port_accepts),
        cmocka_unit_test(test_port_in_use_fills_errbuf),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
