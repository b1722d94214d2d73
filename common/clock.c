/* Monotonic and wall clock readings in the units api/ and relay/ use (see clock.h). */
#include "common/clock.h"

static int64_t read_ns(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t clock_mono_ms(void)
{
    return read_ns(CLOCK_MONOTONIC) / 1000000;
}

int64_t clock_mono_us(void)
{
    return read_ns(CLOCK_MONOTONIC) / 1000;
}

int64_t clock_mono_coarse_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (int64_t)ts.tv_sec;
}

int64_t clock_wall_ns(void)
{
    return read_ns(CLOCK_REALTIME);
}

void clock_mono_ts(struct timespec *ts)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
}

double clock_elapsed_s(const struct timespec *from, const struct timespec *to)
{
    return (double)(to->tv_sec - from->tv_sec) + (double)(to->tv_nsec - from->tv_nsec) / 1e9;
}

double clock_since_s(const struct timespec *from)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return clock_elapsed_s(from, &now);
}
