/*
 * Idempotency fingerprint (docs/api.md "Idempotency"): SHA-256 over method, NUL, path, NUL, body,
 * so the same key with another method, path or body is told apart.
 */
#ifndef PROFILE_API_HTTP_REQHASH_H
#define PROFILE_API_HTTP_REQHASH_H

#include <stddef.h>
#include <stdint.h>

#define REQHASH_LEN 32

/**
 * Writes SHA-256(method || 0x00 || path || 0x00 || body) into `out`. Any pointer may be NULL
 * when its length is 0. Thread-safe.
 */
void reqhash_compute(const char *method, size_t method_len, const char *path, size_t path_len,
                     const char *body, size_t body_len, uint8_t out[REQHASH_LEN]);

#endif
