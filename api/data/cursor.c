/*
 * Opaque keyset cursors: base64url of version | kind | ts_us (big-endian) | id length | id, then
 * an 8-byte check value (SHA-256 over a domain-separation string and the payload), so a cursor
 * that was edited, truncated or taken from another list decodes to an error.
 */
#include <string.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include "api/codec/b64url.h"
#include "api/data/cursor.h"
#include "api/codec/ids.h"

#define CURSOR_VERSION 1
#define CURSOR_TAG_LEN 8
#define CURSOR_HEAD_LEN 11 /* version, kind, 8 bytes of ts, id length */
#define CURSOR_MAX_RAW (CURSOR_HEAD_LEN + CURSOR_MAX_ID + CURSOR_TAG_LEN)
/* 0001-01-01T00:00:00Z .. 9999-12-31T23:59:59.999999Z: what PostgreSQL and RFC 3339 share. */
#define CURSOR_TS_MIN (-62135596800000000LL)
#define CURSOR_TS_MAX (253402300799999999LL)

static const char domain[] = "profile-service/cursor/v1";

static int known_kind(char k)
{
    return k == 'w' || k == 'h' || k == 'c' || k == 'r';
}

static void compute_tag(const unsigned char *payload, size_t len, unsigned char *tag)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();

    if (ctx == NULL || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1 ||
        EVP_DigestUpdate(ctx, domain, sizeof(domain)) != 1 ||
        EVP_DigestUpdate(ctx, payload, len) != 1 || EVP_DigestFinal_ex(ctx, md, &mdlen) != 1 ||
        mdlen < CURSOR_TAG_LEN)
        PROFILE_FATAL("SHA-256 unavailable");
    EVP_MD_CTX_free(ctx);
    memcpy(tag, md, CURSOR_TAG_LEN);
}

void cursor_encode(const cursor_t *c, char *out)
{
    unsigned char raw[CURSOR_MAX_RAW];
    size_t idlen = strnlen(c->id, CURSOR_MAX_ID), n = 0;
    uint64_t ts = (uint64_t)c->ts_us;
    int i;

    raw[n++] = CURSOR_VERSION;
    raw[n++] = (unsigned char)c->kind;
    for (i = 7; i >= 0; --i)
        raw[n++] = (unsigned char)(ts >> (i * 8));
    raw[n++] = (unsigned char)idlen;
    memcpy(raw + n, c->id, idlen);
    n += idlen;
    compute_tag(raw, n, raw + n);
    n += CURSOR_TAG_LEN;
    b64url_encode(raw, n, out);
}

int cursor_decode(const char *s, size_t len, char expect_kind, cursor_t *out)
{
    unsigned char raw[CURSOR_MAX_RAW], tag[CURSOR_TAG_LEN];
    uint64_t ts = 0;
    long n;
    size_t idlen, i;

    if (s == NULL || len == 0 || len > CURSOR_MAX_ENCODED)
        return -1;
    if ((n = b64url_decode(s, len, raw, sizeof(raw))) < CURSOR_HEAD_LEN + 1 + CURSOR_TAG_LEN)
        return -1;
    idlen = raw[CURSOR_HEAD_LEN - 1];
    if (idlen == 0 || idlen > CURSOR_MAX_ID ||
        (size_t)n != CURSOR_HEAD_LEN + idlen + CURSOR_TAG_LEN)
        return -1;
    compute_tag(raw, CURSOR_HEAD_LEN + idlen, tag);
    if (CRYPTO_memcmp(tag, raw + CURSOR_HEAD_LEN + idlen, CURSOR_TAG_LEN) != 0)
        return -1;
    if (raw[0] != CURSOR_VERSION || !known_kind((char)raw[1]) || (char)raw[1] != expect_kind)
        return -1;
    for (i = 0; i < 8; ++i)
        ts = (ts << 8) | raw[2 + i];
    if ((int64_t)ts < CURSOR_TS_MIN || (int64_t)ts > CURSOR_TS_MAX)
        return -1;
    if (!ids_valid((const char *)raw + CURSOR_HEAD_LEN, idlen))
        return -1;
    out->kind = (char)raw[1];
    out->ts_us = (int64_t)ts;
    memcpy(out->id, raw + CURSOR_HEAD_LEN, idlen);
    out->id[idlen] = '\0';
    return 0;
}
