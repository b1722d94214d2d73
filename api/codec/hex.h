/*
 * Lowercase hex encoding of bytes, shared by trace ids (api/http/server.c) and the request hash
 * of an Idempotency-Key (api/resources/write.c). Internal to api/.
 */
#ifndef PROFILE_API_CODEC_HEX_H
#define PROFILE_API_CODEC_HEX_H

#include <stddef.h>
#include <stdint.h>

/** Lowercase hex of `n` bytes into `out` (2n + 1 bytes, NUL-terminated). */
static inline void hex_encode(const uint8_t *bytes, size_t n, char *out)
{
    static const char hex[] = "0123456789abcdef";
    size_t i;

    for (i = 0; i < n; ++i) {
        out[2 * i] = hex[bytes[i] >> 4];
        out[2 * i + 1] = hex[bytes[i] & 0xf];
    }
    out[2 * n] = '\0';
}

#endif
