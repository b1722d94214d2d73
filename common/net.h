/*
 * The one listening-socket helper of api/ and relay/ (Redis `anet` shape): a generic TCP listen
 * on 0.0.0.0 with flags for what differs between callers.
 */
#ifndef PROFILE_COMMON_NET_H
#define PROFILE_COMMON_NET_H

#include <stddef.h>
#include "common/alloc.h"

/** SO_REUSEPORT: several sockets (one per thread) share the port. */
#define NET_LISTEN_REUSEPORT 0x1
/** TCP_NODELAY on the listener (inherited by accepted sockets on Linux). */
#define NET_LISTEN_NODELAY 0x2

/**
 * Opens a TCP socket on 0.0.0.0:`port` (0: the kernel picks) with SOCK_CLOEXEC and SO_REUSEADDR
 * plus `flags`, and listens with `backlog`. Returns the descriptor (the caller closes it) and
 * sets `*bound_port` (may be NULL) to the port bound; on failure returns -1 and fills errbuf
 * ("cannot listen on port N: reason"). Thread-safe.
 */
PROFILE_MUSTCHECK int net_listen_tcp(int port, int backlog, int flags, int *bound_port,
                                     char *errbuf, size_t errlen);

#endif
