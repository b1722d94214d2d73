/*
 * Ids and keys as bytes: the rule for user, video and request ids, the Idempotency-Key rule, and
 * random hex ids. Pure functions over bytes: no h2o, no I/O, nothing else of api/.
 */
#ifndef PROFILE_API_CODEC_IDS_H
#define PROFILE_API_CODEC_IDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/** Longest id (user, video, request id, the id in a cursor) in bytes. */
#define IDS_MAX_LEN 64
/** Longest Idempotency-Key in bytes. */
#define IDS_IDEMPOTENCY_KEY_MAX 255

/**
 * `^[A-Za-z0-9._-]{1,64}$`: user and video ids (path, body, query, cursor) and X-Request-Id.
 * False for NULL. Thread-safe.
 */
bool ids_valid(const char *s, size_t len);

/** An Idempotency-Key: 1-255 printable ASCII characters (0x20-0x7e). False for NULL. */
bool ids_idempotency_key_valid(const char *s, size_t len);

/**
 * Fills `out` (2*n+1 bytes) with 2*n lowercase hex digits and a NUL, drawn from the xorshift64*
 * generator whose non-zero state `*rng` it advances. For unique ids and sampling, not secrets;
 * not thread-safe for one `*rng` (each event-loop thread has its own).
 */
void ids_random_hex(uint64_t *rng, char *out, size_t n);

#endif
