/*
 * profile-api entry point: load the configuration (exit 2 with one line per bad variable),
 * set up logging and the Redis modules (limiter, list cache), run the server until SIGTERM.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include "api/http/server.h"
#include "api/data/listcache.h"
#include "api/data/ratelimit.h"
#include "api/data/redis_client.h"
#include "common/config.h"
#include "common/log.h"
#include "common/otel.h"

#define LOG_MODULE "main"
#define OTEL_QUEUE_CAPACITY 4096 /* spans waiting for export; more are dropped and counted */
#define OTEL_STOP_FLUSH_MS 2000  /* at shutdown, queued spans get this long to be sent */

int main(void)
{
    app_config_t cfg;
    char errbuf[4096] = "";
    sigset_t sigs;
    int rc;

    /* Before any thread starts (the OTLP exporter's too): only server_run()'s sigwait takes
     * SIGTERM, SIGINT and SIGHUP, so none of them can kill the process through another thread. */
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);

    if (config_load_env(&cfg, CFG_PROG_API, errbuf, sizeof(errbuf)) != 0) {
        fputs(errbuf, stderr);
        if (errbuf[0] != '\0' && errbuf[strlen(errbuf) - 1] != '\n')
            fputc('\n', stderr);
        config_dispose(&cfg);
        return 2;
    }
    /* a malformed REDIS_URL is a configuration error (exit 2); a Redis that is down is not */
    if ((cfg.redis_cluster ? redis_client_check_cluster_url(cfg.redis_url, errbuf, sizeof(errbuf))
                           : redis_client_check_url(cfg.redis_url, errbuf, sizeof(errbuf))) != 0) {
        fprintf(stderr, "REDIS_URL: %s\n", errbuf);
        config_dispose(&cfg);
        return 2;
    }
    log_init("profile-api", cfg.log_level);
    config_log_effective(&cfg, CFG_PROG_API);
    if (cfg.otel_exporter_otlp_endpoint != NULL && cfg.otel_exporter_otlp_endpoint[0] != '\0') {
        /* errbuf names OTEL_EXPORTER_OTLP_ENDPOINT */
        if (otel_exporter_start(cfg.otel_exporter_otlp_endpoint, "profile-api",
                                cfg.otel_traces_sampler_arg, OTEL_QUEUE_CAPACITY, errbuf,
                                sizeof(errbuf)) != 0) {
            fprintf(stderr, "%s\n", errbuf);
            config_dispose(&cfg);
            return 2;
        }
        server_set_tracing(true);
        log_info("exporting spans to %s (ratio %g)", cfg.otel_exporter_otlp_endpoint,
                 cfg.otel_traces_sampler_arg);
    }

    {
        ratelimit_config_t rlc = {.limit_per_minute = cfg.rate_limit_per_minute,
                                  .auth_failure_limit_per_minute =
                                      cfg.auth_failure_limit_per_minute};
        ratelimit_global_init(&rlc);
    }
    listcache_global_init(cfg.cache_ttl_seconds, (size_t)cfg.cache_local_mb << 20);
    if (cfg.test_cache_fill_delay_ms > 0)
        (void)listcache_set_fill_delay_ms((unsigned)cfg.test_cache_fill_delay_ms);

    rc = server_run(&cfg, errbuf, sizeof(errbuf));
    if (rc != 0) {
        log_error("%s", errbuf[0] != '\0' ? errbuf : "start-up failed");
        fprintf(stderr, "%s\n", errbuf);
    }
    otel_exporter_stop(OTEL_STOP_FLUSH_MS);
    ratelimit_global_dispose();
    listcache_global_dispose();
    config_dispose(&cfg);
    return rc;
}
