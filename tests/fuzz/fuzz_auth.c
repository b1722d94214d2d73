/*
 * libFuzzer harness: JWT verification. Even first byte: the rest is an Authorization header
 * value, verified as is. Odd first byte: the rest is "<header JSON>\n<claims JSON>", which the
 * harness encodes and signs with the verifier's secret, so the claim checks are reached too.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include "api/http/auth.h"
#include "api/codec/b64url.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define SECRET "fuzz-secret-fuzz-secret-fuzz-secret-0123"

static auth_verifier_t *verifier(void)
{
    static auth_verifier_t *v;
    if (v == NULL) {
        app_config_t cfg;
        char err[256];
        memset(&cfg, 0, sizeof(cfg));
        cfg.jwt_hs256_secret = SECRET;
        cfg.jwt_issuer = "iss";
        cfg.jwt_audience = "aud";
        v = auth_verifier_create(&cfg, err, sizeof(err));
        if (v == NULL)
            abort();
    }
    return v;
}

static void check(auth_status_t st, const auth_principal_t *p)
{
    if (st == AUTH_OK || st == AUTH_ERR_ROLES) {
        if (p->sub_len < 1 || p->sub_len > 255 || strlen(p->sub) != p->sub_len)
            abort();
        if ((p->roles & ~(AUTH_ROLE_USER | AUTH_ROLE_SUPPORT | AUTH_ROLE_ADMIN)) != 0)
            abort();
    } else if (st != AUTH_ERR_MISSING && st != AUTH_ERR_INVALID) {
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    auth_principal_t p;
    const char *reason = NULL;
    auth_status_t st;

    if (size < 1 || size > 20000)
        return 0;
    if ((data[0] & 1) == 0) {
        st = auth_verify(verifier(), (const char *)data + 1, size - 1, 1700000000, &p, &reason);
        check(st, &p);
        if (reason == NULL)
            abort();
        return 0;
    }
    const char *in = (const char *)data + 1, *nl = memchr(in, '\n', size - 1);
    if (nl == NULL)
        return 0;
    size_t hl = (size_t)(nl - in), pl = size - 1 - hl - 1;
    char *hdr = malloc(7 + B64URL_ENCODED_LEN(hl) + 1 + B64URL_ENCODED_LEN(pl) + 1 + 64);
    size_t n = 7;
    memcpy(hdr, "Bearer ", 7);
    n += b64url_encode((const unsigned char *)in, hl, hdr + n);
    hdr[n++] = '.';
    n += b64url_encode((const unsigned char *)nl + 1, pl, hdr + n);
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    HMAC(EVP_sha256(), SECRET, (int)strlen(SECRET), (const unsigned char *)hdr + 7, n - 7, mac,
         &maclen);
    hdr[n++] = '.';
    n += b64url_encode(mac, maclen, hdr + n);
    st = auth_verify(verifier(), hdr, n, 1700000000, &p, &reason);
    check(st, &p);
    free(hdr);
    return 0;
}
