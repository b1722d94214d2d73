/*
 * profile-api entry point: load the configuration (exit 2 with one line per bad variable),
 * set up logging, run the server until SIGTERM.
 */
#include <stdio.h>
#include <string.h>
#include "api/server.h"
#include "common/config.h"
#include "common/log.h"

#define LOG_MODULE "main"

int main(void)
{
    app_config_t cfg;
    char errbuf[4096] = "";
    int rc;

    if (config_load_env(&cfg, CFG_PROG_API, errbuf, sizeof(errbuf)) != 0) {
        fputs(errbuf, stderr);
        if (errbuf[0] != '\0' && errbuf[strlen(errbuf) - 1] != '\n')
            fputc('\n', stderr);
        config_dispose(&cfg);
        return 2;
    }
    log_init("profile-api", cfg.log_level);
    config_log_effective(&cfg, CFG_PROG_API);

    rc = server_run(&cfg, errbuf, sizeof(errbuf));
    if (rc != 0) {
        log_error("%s", errbuf[0] != '\0' ? errbuf : "start-up failed");
        fprintf(stderr, "%s\n", errbuf);
    }
    config_dispose(&cfg);
    return rc;
}
