/* Prometheus text exposition: one writer for the API's and the relay's /metrics. */
#include <inttypes.h>
#include "common/prom.h"

static const char *const type_names[] = {
    [PROM_COUNTER] = "counter", [PROM_GAUGE] = "gauge", [PROM_HISTOGRAM] = "histogram"};

void prom_family(strbuf_t *o, const char *name, prom_type_t type, const char *help)
{
    strbuf_appendf(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type_names[type]);
}

/* Writes `name` or `name{labels}` and the separating space. */
static void series(strbuf_t *o, const char *name, const char *labels)
{
    if (labels != NULL && labels[0] != '\0')
        strbuf_appendf(o, "%s{%s} ", name, labels);
    else
        strbuf_appendf(o, "%s ", name);
}

void prom_sample_u64(strbuf_t *o, const char *name, const char *labels, uint64_t v)
{
    series(o, name, labels);
    strbuf_appendf(o, "%" PRIu64 "\n", v);
}

void prom_sample_i64(strbuf_t *o, const char *name, const char *labels, int64_t v)
{
    series(o, name, labels);
    strbuf_appendf(o, "%" PRId64 "\n", v);
}

void prom_sample_double(strbuf_t *o, const char *name, const char *labels, double v)
{
    series(o, name, labels);
    strbuf_appendf(o, "%.17g\n", v);
}

void prom_counter(strbuf_t *o, const char *name, const char *help, uint64_t v)
{
    prom_family(o, name, PROM_COUNTER, help);
    prom_sample_u64(o, name, NULL, v);
}

void prom_gauge(strbuf_t *o, const char *name, const char *help, double v)
{
    prom_family(o, name, PROM_GAUGE, help);
    prom_sample_double(o, name, NULL, v);
}

void prom_histogram(strbuf_t *o, const char *name, const char *labels, const double *le, size_t nle,
                    const uint64_t *counts, double sum_s)
{
    const char *sep = labels != NULL && labels[0] != '\0' ? "," : "";
    uint64_t cum = 0;

    if (labels == NULL)
        labels = "";
    for (size_t b = 0; b < nle; ++b) {
        cum += counts[b];
        strbuf_appendf(o, "%s_bucket{%s%sle=\"%g\"} %" PRIu64 "\n", name, labels, sep, le[b], cum);
    }
    cum += counts[nle];
    strbuf_appendf(o, "%s_bucket{%s%sle=\"+Inf\"} %" PRIu64 "\n", name, labels, sep, cum);
    strbuf_appendf(o, "%s_sum%s%s%s %.6f\n", name, labels[0] ? "{" : "", labels,
                   labels[0] ? "}" : "", sum_s);
    strbuf_appendf(o, "%s_count%s%s%s %" PRIu64 "\n", name, labels[0] ? "{" : "", labels,
                   labels[0] ? "}" : "", cum);
}
