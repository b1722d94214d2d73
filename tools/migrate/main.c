/*
 * profile-migrate: applies the versioned SQL files of migrations/ to DATABASE_URL, or lists
 * their state with `status`. Exit 0 on success, 1 on a refused or failed migration, 2 on a
 * configuration error.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "common/config.h"
#include "common/db.h"
#include "common/log.h"
#include "common/migrate.h"

#define LOG_MODULE "main"

#ifndef PROFILE_SOURCE_MIGRATIONS
#define PROFILE_SOURCE_MIGRATIONS NULL
#endif

static void usage(FILE *out)
{
    fprintf(out, "usage: profile-migrate [migrate|status]\n"
                 "  migrate  apply pending migrations (default)\n"
                 "  status   list applied and pending versions\n"
                 "environment: DATABASE_URL (required), MIGRATIONS_DIR, LOG_LEVEL\n");
}

/* Prints each "NAME: reason" line of `errs` as one error log line. */
static void report_config_errors(const char *errs)
{
    const char *p = errs;
    while (*p != '\0') {
        const char *nl = strchr(p, '\n');
        size_t n = nl != NULL ? (size_t)(nl - p) : strlen(p);
        if (n > 0)
            log_error("configuration error: %.*s", (int)n, p);
        p += n + (nl != NULL);
    }
}

int main(int argc, char **argv)
{
    app_config_t cfg;
    char errbuf[4096], dir[PATH_MAX];
    const char *cmd = argc > 1 ? argv[1] : "migrate";
    PGconn *conn = NULL;
    int status = 1, applied = 0;

    log_init("profile-migrate", LOG_LEVEL_INFO);
    if (argc > 2 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0) {
        usage(argc > 2 ? stderr : stdout);
        return argc > 2 ? 2 : 0;
    }
    if (strcmp(cmd, "migrate") != 0 && strcmp(cmd, "status") != 0) {
        log_error("unknown command \"%s\" (expected migrate or status)", cmd);
        usage(stderr);
        return 2;
    }

    if (config_load_env(&cfg, CFG_PROG_MIGRATE, errbuf, sizeof(errbuf)) != 0) {
        report_config_errors(errbuf);
        config_dispose(&cfg);
        return 2;
    }
    log_init("profile-migrate", cfg.log_level);
    if (!db_dsn_valid(cfg.database_url)) {
        log_error("configuration error: DATABASE_URL: not a valid PostgreSQL connection string");
        config_dispose(&cfg);
        return 2;
    }
    if (migrate_resolve_dir(cfg.migrations_dir, PROFILE_SOURCE_MIGRATIONS, dir, sizeof(dir), errbuf,
                            sizeof(errbuf)) != 0) {
        log_error("configuration error: %s", errbuf);
        config_dispose(&cfg);
        return 2;
    }
    config_log_effective(&cfg, CFG_PROG_MIGRATE);
    log_info("migrations directory %s", dir);

    if ((conn = db_connect(cfg.database_url, "profile-migrate", 10)) == NULL)
        goto Exit;
    /* the migration lock is a session advisory lock: a transaction-mode pooler would lose it */
    if (db_session_check(conn, cfg.database_url) == DB_SESSION_TRANSACTION_POOLER) {
        log_error("DATABASE_URL leads to a connection pooler in transaction mode; profile-migrate "
                  "needs a direct or session-mode connection (its lock is a session lock)");
        status = 2;
        goto Exit;
    }
    if (strcmp(cmd, "status") == 0) {
        int r = migrate_status(conn, dir, stdout);
        status = r == 0 ? 0 : 1;
    } else {
        status = migrate_run(conn, dir, &applied) == 0 ? 0 : 1;
    }

Exit:
    db_close(conn);
    config_dispose(&cfg);
    return status;
}
