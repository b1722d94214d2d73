/*
 * SHA-256 request fingerprint for idempotency records (OpenSSL EVP).
 */
#include <openssl/evp.h>
#include "common/alloc.h"
#include "api/http/reqhash.h"

void reqhash_compute(const char *method, size_t method_len, const char *path, size_t path_len,
                     const char *body, size_t body_len, uint8_t out[REQHASH_LEN])
{
    static const unsigned char nul = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned int n = 0;

    if (ctx == NULL || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1 ||
        (method_len > 0 && EVP_DigestUpdate(ctx, method, method_len) != 1) ||
        EVP_DigestUpdate(ctx, &nul, 1) != 1 ||
        (path_len > 0 && EVP_DigestUpdate(ctx, path, path_len) != 1) ||
        EVP_DigestUpdate(ctx, &nul, 1) != 1 ||
        (body_len > 0 && EVP_DigestUpdate(ctx, body, body_len) != 1) ||
        EVP_DigestFinal_ex(ctx, out, &n) != 1 || n != REQHASH_LEN)
        PROFILE_FATAL("SHA-256 failed");
    EVP_MD_CTX_free(ctx);
}
