/*
 * process_* metrics from /proc/self (stat, fd) and /proc/stat (boot time).
 */
#include <dirent.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <unistd.h>
#include "common/procstat.h"

/* Reads a small /proc file into `buf` (NUL-terminated). Returns the length, or -1. */
static ssize_t read_proc(const char *path, char *buf, size_t size)
{
    FILE *fp = fopen(path, "re");
    size_t n;
    if (fp == NULL)
        return -1;
    n = fread(buf, 1, size - 1, fp);
    fclose(fp);
    buf[n] = '\0';
    return (ssize_t)n;
}

/* System boot time (btime of /proc/stat) in Unix seconds, 0 when unknown; read once. */
static long long boot_time(void)
{
    static atomic_llong cached;
    long long v = atomic_load(&cached);
    char buf[8192];
    const char *p;
    if (v != 0 || read_proc("/proc/stat", buf, sizeof(buf)) < 0)
        return v;
    if ((p = strstr(buf, "\nbtime ")) != NULL)
        v = strtoll(p + 7, NULL, 10);
    atomic_store(&cached, v);
    return v;
}

static int count_open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    int n = 0;
    if (d == NULL)
        return -1;
    while ((e = readdir(d)) != NULL)
        n += e->d_name[0] != '.';
    closedir(d);
    return n - 1; /* the directory's own descriptor */
}

void procstat_read(procstat_t *out)
{
    char buf[1024];
    const char *p;
    unsigned long long utime = 0, stime = 0, start_ticks = 0, vsize = 0;
    long long rss_pages = 0;
    long ticks = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
    struct rlimit rl;

    memset(out, 0, sizeof(*out));
    /* Fields after "(comm)" start at field 3 (state); comm may hold spaces and parentheses. */
    if (read_proc("/proc/self/stat", buf, sizeof(buf)) > 0 && (p = strrchr(buf, ')')) != NULL &&
        sscanf(p + 2,
               "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d %*d %*d %*d "
               "%llu %llu %lld",
               &utime, &stime, &start_ticks, &vsize, &rss_pages) == 5 &&
        ticks > 0) {
        out->have_stat = true;
        out->cpu_seconds = (double)(utime + stime) / (double)ticks;
        out->resident_bytes = (double)rss_pages * (double)page;
        out->virtual_bytes = (double)vsize;
        if (boot_time() > 0)
            out->start_time = (double)boot_time() + (double)start_ticks / (double)ticks;
    }
    out->open_fds = count_open_fds();
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
        out->max_fds = (double)rl.rlim_cur;
}

static void metric(strbuf_t *o, const char *name, const char *help, const char *kind, double v)
{
    strbuf_appendf(o, "# HELP %s %s\n# TYPE %s %s\n%s %.17g\n", name, help, name, kind, name, v);
}

void procstat_render(strbuf_t *o)
{
    procstat_t s;

    procstat_read(&s);
    if (s.have_stat) {
        metric(o, "process_cpu_seconds_total", "Total user and system CPU time spent in seconds.",
               "counter", s.cpu_seconds);
        metric(o, "process_resident_memory_bytes", "Resident memory size in bytes.", "gauge",
               s.resident_bytes);
        metric(o, "process_virtual_memory_bytes", "Virtual memory size in bytes.", "gauge",
               s.virtual_bytes);
        if (s.start_time > 0)
            metric(o, "process_start_time_seconds",
                   "Start time of the process since unix epoch in seconds.", "gauge", s.start_time);
    }
    if (s.open_fds >= 0)
        metric(o, "process_open_fds", "Number of open file descriptors.", "gauge", s.open_fds);
    if (s.max_fds > 0)
        metric(o, "process_max_fds", "Maximum number of open file descriptors.", "gauge",
               s.max_fds);
}
