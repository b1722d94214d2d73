/*
 * The one clock helper of api/ and relay/: monotonic time for timeouts, intervals and latency
 * histograms, and wall time for timestamps. Every function is thread-safe and cannot fail.
 */
#ifndef PROFILE_COMMON_CLOCK_H
#define PROFILE_COMMON_CLOCK_H

#include <stdint.h>
#include <time.h>

/** Monotonic milliseconds (CLOCK_MONOTONIC); only differences mean anything. */
int64_t clock_mono_ms(void);

/** Monotonic microseconds (CLOCK_MONOTONIC); only differences mean anything. */
int64_t clock_mono_us(void);

/**
 * Monotonic whole seconds from CLOCK_MONOTONIC_COARSE: a few nanoseconds per call, resolution
 * of a scheduler tick. For expiry checks on hot paths, not for measuring latency.
 */
int64_t clock_mono_coarse_s(void);

/** Wall clock (CLOCK_REALTIME) in nanoseconds since the Unix epoch. */
int64_t clock_wall_ns(void);

/** Reads CLOCK_MONOTONIC into *ts (for code that keeps a timespec start point). */
void clock_mono_ts(struct timespec *ts);

/** Seconds from `from` to `to` (negative when `to` is earlier). */
double clock_elapsed_s(const struct timespec *from, const struct timespec *to);

/** Seconds from `from` to now on CLOCK_MONOTONIC. */
double clock_since_s(const struct timespec *from);

#endif
