/*
 * libFuzzer harness: cursor decoding. The first byte is the expected kind. A cursor that
 * decodes must re-encode to exactly the same text (the encoding is canonical).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "api/data/cursor.h"
#include "api/codec/ids.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char kinds[] = "whcr";
    cursor_t c;
    char enc[CURSOR_MAX_ENCODED];

    if (size < 1)
        return 0;
    char kind = kinds[data[0] & 3];
    if (cursor_decode((const char *)data + 1, size - 1, kind, &c) != 0)
        return 0;
    if (c.kind != kind || !ids_valid(c.id, strlen(c.id)))
        abort();
    cursor_encode(&c, enc);
    if (strlen(enc) != size - 1 || memcmp(enc, data + 1, size - 1) != 0)
        abort();
    return 0;
}
