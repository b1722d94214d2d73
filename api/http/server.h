/*
 * The HTTP server: h2o configuration, one event loop and SO_REUSEPORT listener per thread, the
 * request pipeline (docs/architecture.md, "api/ layout"), and graceful shutdown.
 */
#ifndef PROFILE_API_SERVER_H
#define PROFILE_API_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include "common/alloc.h"
#include "common/config.h"

/** Tracing: true once the OTLP exporter runs (common/otel.h). Call before server_run(). */
void server_set_tracing(bool on);

/**
 * Runs the server with `cfg` until SIGTERM or SIGINT, then drains (readiness 503 for
 * SHUTDOWN_DRAIN_SECONDS), stops accepting, finishes in-flight requests within a grace period,
 * closes the pools and returns 0. Returns 2 when start-up fails on configuration (message in
 * errbuf) and 1 on other start-up failures (e.g. the port is taken). Call from the main thread;
 * it blocks SIGTERM, SIGINT and SIGHUP (best before any other thread starts) and takes them
 * with sigtimedwait. SIGHUP re-reads LOG_LEVEL_FILE and JWT_JWKS_FILE; the JWKS file is also
 * checked for changes every AUTH_JWKS_CHECK_MS.
 */
PROFILE_MUSTCHECK int server_run(const app_config_t *cfg, char *errbuf, size_t errlen);

#endif
