/* Listening sockets: the setup api/server.c and relay/metrics.c share. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include "common/net.h"

int net_listen_tcp(int port, int backlog, int flags, int *bound_port, char *errbuf, size_t errlen)
{
    struct sockaddr_in addr;
    socklen_t alen = sizeof(addr);
    int fd, on = 1, saved;

    if ((fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
        goto Error;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) != 0)
        goto Error;
    if ((flags & NET_LISTEN_REUSEPORT) &&
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on)) != 0)
        goto Error;
    if (flags & NET_LISTEN_NODELAY)
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on)); /* an optimisation only */
    memset(&addr, 0, sizeof(addr));
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_ANY);
    addr.sin_port = htons((uint16_t)port);
    if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0 || listen(fd, backlog) != 0 ||
        getsockname(fd, (struct sockaddr *)&addr, &alen) != 0)
        goto Error;
    if (bound_port != NULL)
        *bound_port = ntohs(addr.sin_port);
    return fd;
Error:
    saved = errno;
    snprintf(errbuf, errlen, "cannot listen on port %d: %s", port, strerror(saved));
    if (fd >= 0)
        close(fd);
    return -1;
}
