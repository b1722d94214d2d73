/*
 * libFuzzer harness: list query strings. The first byte is the set of allowed parameters.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "api/codec/ids.h"
#include "api/resources/listquery.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    list_query_t q;
    field_errors_t e;

    if (size < 1)
        return 0;
    unsigned allow = data[0] & (VALIDATE_Q_VIEW | VALIDATE_Q_VIDEO_ID);
    if (validate_list_query((const char *)data + 1, size - 1, allow, &q, &e) == 0) {
        if (q.limit < 1 || q.limit > 100 || strlen(q.cursor) > 160)
            abort();
        if (q.video_id[0] != '\0' &&
            ((allow & VALIDATE_Q_VIDEO_ID) == 0 || !ids_valid(q.video_id, strlen(q.video_id))))
            abort();
        if (q.view_continue && (allow & VALIDATE_Q_VIEW) == 0)
            abort();
    } else if (e.count < 1) {
        abort();
    }
    return 0;
}
