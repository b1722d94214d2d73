/*
 * kafka-mock: a local Kafka-protocol broker for development and tests, built on librdkafka's mock
 * cluster (rdkafka_mock.h). It prints its bootstrap address first, then takes fault-injection
 * commands one per line on a control FIFO until SIGTERM/SIGINT (tools/stack.sh).
 *
 * Topic auto-creation: the mock broker creates an unknown topic on a Metadata request that
 * allows auto-creation (producers by default; consumers only with allow.auto.create.topics=true)
 * and on a Produce/Fetch to an unknown topic, with the mock's default partition count (4) and
 * replication factor min(3, brokers). Tests may therefore use their own topic names, or create
 * them explicitly with the `create` command below to pick the partition count.
 *
 * Control commands (one per line; blank lines and lines starting with '#' are ignored):
 *   down B                  broker B stops answering (leadership does NOT move: see `leader`)
 *   up B                    broker B answers again
 *   err COUNT CODE...       the next COUNT Produce requests (API key 0) fail with the given Kafka
 *                           error codes, in order; one CODE is repeated COUNT times. A CODE is a
 *                           number (e.g. 19, or -195 for a disconnect) or a name
 *                           (NOT_ENOUGH_REPLICAS, RD_KAFKA_RESP_ERR__TRANSPORT, ...)
 *   clear                   drop injected request errors, set every broker up with rtt 0
 *   rtt B MS                broker B delays its responses by MS milliseconds
 *   leader TOPIC PART B     broker B becomes the leader of TOPIC's partition PART (an unknown
 *                           TOPIC is auto-created first, as the mock does for any request)
 *   create TOPIC PARTS [RF] create a topic (replication factor defaults to min(3, brokers))
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include "common/log.h"

#define LOG_MODULE "kafka-mock"

#define PRODUCE_API_KEY 0
/* Highest Kafka protocol API key that `clear` resets (librdkafka 2.0.2 knows fewer). */
#define MAX_API_KEY 80
#define MAX_ERR_COUNT 10000
#define MAX_ARGS 64
#define LINE_BYTES 4096

typedef struct st_mock_opts_t {
    int brokers;
    int partitions;
    const char *topic;
    const char *control;
    log_level_t log_level;
} mock_opts_t;

static rd_kafka_mock_cluster_t *mcluster;
static int broker_cnt;

static void usage(FILE *fp)
{
    fprintf(fp, "usage: kafka-mock [--brokers N] [--topic NAME] [--partitions N] "
                "[--control FIFO] [--log-level debug|info|warn|error]\n"
                "Prints the bootstrap address on its first line, then runs until SIGTERM.\n");
}

/* Parses a whole decimal integer in [min, max]. Returns 0 or -1. */
static int parse_long(const char *s, long min, long max, long *out)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

static int parse_opts(int argc, char **argv, mock_opts_t *opts)
{
    static const struct option longopts[] = {
        {"brokers", required_argument, NULL, 'b'},
        {"topic", required_argument, NULL, 't'},
        {"partitions", required_argument, NULL, 'p'},
        {"control", required_argument, NULL, 'c'},
        {"log-level", required_argument, NULL, 'l'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int ch;
    long v;

    opts->brokers = 3;
    opts->partitions = 6;
    opts->topic = "profile.events";
    opts->control = NULL;
    opts->log_level = LOG_LEVEL_INFO;

    while ((ch = getopt_long(argc, argv, "b:t:p:c:l:h", longopts, NULL)) != -1) {
        switch (ch) {
        case 'b':
            if (parse_long(optarg, 1, 64, &v) != 0) {
                fprintf(stderr, "kafka-mock: --brokers must be 1..64\n");
                return -1;
            }
            opts->brokers = (int)v;
            break;
        case 'p':
            if (parse_long(optarg, 1, 1000, &v) != 0) {
                fprintf(stderr, "kafka-mock: --partitions must be 1..1000\n");
                return -1;
            }
            opts->partitions = (int)v;
            break;
        case 't':
            if (optarg[0] == '\0') {
                fprintf(stderr, "kafka-mock: --topic must not be empty\n");
                return -1;
            }
            opts->topic = optarg;
            break;
        case 'c':
            opts->control = optarg;
            break;
        case 'l':
            if (log_parse_level(optarg, &opts->log_level) != 0) {
                fprintf(stderr, "kafka-mock: --log-level must be debug, info, warn or error\n");
                return -1;
            }
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            return -1;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return -1;
    }
    return 0;
}

/* Routes librdkafka's own log lines (syslog levels) into our JSON logger. */
static void rdkafka_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    if (level <= 3)
        log_error("rdkafka %s: %s", fac, buf);
    else if (level == 4)
        log_warn("rdkafka %s: %s", fac, buf);
    else if (level <= 6)
        log_info("rdkafka %s: %s", fac, buf);
    else
        log_debug("rdkafka %s: %s", fac, buf);
}

/* Accepts a number or a name with or without the RD_KAFKA_RESP_ERR_ prefix. Returns 0 or -1. */
static int parse_err_code(const char *s, rd_kafka_resp_err_t *out)
{
    const struct rd_kafka_err_desc *descs;
    size_t cnt;
    long v;

    if (parse_long(s, INT16_MIN, INT16_MAX, &v) == 0) {
        *out = (rd_kafka_resp_err_t)v;
        return 0;
    }
    if (strncasecmp(s, "RD_KAFKA_RESP_ERR_", 18) == 0)
        s += 18;
    rd_kafka_get_err_descs(&descs, &cnt);
    for (size_t i = 0; i < cnt; ++i) {
        if (descs[i].name != NULL && strcasecmp(descs[i].name, s) == 0) {
            *out = descs[i].code;
            return 0;
        }
    }
    return -1;
}

static int parse_broker(const char *s, int32_t *out)
{
    long v;

    if (parse_long(s, 1, broker_cnt, &v) != 0) {
        log_warn("control: broker id '%s' is not in 1..%d", s, broker_cnt);
        return -1;
    }
    *out = (int32_t)v;
    return 0;
}

static int check_err(const char *what, rd_kafka_resp_err_t err)
{
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        log_warn("control: %s failed: %s", what, rd_kafka_err2str(err));
        return -1;
    }
    return 0;
}

static int cmd_err(int argc, char **argv)
{
    rd_kafka_resp_err_t *errs = NULL;
    long count;
    int ret = -1;

    if (argc < 3 || parse_long(argv[1], 1, MAX_ERR_COUNT, &count) != 0) {
        log_warn("control: usage: err COUNT CODE... (COUNT 1..%d)", MAX_ERR_COUNT);
        return -1;
    }
    if (argc - 2 != 1 && argc - 2 != count) {
        log_warn("control: err %ld needs one CODE or exactly %ld codes, got %d", count, count,
                 argc - 2);
        return -1;
    }
    if ((errs = calloc((size_t)count, sizeof(*errs))) == NULL) {
        log_error("control: out of memory");
        return -1;
    }
    for (long i = 0; i < count; ++i) {
        const char *code = argc - 2 == 1 ? argv[2] : argv[2 + i];
        if (parse_err_code(code, &errs[i]) != 0) {
            log_warn("control: unknown Kafka error code '%s'", code);
            goto Exit;
        }
    }
    rd_kafka_mock_push_request_errors_array(mcluster, PRODUCE_API_KEY, (size_t)count, errs);
    log_info("control: next %ld Produce requests fail, first with %s", count,
             rd_kafka_err2name(errs[0]));
    ret = 0;
Exit:
    free(errs);
    return ret;
}

static int cmd_clear(void)
{
    int ret = 0;

    for (int16_t key = 0; key <= MAX_API_KEY; ++key)
        rd_kafka_mock_clear_request_errors(mcluster, key);
    for (int32_t b = 1; b <= broker_cnt; ++b) {
        if (check_err("up", rd_kafka_mock_broker_set_up(mcluster, b)) != 0 ||
            check_err("rtt", rd_kafka_mock_broker_set_rtt(mcluster, b, 0)) != 0)
            ret = -1;
    }
    return ret;
}

/* Runs one control line (modified in place). Returns 0, or -1 after logging why it failed. */
static int run_command(char *line)
{
    char *argv[MAX_ARGS];
    int argc = 0;
    char *save = NULL;
    int32_t broker;
    long v, v2;

    for (char *tok = strtok_r(line, " \t\r", &save); tok != NULL;
         tok = strtok_r(NULL, " \t\r", &save)) {
        if (argc == MAX_ARGS) {
            log_warn("control: too many arguments (max %d)", MAX_ARGS);
            return -1;
        }
        argv[argc++] = tok;
    }
    if (argc == 0 || argv[0][0] == '#')
        return 0;

    if (strcmp(argv[0], "down") == 0 && argc == 2) {
        if (parse_broker(argv[1], &broker) != 0)
            return -1;
        return check_err("down", rd_kafka_mock_broker_set_down(mcluster, broker));
    }
    if (strcmp(argv[0], "up") == 0 && argc == 2) {
        if (parse_broker(argv[1], &broker) != 0)
            return -1;
        return check_err("up", rd_kafka_mock_broker_set_up(mcluster, broker));
    }
    if (strcmp(argv[0], "err") == 0)
        return cmd_err(argc, argv);
    if (strcmp(argv[0], "clear") == 0 && argc == 1)
        return cmd_clear();
    if (strcmp(argv[0], "rtt") == 0 && argc == 3) {
        if (parse_broker(argv[1], &broker) != 0)
            return -1;
        if (parse_long(argv[2], 0, 3600000, &v) != 0) {
            log_warn("control: rtt MS must be 0..3600000");
            return -1;
        }
        return check_err("rtt", rd_kafka_mock_broker_set_rtt(mcluster, broker, (int)v));
    }
    if (strcmp(argv[0], "leader") == 0 && argc == 4) {
        if (parse_long(argv[2], 0, INT32_MAX, &v) != 0) {
            log_warn("control: leader PARTITION must be a partition number");
            return -1;
        }
        if (parse_broker(argv[3], &broker) != 0)
            return -1;
        return check_err("leader",
                         rd_kafka_mock_partition_set_leader(mcluster, argv[1], (int32_t)v, broker));
    }
    if (strcmp(argv[0], "create") == 0 && (argc == 3 || argc == 4)) {
        v2 = broker_cnt < 3 ? broker_cnt : 3;
        if (parse_long(argv[2], 1, 1000, &v) != 0 ||
            (argc == 4 && parse_long(argv[3], 1, broker_cnt, &v2) != 0)) {
            log_warn("control: usage: create TOPIC PARTITIONS [REPLICATION<=%d]", broker_cnt);
            return -1;
        }
        return check_err("create", rd_kafka_mock_topic_create(mcluster, argv[1], (int)v, (int)v2));
    }
    log_warn("control: unknown command or wrong arguments: '%s' (want down B | up B | "
             "err COUNT CODE... | clear | rtt B MS | leader TOPIC PART B | create TOPIC PARTS)",
             argv[0]);
    return -1;
}

/* Creates the FIFO unless a FIFO is already there. Returns 0 or -1. */
static int make_fifo(const char *path)
{
    struct stat st;

    if (mkfifo(path, 0600) == 0)
        return 0;
    if (errno == EEXIST && stat(path, &st) == 0 && S_ISFIFO(st.st_mode))
        return 0;
    log_error("cannot create control FIFO %s: %s", path,
              errno == EEXIST ? "exists and is not a FIFO" : strerror(errno));
    return -1;
}

/*
 * Non-blocking so that opening does not wait for a writer. When a writer closes, read() returns
 * 0 and poll() keeps reporting POLLHUP, so the caller closes and reopens to wait for the next.
 */
static int open_fifo(const char *path)
{
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);

    if (fd < 0)
        log_error("cannot open control FIFO %s: %s", path, strerror(errno));
    return fd;
}

typedef struct st_mock_line_t {
    char buf[LINE_BYTES];
    size_t len;
    int overflow; /* discarding the rest of an overlong line */
} mock_line_t;

/* Feeds bytes read from the FIFO; runs each complete line. */
static void feed(mock_line_t *ln, const char *data, size_t n)
{
    for (size_t i = 0; i < n; ++i) {
        char c = data[i];
        if (c == '\n') {
            if (ln->overflow) {
                log_warn("control: line longer than %d bytes ignored", LINE_BYTES - 1);
            } else {
                ln->buf[ln->len] = '\0';
                log_info("control: %s", ln->buf);
                if (run_command(ln->buf) == 0 && ln->len > 0)
                    log_info("control: ok");
            }
            ln->len = 0;
            ln->overflow = 0;
        } else if (!ln->overflow) {
            if (ln->len + 1 >= sizeof(ln->buf))
                ln->overflow = 1;
            else
                ln->buf[ln->len++] = c;
        }
    }
}

/* Waits for a stop signal while serving the control FIFO (if any). Returns 0 or -1. */
static int serve(const char *control, int sigfd)
{
    mock_line_t *ln = NULL;
    int fifofd = -1;
    int ret = -1;

    if (control != NULL) {
        if (make_fifo(control) != 0 || (fifofd = open_fifo(control)) < 0)
            goto Exit;
        if ((ln = calloc(1, sizeof(*ln))) == NULL)
            goto Exit;
    }

    for (;;) {
        struct pollfd pfd[2] = {{.fd = sigfd, .events = POLLIN}, {.fd = fifofd, .events = POLLIN}};
        int n = poll(pfd, fifofd >= 0 ? 2 : 1, -1);

        if (n < 0) {
            if (errno == EINTR)
                continue;
            log_error("poll: %s", strerror(errno));
            goto Exit;
        }
        if (pfd[0].revents & POLLIN) {
            struct signalfd_siginfo si;
            if (read(sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
                log_info("received signal %u, stopping", si.ssi_signo);
                ret = 0;
                goto Exit;
            }
        }
        if (fifofd >= 0 && (pfd[1].revents & (POLLIN | POLLHUP | POLLERR))) {
            char data[1024];
            ssize_t r = read(fifofd, data, sizeof(data));
            if (r > 0) {
                feed(ln, data, (size_t)r);
            } else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
                /* The writer closed: a partial last line still counts as a command. */
                if (ln->len > 0 && !ln->overflow)
                    feed(ln, "\n", 1);
                ln->len = 0;
                ln->overflow = 0;
                close(fifofd);
                if ((fifofd = open_fifo(control)) < 0)
                    goto Exit;
            }
        }
    }

Exit:
    if (fifofd >= 0)
        close(fifofd);
    free(ln);
    return ret;
}

int main(int argc, char **argv)
{
    mock_opts_t opts;
    rd_kafka_conf_t *conf;
    rd_kafka_t *rk = NULL;
    char errstr[512];
    sigset_t mask;
    int sigfd = -1;
    int exit_code = 1;
    rd_kafka_resp_err_t err;

    if (parse_opts(argc, argv, &opts) != 0)
        return 2;
    log_init("kafka-mock", opts.log_level);
    broker_cnt = opts.brokers;

    /* Signals arrive on a descriptor so the main loop sees them next to the FIFO. Blocked before
     * librdkafka starts its threads so that they inherit the mask. */
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    if (sigprocmask(SIG_BLOCK, &mask, NULL) != 0 ||
        (sigfd = signalfd(-1, &mask, SFD_CLOEXEC)) < 0) {
        log_error("signalfd: %s", strerror(errno));
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);

    conf = rd_kafka_conf_new();
    rd_kafka_conf_set_log_cb(conf, rdkafka_log_cb);
    /* The handle only hosts the mock cluster; it never connects anywhere itself. */
    if ((rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr))) == NULL) {
        log_error("rd_kafka_new: %s", errstr);
        rd_kafka_conf_destroy(conf);
        goto Exit;
    }
    if ((mcluster = rd_kafka_mock_cluster_new(rk, opts.brokers)) == NULL) {
        log_error("cannot create a mock cluster of %d brokers", opts.brokers);
        goto Exit;
    }
    err = rd_kafka_mock_topic_create(mcluster, opts.topic, opts.partitions,
                                     opts.brokers < 3 ? opts.brokers : 3);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        log_error("cannot create topic %s: %s", opts.topic, rd_kafka_err2str(err));
        goto Exit;
    }

    /* The contract: the bootstrap address is the very first output, flushed. */
    if (printf("%s\n", rd_kafka_mock_cluster_bootstraps(mcluster)) < 0 || fflush(stdout) != 0) {
        log_error("cannot write the bootstrap address: %s", strerror(errno));
        goto Exit;
    }
    log_info("mock cluster up: %d brokers at %s, topic %s with %d partitions, control %s",
             opts.brokers, rd_kafka_mock_cluster_bootstraps(mcluster), opts.topic, opts.partitions,
             opts.control != NULL ? opts.control : "(none)");

    if (serve(opts.control, sigfd) == 0)
        exit_code = 0;

Exit:
    if (mcluster != NULL)
        rd_kafka_mock_cluster_destroy(mcluster);
    if (rk != NULL)
        rd_kafka_destroy(rk);
    close(sigfd);
    log_info("stopped");
    return exit_code;
}
