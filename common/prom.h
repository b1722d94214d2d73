/*
 * The one Prometheus text-format (0.0.4) writer of api/ and relay/: HELP and TYPE lines, samples
 * with optional labels, and cumulative histograms from per-bucket counts. Callers own the
 * values; this module only formats them into a strbuf.
 */
#ifndef PROFILE_COMMON_PROM_H
#define PROFILE_COMMON_PROM_H

#include <stddef.h>
#include <stdint.h>
#include "common/buf.h"

/* build_info's labels, from the top CMakeLists.txt (the version setting and `git rev-parse` at
 * configure); "unknown" in a build without them. */
#ifndef PROFILE_VERSION
#define PROFILE_VERSION "unknown"
#endif
#ifndef PROFILE_GIT_COMMIT
#define PROFILE_GIT_COMMIT "unknown"
#endif

/** Metric family types (the TYPE line). */
typedef enum { PROM_COUNTER, PROM_GAUGE, PROM_HISTOGRAM } prom_type_t;

/** Appends "# HELP name help" and "# TYPE name type". */
void prom_family(strbuf_t *o, const char *name, prom_type_t type, const char *help);

/**
 * Appends one sample line `name{labels} value`. `labels` is the inside of the braces, already
 * formatted (`route="/x",method="GET"`); NULL or "" writes no braces. Integers are written
 * exactly; doubles with %.17g.
 */
void prom_sample_u64(strbuf_t *o, const char *name, const char *labels, uint64_t v);
void prom_sample_i64(strbuf_t *o, const char *name, const char *labels, int64_t v);
void prom_sample_double(strbuf_t *o, const char *name, const char *labels, double v);

/** A family of one unlabelled sample: HELP, TYPE, value. */
void prom_counter(strbuf_t *o, const char *name, const char *help, uint64_t v);
void prom_gauge(strbuf_t *o, const char *name, const char *help, double v);

/**
 * Appends the series of one histogram (no HELP/TYPE: call prom_family() once per family):
 * `name_bucket{labels,le="…"}` for each of the `nle` upper bounds `le` and +Inf, cumulated from
 * `counts` (nle + 1 per-bucket counts, the last one above every bound), then `name_sum{labels}`
 * (seconds, %.6f) and `name_count{labels}`. `labels` as in prom_sample_u64().
 */
void prom_histogram(strbuf_t *o, const char *name, const char *labels, const double *le, size_t nle,
                    const uint64_t *counts, double sum_s);

#endif
