/*
 * libFuzzer harness: traceparent parsing. What parses must format and re-parse to the same ids.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "api/http/trace.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    trace_context_t t, u;
    char s[TRACE_TRACEPARENT_LEN + 1];

    if (!trace_parse_traceparent((const char *)data, size, &t))
        return 0;
    trace_format_traceparent(&t, s);
    if (!trace_parse_traceparent(s, strlen(s), &u) || memcmp(&t, &u, sizeof(t)) != 0)
        abort();
    return 0;
}
