/*
 * base64url without padding (RFC 4648 section 5), as JWT segments and our cursors use it.
 * Strict decoding: only the URL-safe alphabet, no padding, no whitespace, canonical trailing bits.
 */
#ifndef PROFILE_API_CODEC_B64URL_H
#define PROFILE_API_CODEC_B64URL_H

#include <stdbool.h>
#include <stddef.h>
#include "common/alloc.h"

/** Encoded length of `n` bytes (no padding), not counting a NUL. */
#define B64URL_ENCODED_LEN(n) (((n) / 3) * 4 + (((n) % 3) ? ((n) % 3) + 1 : 0))
/** Upper bound of the decoded length of `n` characters. */
#define B64URL_DECODED_MAX(n) (((n) / 4) * 3 + 2)

/**
 * Encodes `len` bytes of `src` into `dst`, which must hold B64URL_ENCODED_LEN(len) + 1 bytes;
 * NUL-terminates. Returns the number of characters written (without the NUL).
 */
size_t b64url_encode(const unsigned char *src, size_t len, char *dst);

/** True when every one of the `len` characters is in the base64url alphabet. */
bool b64url_valid(const char *s, size_t len);

/**
 * Decodes `len` characters of `src` into `dst` (room for `dstcap` bytes). Returns the decoded
 * length, or -1 on a character outside the alphabet, a length of 4k+1, non-zero unused trailing
 * bits (non-canonical encoding), or when `dstcap` is too small. Thread-safe, no allocation.
 */
PROFILE_MUSTCHECK long b64url_decode(const char *src, size_t len, unsigned char *dst,
                                     size_t dstcap);

#endif
