/*
 * Ids and keys as bytes: which ids and Idempotency-Keys are well-formed, and random hex ids.
 */
#include "api/codec/ids.h"

bool ids_valid(const char *s, size_t len)
{
    size_t i;

    if (s == NULL || len < 1 || len > IDS_MAX_LEN)
        return false;
    for (i = 0; i < len; ++i) {
        unsigned char c = (unsigned char)s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

bool ids_idempotency_key_valid(const char *s, size_t len)
{
    size_t i;

    if (s == NULL || len < 1 || len > IDS_IDEMPOTENCY_KEY_MAX)
        return false;
    for (i = 0; i < len; ++i) {
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e)
            return false;
    }
    return true;
}

void ids_random_hex(uint64_t *rng, char *out, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        /* xorshift64*: ids need uniqueness, not secrecy */
        uint64_t x = *rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        *rng = x;
        x *= 2685821657736338717ull;
        out[2 * i] = hex[(x >> 60) & 0xf];
        out[2 * i + 1] = hex[(x >> 56) & 0xf];
    }
    out[2 * n] = '\0';
}
