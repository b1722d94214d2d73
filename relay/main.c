/*
 * profile-relay: configuration, signals, the metrics server and the relay loop; plus the
 * operator's dead-letter commands (`profile-relay dlq list|requeue ID|skip ID`) and snapshots
 * (`profile-relay snapshot --all|--user ID [--rate N]`, relay/snapshot.c).
 */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "common/config.h"
#include "common/db.h"
#include "common/log.h"
#include "common/otel.h"
#include "relay/event.h"
#include "relay/metrics.h"
#include "relay/outbox.h"
#include "relay/relay.h"
#include "relay/snapshot.h"

#define LOG_MODULE "main"

/* Publish spans waiting for the exporter thread; beyond this they are dropped and counted. */
#define OTEL_QUEUE_CAPACITY 8192
/* How long shutdown waits for the last spans to reach the collector. */
#define OTEL_SHUTDOWN_FLUSH_MS 2000

static relay_t *the_relay;
static volatile bool snapshot_stop;

/* SIGHUP is blocked in every thread and taken by this one (sigwait), so a re-read runs in
 * normal thread context, never inside a signal handler. */
static pthread_t hup_thread;
static atomic_bool hup_stop;

static void *hup_main(void *arg)
{
    const app_config_t *cfg = arg;
    sigset_t set;
    int sig;

    sigemptyset(&set);
    sigaddset(&set, SIGHUP);
    for (;;) {
        if (sigwait(&set, &sig) != 0)
            continue;
        if (atomic_load(&hup_stop))
            break;
        config_reload_log_level(cfg);
    }
    return NULL;
}

static void on_signal(int sig)
{
    if (the_relay != NULL)
        relay_request_stop(the_relay);
    snapshot_stop = true;
}

static void install_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

static void stop_hup_thread(void)
{
    atomic_store(&hup_stop, true);
    pthread_kill(hup_thread, SIGHUP); /* blocked there, so sigwait returns it */
    pthread_join(hup_thread, NULL);
}

static int usage(void)
{
    fprintf(stderr,
            "usage: profile-relay            run the relay (configured by the environment)\n"
            "       profile-relay dlq list   list dead letters\n"
            "       profile-relay dlq requeue ID   retry a dead letter\n"
            "       profile-relay dlq skip ID      mark it published without sending\n"
            "ID is <userId>:<seq> or the event UUID.\n"
            "       profile-relay snapshot --all|--user USER [--rate N]\n"
            "                                write users' current state as events (N events/s,\n"
            "                                default %d); --all resumes an unfinished one\n",
            SNAPSHOT_DEFAULT_RATE);
    return 2;
}

/*
 * The commands (dlq, snapshot) need only DATABASE_URL: loads the configuration as
 * profile-migrate does and connects. NULL with *status 2 (configuration, reported) or 1 (no
 * connection, reported); otherwise the caller owns the connection and disposes of *cfg.
 */
static PGconn *cli_connect(app_config_t *cfg, const char *app_name, int *status)
{
    char errbuf[4096] = "", err[512];
    if (config_load_env(cfg, CFG_PROG_MIGRATE, errbuf, sizeof(errbuf)) != 0) {
        fputs(errbuf, stderr);
        config_dispose(cfg);
        *status = 2;
        return NULL;
    }
    log_init("profile-relay", cfg->log_level);
    PGconn *conn = outbox_connect(cfg->database_url, app_name, err, sizeof(err));
    if (conn == NULL) {
        fprintf(stderr, "profile-relay: cannot connect to PostgreSQL: %s\n", err);
        config_dispose(cfg);
        *status = 1;
    }
    return conn;
}

/* The dlq commands need only DATABASE_URL: load the configuration as profile-migrate does. */
static int run_dlq(int argc, char **argv)
{
    app_config_t cfg;
    event_dlq_id_t id;
    int status = 1;

    if (argc < 3 || (strcmp(argv[2], "list") != 0 && argc != 4) ||
        (strcmp(argv[2], "list") == 0 && argc != 3))
        return usage();
    if (strcmp(argv[2], "list") != 0 && strcmp(argv[2], "requeue") != 0 &&
        strcmp(argv[2], "skip") != 0)
        return usage();
    if (argc == 4 && event_parse_dlq_id(argv[3], &id) != 0) {
        fprintf(stderr, "profile-relay: bad dead-letter id %s (want <userId>:<seq> or a UUID)\n",
                argv[3]);
        return 2;
    }
    PGconn *conn = cli_connect(&cfg, "profile-relay-cli", &status);
    if (conn == NULL)
        return status;
    if (strcmp(argv[2], "list") == 0) {
        status = outbox_dlq_list(conn, stdout) == 0 ? 0 : 1;
    } else {
        bool skip = strcmp(argv[2], "skip") == 0;
        int rc = outbox_dlq_resolve(conn, &id, skip);
        if (rc == 1) {
            printf("%s %s\n", skip ? "skipped" : "requeued", argv[3]);
            status = 0;
        } else if (rc == 0) {
            fprintf(stderr, "profile-relay: no dead letter %s\n", argv[3]);
            status = 1;
        }
    }
    PQfinish(conn);
    config_dispose(&cfg);
    return status;
}

/*
 * LISTEN and the partition leases (session advisory locks) need one server session per
 * connection: refuse a pooler in transaction mode. Checked when PostgreSQL answers at start-up.
 */
static int refuse_transaction_pooler(const app_config_t *cfg)
{
    PGconn *conn = db_connect(cfg->database_url, "profile-relay-check", 5);
    db_session_t s;
    if (conn == NULL) {
        log_warn("PostgreSQL does not answer at start-up: the relay retries, unchecked for a "
                 "transaction-mode pooler");
        return 0;
    }
    s = db_session_check(conn, cfg->database_url);
    db_close(conn);
    if (s != DB_SESSION_TRANSACTION_POOLER)
        return 0;
    log_error("DATABASE_URL leads to a connection pooler in transaction mode; profile-relay needs "
              "a direct or session-mode connection (LISTEN, session advisory locks)");
    return -1;
}

/* snapshot --all|--user ID [--rate N]: needs only DATABASE_URL, as the dlq commands. */
static int run_snapshot(int argc, char **argv)
{
    app_config_t cfg;
    snapshot_opts_t opts;
    int status;

    if (snapshot_parse_args(argc - 2, argv + 2, &opts, stderr) != 0)
        return 2;
    PGconn *conn = cli_connect(&cfg, SNAPSHOT_APPLICATION_NAME, &status);
    if (conn == NULL)
        return status;
    install_signals();
    int rc = snapshot_run(conn, &opts, stdout, isatty(STDOUT_FILENO), &snapshot_stop);
    PQfinish(conn);
    config_dispose(&cfg);
    return rc == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
    app_config_t cfg;
    char errbuf[4096] = "";
    int status;

    if (argc >= 2 && strcmp(argv[1], "dlq") == 0)
        return run_dlq(argc, argv);
    if (argc >= 2 && strcmp(argv[1], "snapshot") == 0)
        return run_snapshot(argc, argv);
    if (argc != 1)
        return usage();
    {
        /* before any thread starts: they all inherit the mask */
        sigset_t hup;
        sigemptyset(&hup);
        sigaddset(&hup, SIGHUP);
        pthread_sigmask(SIG_BLOCK, &hup, NULL);
    }

    if (config_load_env(&cfg, CFG_PROG_RELAY, errbuf, sizeof(errbuf)) != 0) {
        fputs(errbuf, stderr);
        config_dispose(&cfg);
        return 2;
    }
    log_init("profile-relay", cfg.log_level);
    config_log_effective(&cfg, CFG_PROG_RELAY);

    if (cfg.otel_exporter_otlp_endpoint != NULL && cfg.otel_exporter_otlp_endpoint[0] != '\0' &&
        otel_exporter_start(cfg.otel_exporter_otlp_endpoint, "profile-relay",
                            cfg.otel_traces_sampler_arg, OTEL_QUEUE_CAPACITY, errbuf,
                            sizeof(errbuf)) != 0) {
        fprintf(stderr, "%s\n", errbuf);
        config_dispose(&cfg);
        return 2;
    }
    if (refuse_transaction_pooler(&cfg) != 0) {
        otel_exporter_stop(0);
        config_dispose(&cfg);
        return 2;
    }
    the_relay = relay_create(&cfg, errbuf, sizeof(errbuf));
    if (the_relay == NULL) {
        fprintf(stderr, "%s\n", errbuf);
        otel_exporter_stop(0);
        config_dispose(&cfg);
        return 2;
    }
    if (metrics_server_start(cfg.relay_metrics_port, errbuf, sizeof(errbuf)) != 0) {
        fprintf(stderr, "%s\n", errbuf);
        relay_destroy(the_relay);
        otel_exporter_stop(0);
        config_dispose(&cfg);
        return 2;
    }
    log_info("metrics on port %d (/metrics, /health/live, /health/ready)", metrics_server_port());
    if (pthread_create(&hup_thread, NULL, hup_main, &cfg) != 0)
        PROFILE_FATAL("cannot start the SIGHUP thread");

    install_signals();

    status = relay_run(the_relay);
    otel_exporter_stop(OTEL_SHUTDOWN_FLUSH_MS); /* after the last delivery report's span */
    metrics_server_stop();
    relay_destroy(the_relay);
    the_relay = NULL;
    stop_hup_thread();
    config_dispose(&cfg);
    return status;
}
