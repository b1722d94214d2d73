/*
 * Test support: start a private redis-server on a free loopback port below 32768 (and a unix
 * socket) and talk to it with a tiny blocking RESP client. Header-only; tests include it.
 */
#ifndef PROFILE_TESTS_REDIS_TEST_H
#define PROFILE_TESTS_REDIS_TEST_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define RT_UNUSED __attribute__((unused))

typedef struct st_rt_server_t {
    pid_t pid;
    int port;
    char dir[128];
    char sock_path[160];
    char password[64]; /* empty = none */
    int cluster;       /* 1: --cluster-enabled yes (slots and MEET are up to the test) */
} rt_server_t;

RT_UNUSED static int rt_port_is_free(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0), ok;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ok = bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
    close(fd);
    return ok;
}

RT_UNUSED static int rt_connect_tcp(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

RT_UNUSED static void rt_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/** Starts redis-server on `srv->port` (kept if > 0, else picked). Returns 0 when it answers. */
RT_UNUSED static int rt_server_start(rt_server_t *srv)
{
    int picked = srv->port <= 0;
    if (srv->dir[0] == '\0') {
        snprintf(srv->dir, sizeof(srv->dir), "/tmp/rt-redis-XXXXXX");
        if (mkdtemp(srv->dir) == NULL)
            return -1;
        snprintf(srv->sock_path, sizeof(srv->sock_path), "%s/redis.sock", srv->dir);
    }
    srand((unsigned)(getpid() ^ time(NULL)));
    for (int attempt = 0; attempt < 5; attempt++) {
        if (picked) {
            do
                srv->port = 20000 + rand() % 12000;
            while (!rt_port_is_free(srv->port));
        }
        char port[16], log[200];
        snprintf(port, sizeof(port), "%d", srv->port);
        snprintf(log, sizeof(log), "%s/redis.log", srv->dir);
        pid_t pid = fork();
        if (pid < 0)
            return -1;
        if (pid == 0) {
            const char *argv[32];
            int n = 0;
            argv[n++] = "redis-server";
            argv[n++] = "--port";
            argv[n++] = port;
            argv[n++] = "--bind";
            argv[n++] = "127.0.0.1";
            argv[n++] = "--save";
            argv[n++] = "";
            argv[n++] = "--appendonly";
            argv[n++] = "no";
            argv[n++] = "--dir";
            argv[n++] = srv->dir;
            argv[n++] = "--logfile";
            argv[n++] = log;
            argv[n++] = "--unixsocket";
            argv[n++] = srv->sock_path;
            argv[n++] = "--unixsocketperm";
            argv[n++] = "700";
            if (srv->password[0] != '\0') {
                argv[n++] = "--requirepass";
                argv[n++] = srv->password;
            }
            if (srv->cluster) {
                argv[n++] = "--cluster-enabled";
                argv[n++] = "yes";
                argv[n++] = "--cluster-config-file";
                argv[n++] = "nodes.conf";
            }
            argv[n] = NULL;
            char *args[32];
            for (int i = 0; i <= n; i++) /* execvp wants writable strings; we are the child */
                args[i] = argv[i] != NULL ? strdup(argv[i]) : NULL;
            execvp("redis-server", args);
            _exit(127);
        }
        srv->pid = pid;
        for (int i = 0; i < 300; i++) {
            int fd = rt_connect_tcp(srv->port);
            if (fd >= 0) {
                close(fd);
                return 0;
            }
            if (waitpid(pid, NULL, WNOHANG) == pid)
                break; /* it exited (port taken meanwhile?): try again */
            rt_sleep_ms(10);
        }
        srv->pid = 0;
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        if (!picked)
            rt_sleep_ms(100);
    }
    return -1;
}

/** Stops the server with `sig` (SIGTERM or SIGKILL) and reaps it. */
RT_UNUSED static void rt_server_stop(rt_server_t *srv, int sig)
{
    if (srv->pid <= 0)
        return;
    kill(srv->pid, SIGCONT);
    kill(srv->pid, sig);
    waitpid(srv->pid, NULL, 0);
    srv->pid = 0;
}

/** Stops the server and removes its directory. */
RT_UNUSED static void rt_server_destroy(rt_server_t *srv)
{
    char cmd[200];
    rt_server_stop(srv, SIGKILL);
    if (srv->dir[0] != '\0') {
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", srv->dir);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", srv->dir);
    }
}

/* --- minimal blocking RESP client --- */

typedef struct st_rt_reply_t {
    char type; /* '+', '-', ':', '$', '*' ; '$' with len -1 = nil */
    long long integer;
    char *str;
    long long len;
    struct st_rt_reply_t **elem;
} rt_reply_t;

RT_UNUSED static void rt_reply_free(rt_reply_t *r)
{
    if (r == NULL)
        return;
    if (r->type == '*')
        for (long long i = 0; i < r->len; i++)
            rt_reply_free(r->elem[i]);
    free(r->elem);
    free(r->str);
    free(r);
}

RT_UNUSED static rt_reply_t *rt_read_reply(FILE *in)
{
    char line[512];
    if (fgets(line, sizeof(line), in) == NULL)
        return NULL;
    line[strcspn(line, "\r\n")] = '\0';
    rt_reply_t *r = calloc(1, sizeof(*r));
    r->type = line[0];
    switch (line[0]) {
    case '+':
    case '-':
        r->str = strdup(line + 1);
        r->len = (long long)strlen(r->str);
        break;
    case ':':
        r->integer = atoll(line + 1);
        break;
    case '$':
        r->len = atoll(line + 1);
        if (r->len >= 0) {
            r->str = malloc((size_t)r->len + 3);
            if (fread(r->str, 1, (size_t)r->len + 2, in) != (size_t)r->len + 2) {
                rt_reply_free(r);
                return NULL;
            }
            r->str[r->len] = '\0';
        }
        break;
    case '*':
        r->len = atoll(line + 1);
        if (r->len > 0) {
            r->elem = calloc((size_t)r->len, sizeof(*r->elem));
            for (long long i = 0; i < r->len; i++)
                if ((r->elem[i] = rt_read_reply(in)) == NULL) {
                    r->len = i;
                    rt_reply_free(r);
                    return NULL;
                }
        }
        break;
    default:
        rt_reply_free(r);
        return NULL;
    }
    return r;
}

typedef struct st_rt_conn_t {
    int fd;
    FILE *in;
} rt_conn_t;

RT_UNUSED static int rt_conn_open(rt_conn_t *c, int port)
{
    c->in = NULL;
    if ((c->fd = rt_connect_tcp(port)) < 0)
        return -1;
    c->in = fdopen(dup(c->fd), "r");
    return c->in != NULL ? 0 : -1;
}

RT_UNUSED static void rt_conn_close(rt_conn_t *c)
{
    if (c->in != NULL)
        fclose(c->in);
    if (c->fd >= 0)
        close(c->fd);
    c->in = NULL;
    c->fd = -1;
}

/** Sends one command (argv strings) without waiting for the reply (pipelining). */
RT_UNUSED static int rt_send(rt_conn_t *c, int argc, const char **argv)
{
    size_t cap = 64, len = 0;
    for (int i = 0; i < argc; i++)
        cap += strlen(argv[i]) + 32;
    char *buf = malloc(cap);
    len += (size_t)snprintf(buf + len, cap - len, "*%d\r\n", argc);
    for (int i = 0; i < argc; i++) {
        size_t l = strlen(argv[i]);
        len += (size_t)snprintf(buf + len, cap - len, "$%zu\r\n", l);
        memcpy(buf + len, argv[i], l);
        len += l;
        memcpy(buf + len, "\r\n", 2);
        len += 2;
    }
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(c->fd, buf + off, len - off);
        if (w <= 0) {
            free(buf);
            return -1;
        }
        off += (size_t)w;
    }
    free(buf);
    return 0;
}

/** Sends one command and reads its reply (caller frees). NULL on I/O error. */
RT_UNUSED static rt_reply_t *rt_cmd(rt_conn_t *c, int argc, const char **argv)
{
    if (rt_send(c, argc, argv) != 0)
        return NULL;
    return rt_read_reply(c->in);
}

#define RT_CMD(c, ...)                                                                             \
    rt_cmd((c), (int)(sizeof((const char *[]){__VA_ARGS__}) / sizeof(const char *)),               \
           (const char *[]){__VA_ARGS__})

/* Two cluster-enabled servers sharing the slots, 0-8191 on node[0] and 8192-16383 on node[1]:
 * the cluster the cluster-mode unit tests of api/ and relay/ run against. */
typedef struct st_rt_cluster2_t {
    rt_server_t node[2];
    char id[2][64]; /* CLUSTER MYID of each */
} rt_cluster2_t;

/** One command to a server on a connection of its own (caller frees). NULL on I/O error. */
RT_UNUSED static rt_reply_t *rt_server_cmd(const rt_server_t *srv, int argc, const char **argv)
{
    rt_conn_t c;
    if (rt_conn_open(&c, srv->port) != 0)
        return NULL;
    rt_reply_t *r = rt_cmd(&c, argc, argv);
    rt_conn_close(&c);
    return r;
}

#define RT_SERVER_CMD(srv, ...)                                                                    \
    rt_server_cmd((srv), (int)(sizeof((const char *[]){__VA_ARGS__}) / sizeof(const char *)),      \
                  (const char *[]){__VA_ARGS__})

/** True when both nodes report cluster_state:ok and know each other. */
RT_UNUSED static bool rt_cluster2_ok(rt_cluster2_t *cl)
{
    for (int i = 0; i < 2; i++) {
        rt_reply_t *r = RT_SERVER_CMD(&cl->node[i], "CLUSTER", "INFO");
        bool ok = r != NULL && r->str != NULL && strstr(r->str, "cluster_state:ok") != NULL &&
                  strstr(r->str, "cluster_known_nodes:2") != NULL;
        rt_reply_free(r);
        if (!ok)
            return false;
    }
    return true;
}

/** Starts both nodes, assigns the slots, joins them and waits (10 s) for the cluster: 0 or -1. */
RT_UNUSED static int rt_cluster2_start(rt_cluster2_t *cl)
{
    char port[16];
    for (int i = 0; i < 2; i++) {
        cl->node[i].cluster = 1;
        if (rt_server_start(&cl->node[i]) != 0)
            return -1;
        rt_reply_t *r = RT_SERVER_CMD(&cl->node[i], "CLUSTER", "MYID");
        if (r == NULL || r->str == NULL)
            return -1;
        snprintf(cl->id[i], sizeof(cl->id[i]), "%s", r->str);
        rt_reply_free(r);
    }
    rt_reply_free(RT_SERVER_CMD(&cl->node[0], "CLUSTER", "ADDSLOTSRANGE", "0", "8191"));
    rt_reply_free(RT_SERVER_CMD(&cl->node[1], "CLUSTER", "ADDSLOTSRANGE", "8192", "16383"));
    snprintf(port, sizeof(port), "%d", cl->node[1].port);
    rt_reply_free(RT_SERVER_CMD(&cl->node[0], "CLUSTER", "MEET", "127.0.0.1", port));
    for (int i = 0; i < 200 && !rt_cluster2_ok(cl); i++)
        rt_sleep_ms(50);
    return rt_cluster2_ok(cl) ? 0 : -1;
}

#endif
