/*
 * The standard process_* metrics of Prometheus client libraries (CPU time, resident and virtual
 * memory, start time, open and maximum file descriptors), read from /proc/self. Shared by the
 * API and the relay; Linux only. Called on scrape (a few small file reads).
 */
#ifndef PROFILE_COMMON_PROCSTAT_H
#define PROFILE_COMMON_PROCSTAT_H

#include <stdbool.h>
#include "common/buf.h"

typedef struct st_procstat_t {
    bool have_stat;        /* /proc/self/stat was read: the next four fields are valid */
    double cpu_seconds;    /* user + system */
    double resident_bytes; /* RSS */
    double virtual_bytes;  /* vsize */
    double start_time;     /* Unix seconds; 0 when the boot time is unknown */
    int open_fds;          /* -1 when unknown */
    double max_fds;        /* soft RLIMIT_NOFILE; 0 when unlimited or unknown */
} procstat_t;

/** Reads the figures of this process. */
void procstat_read(procstat_t *out);

/** Appends the process_* metrics (HELP, TYPE, value) in Prometheus text format. */
void procstat_render(strbuf_t *out);

#endif
