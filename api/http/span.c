/*
 * OpenTelemetry spans of a sampled request: its SERVER span and the CLIENT spans of the
 * PostgreSQL and Redis calls it makes (common/otel.h exports them).
 */
#include <stdio.h>
#include <string.h>
#include "api/http/span.h"
#include "api/http/trace.h"
#include "common/otel.h"

uint64_t api_span_time(const api_req_t *ar, const struct timespec *mono)
{
    int64_t d = (int64_t)(mono->tv_sec - ar->started.tv_sec) * 1000000000 +
                (int64_t)(mono->tv_nsec - ar->started.tv_nsec);
    return d < 0 ? ar->start_real_ns : ar->start_real_ns + (uint64_t)d;
}

static bool all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != 0)
            return false;
    return true;
}

void api_span_client(api_req_t *ar, const char *name, const char *system, const char *op,
                     const struct timespec *t0, const struct timespec *t1, bool error)
{
    otel_span_t s;
    if (!ar->sampled)
        return;
    memset(&s, 0, sizeof(s));
    memcpy(s.trace_id, ar->trace_bin, sizeof(s.trace_id));
    trace_new_span_id(s.span_id);
    memcpy(s.parent_span_id, ar->span_bin, sizeof(s.parent_span_id));
    s.name = name;
    s.kind = OTEL_KIND_CLIENT;
    s.start_ns = api_span_time(ar, t0);
    s.end_ns = api_span_time(ar, t1);
    if (s.end_ns < s.start_ns)
        s.end_ns = s.start_ns;
    s.error = error;
    s.attrs[s.nattrs++] = (otel_attr_t){.key = "db.system", .str = system};
    s.attrs[s.nattrs++] = (otel_attr_t){.key = "db.operation", .str = op};
    otel_export(&s);
}

void api_span_server(api_req_t *ar, int status, const struct timespec *end)
{
    char name[96];
    const char *route = route_template(ar->rm.route);
    otel_span_t s;
    char method[16];
    size_t mlen =
        ar->req->method.len < sizeof(method) - 1 ? ar->req->method.len : sizeof(method) - 1;

    if (!ar->sampled)
        return;
    memcpy(method, ar->req->method.base, mlen);
    method[mlen] = '\0';
    memset(&s, 0, sizeof(s));
    memcpy(s.trace_id, ar->trace_bin, sizeof(s.trace_id));
    memcpy(s.span_id, ar->span_bin, sizeof(s.span_id));
    if (!all_zero(ar->parent_bin, sizeof(ar->parent_bin)))
        memcpy(s.parent_span_id, ar->parent_bin, sizeof(s.parent_span_id));
    snprintf(name, sizeof(name), "%s %s", method, route);
    s.name = name;
    s.kind = OTEL_KIND_SERVER;
    s.start_ns = ar->start_real_ns;
    s.end_ns = api_span_time(ar, end);
    s.error = status >= 500;
    s.attrs[s.nattrs++] = (otel_attr_t){.key = "http.request.method", .str = method};
    s.attrs[s.nattrs++] = (otel_attr_t){.key = "http.route", .str = route};
    s.attrs[s.nattrs++] = (otel_attr_t){.key = "http.response.status_code", .num = status};
    s.attrs[s.nattrs++] = (otel_attr_t){.key = "request_id", .str = ar->request_id};
    if (ar->authed)
        s.attrs[s.nattrs++] = (otel_attr_t){.key = "user", .str = ar->principal.sub};
    otel_export(&s);
}
