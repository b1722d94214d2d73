/*
 * JWT verification with the algorithm pinned by configuration. The signature is checked here
 * with OpenSSL (libjwt 1.10.2 compares HMACs with strcmp and trusts the header's alg), and every
 * claim is read with the same strict JSON parser the request bodies get.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <json.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include "api/http/auth.h"
#include "api/codec/b64url.h"
#include "api/resources/validate.h"
#include "api/resources/jsonscan.h"

#define AUTH_MAX_TOKEN 8192
#define AUTH_MAX_HEADER_SEGMENT 1024
#define AUTH_MAX_SIG 1024 /* RSA keys up to 8192 bits */
#define AUTH_LEEWAY 60
#define AUTH_MIN_SECRET 32
#define AUTH_MIN_RSA_BITS 2048
#define AUTH_MAX_KEY_FILE (64 * 1024)

typedef enum { ALG_HS256, ALG_RS256 } alg_t;

struct st_auth_verifier_t {
    alg_t alg;
    unsigned char *secret; /* HS256 */
    size_t secret_len;
    EVP_PKEY *pkey; /* RS256; only read after creation, which OpenSSL allows from many threads */
    char *issuer;
    char *audience;
};

static bool set(const char *s)
{
    return s != NULL && s[0] != '\0';
}

/* Reads the whole key file (bounded). Returns a malloc'ed NUL-terminated buffer or NULL. */
static char *read_key_file(const char *path, size_t *len, char *errbuf, size_t errlen)
{
    FILE *fp = fopen(path, "rb");
    char *buf;
    size_t n;

    if (fp == NULL) {
        snprintf(errbuf, errlen, "JWT_PUBLIC_KEY_FILE: cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    buf = xmalloc(AUTH_MAX_KEY_FILE + 1);
    n = fread(buf, 1, AUTH_MAX_KEY_FILE + 1, fp);
    if (ferror(fp) || n > AUTH_MAX_KEY_FILE || n == 0) {
        snprintf(errbuf, errlen, "JWT_PUBLIC_KEY_FILE: %s is %s", path,
                 ferror(fp) ? "unreadable"
                 : n == 0   ? "empty"
                            : "larger than 64 KiB");
        fclose(fp);
        free(buf);
        return NULL;
    }
    fclose(fp);
    buf[n] = '\0';
    *len = n;
    return buf;
}

static EVP_PKEY *load_public_key(const char *path, char *errbuf, size_t errlen)
{
    size_t len = 0;
    char *pem = read_key_file(path, &len, errbuf, errlen);
    EVP_PKEY *pkey = NULL;
    BIO *bio = NULL;

    if (pem == NULL)
        return NULL;
    if (strlen(pem) != len || strstr(pem, "-----BEGIN PUBLIC KEY-----") == NULL ||
        strstr(pem, "PRIVATE KEY") != NULL) {
        snprintf(errbuf, errlen,
                 "JWT_PUBLIC_KEY_FILE: %s is not a PEM \"BEGIN PUBLIC KEY\" file "
                 "(PKCS#1 \"RSA PUBLIC KEY\", certificates and private keys are refused)",
                 path);
        goto Exit;
    }
    if ((bio = BIO_new_mem_buf(pem, (int)len)) == NULL)
        PROFILE_FATAL("BIO_new_mem_buf failed");
    if ((pkey = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL)) == NULL) {
        snprintf(errbuf, errlen, "JWT_PUBLIC_KEY_FILE: %s: cannot parse the public key", path);
        goto Exit;
    }
    if (EVP_PKEY_base_id(pkey) != EVP_PKEY_RSA) {
        snprintf(errbuf, errlen, "JWT_PUBLIC_KEY_FILE: %s: not an RSA key (RS256 needs one)", path);
        goto Error;
    }
    if (EVP_PKEY_get_bits(pkey) < AUTH_MIN_RSA_BITS) {
        snprintf(errbuf, errlen, "JWT_PUBLIC_KEY_FILE: %s: RSA key shorter than %d bits", path,
                 AUTH_MIN_RSA_BITS);
        goto Error;
    }
    goto Exit;
Error:
    EVP_PKEY_free(pkey);
    pkey = NULL;
Exit:
    BIO_free(bio);
    free(pem);
    return pkey;
}

auth_verifier_t *auth_verifier_create(const app_config_t *cfg, char *errbuf, size_t errlen)
{
    auth_verifier_t *v;
    bool hs = set(cfg->jwt_hs256_secret), rs = set(cfg->jwt_public_key_file);

    if (errlen > 0)
        errbuf[0] = '\0';
    if (hs && rs) {
        snprintf(errbuf, errlen, "JWT_HS256_SECRET, JWT_PUBLIC_KEY_FILE: set only one of them");
        return NULL;
    }
    if (!hs && !rs) {
        snprintf(errbuf, errlen, "JWT_HS256_SECRET, JWT_PUBLIC_KEY_FILE: one is required");
        return NULL;
    }
    if (hs && strlen(cfg->jwt_hs256_secret) < AUTH_MIN_SECRET) {
        snprintf(errbuf, errlen, "JWT_HS256_SECRET: must be at least %d bytes", AUTH_MIN_SECRET);
        return NULL;
    }
    if (!set(cfg->jwt_issuer)) {
        snprintf(errbuf, errlen, "JWT_ISSUER: required");
        return NULL;
    }
    if (!set(cfg->jwt_audience)) {
        snprintf(errbuf, errlen, "JWT_AUDIENCE: required");
        return NULL;
    }
    v = xcalloc(1, sizeof(*v));
    if (hs) {
        v->alg = ALG_HS256;
        v->secret_len = strlen(cfg->jwt_hs256_secret);
        v->secret = (unsigned char *)xstrndup(cfg->jwt_hs256_secret, v->secret_len);
    } else {
        v->alg = ALG_RS256;
        if ((v->pkey = load_public_key(cfg->jwt_public_key_file, errbuf, errlen)) == NULL) {
            free(v);
            return NULL;
        }
    }
    v->issuer = xstrdup(cfg->jwt_issuer);
    v->audience = xstrdup(cfg->jwt_audience);
    return v;
}

void auth_verifier_destroy(auth_verifier_t *v)
{
    if (v == NULL)
        return;
    if (v->secret != NULL) {
        OPENSSL_cleanse(v->secret, v->secret_len);
        free(v->secret);
    }
    EVP_PKEY_free(v->pkey);
    free(v->issuer);
    free(v->audience);
    free(v);
}

/* ---------------------------------------------------------------- verification */

/*
 * Per-thread cache of verified tokens. Clients send the same token on every request, and a
 * verification (HMAC or RSA, base64url, two JSON parses) costs more than a cached list read.
 * An entry holds the exact token bytes and the time window in which its outcome holds (exp
 * and nbf with the leeway), so a hit decides exactly as a full verification would. Tokens are
 * compared in constant time; only successful outcomes (OK, or valid with bad roles) are kept.
 */
#define AUTH_CACHE_SLOTS 1024 /* ~1.1 MB per thread, allocated on first use */
#define AUTH_CACHE_MAX_TOKEN 1024

typedef struct st_auth_cache_entry_t {
    const auth_verifier_t *verifier;
    size_t len;
    double valid_from, valid_until; /* now in [from, until): the outcome below holds */
    auth_status_t status;
    auth_principal_t principal;
    char token[AUTH_CACHE_MAX_TOKEN];
} auth_cache_entry_t;

static __thread auth_cache_entry_t *auth_cache;
static pthread_key_t auth_cache_key; /* frees a thread's cache when the thread ends */
static pthread_once_t auth_cache_once = PTHREAD_ONCE_INIT;

static void auth_cache_key_init(void)
{
    if (pthread_key_create(&auth_cache_key, free) != 0)
        PROFILE_FATAL("pthread_key_create failed");
}

static void cache_alloc(void)
{
    pthread_once(&auth_cache_once, auth_cache_key_init);
    auth_cache = xcalloc(AUTH_CACHE_SLOTS, sizeof(*auth_cache));
    (void)pthread_setspecific(auth_cache_key, auth_cache);
}

static size_t cache_slot(const char *tok, size_t len)
{
    /* FNV-1a over the signature end of the token, which differs between tokens. */
    uint32_t h = 2166136261u;
    size_t from = len > 32 ? len - 32 : 0;
    for (size_t i = from; i < len; ++i)
        h = (h ^ (unsigned char)tok[i]) * 16777619u;
    return h % AUTH_CACHE_SLOTS;
}

static const auth_cache_entry_t *cache_lookup(const auth_verifier_t *v, const char *tok, size_t len,
                                              time_t now)
{
    const auth_cache_entry_t *e;
    if (auth_cache == NULL)
        return NULL;
    e = &auth_cache[cache_slot(tok, len)];
    if (e->verifier != v || e->len != len || len > AUTH_CACHE_MAX_TOKEN ||
        CRYPTO_memcmp(e->token, tok, len) != 0)
        return NULL;
    if ((double)now < e->valid_from || (double)now >= e->valid_until)
        return NULL;
    return e;
}

static void cache_store(const auth_verifier_t *v, const char *tok, size_t len, double from,
                        double until, auth_status_t st, const auth_principal_t *p)
{
    auth_cache_entry_t *e;
    if (len > AUTH_CACHE_MAX_TOKEN)
        return;
    if (auth_cache == NULL)
        cache_alloc();
    e = &auth_cache[cache_slot(tok, len)];
    e->verifier = v;
    e->len = len;
    memcpy(e->token, tok, len);
    e->valid_from = from;
    e->valid_until = until;
    e->status = st;
    e->principal = *p;
}

/* Decodes a base64url segment and parses it strictly as a JSON object. */
static json_object *decode_json_segment(const char *s, size_t len)
{
    unsigned char buf[AUTH_MAX_TOKEN];
    validate_errors_t errs;
    long n = b64url_decode(s, len, buf, sizeof(buf));

    if (n <= 0)
        return NULL;
    return validate_parse_object((const char *)buf, (size_t)n, &errs);
}

static bool check_signature(const auth_verifier_t *v, const char *signed_part, size_t signed_len,
                            const char *sig64, size_t sig64_len)
{
    unsigned char sig[AUTH_MAX_SIG];
    long siglen = b64url_decode(sig64, sig64_len, sig, sizeof(sig));
    bool ok = false;

    if (siglen <= 0)
        return false;
    if (v->alg == ALG_HS256) {
        unsigned char mac[EVP_MAX_MD_SIZE];
        unsigned int maclen = 0;
        if (HMAC(EVP_sha256(), v->secret, (int)v->secret_len, (const unsigned char *)signed_part,
                 signed_len, mac, &maclen) == NULL)
            return false;
        ok = (size_t)siglen == maclen && CRYPTO_memcmp(mac, sig, maclen) == 0;
        OPENSSL_cleanse(mac, sizeof(mac));
    } else {
        EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        if (ctx == NULL)
            PROFILE_FATAL("EVP_MD_CTX_new failed");
        /* Default RSA padding for a digest-verify is PKCS #1 v1.5, which RS256 is. */
        ok = EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, v->pkey) == 1 &&
             EVP_DigestVerify(ctx, sig, (size_t)siglen, (const unsigned char *)signed_part,
                              signed_len) == 1;
        EVP_MD_CTX_free(ctx);
    }
    return ok;
}

static bool is_number(json_object *o, double *out)
{
    if (json_object_is_type(o, json_type_int)) {
        *out = (double)json_object_get_int64(o);
        return true;
    }
    if (json_object_is_type(o, json_type_double)) {
        *out = json_object_get_double(o);
        return isfinite(*out);
    }
    return false;
}

static bool str_equals(json_object *o, const char *want)
{
    size_t n = strlen(want);

    return json_object_is_type(o, json_type_string) && (size_t)json_object_get_string_len(o) == n &&
           memcmp(json_object_get_string(o), want, n) == 0;
}

static bool audience_ok(json_object *aud, const char *want)
{
    size_t i, n;

    if (str_equals(aud, want))
        return true;
    if (!json_object_is_type(aud, json_type_array))
        return false;
    n = json_object_array_length(aud);
    for (i = 0; i < n; ++i) {
        if (str_equals(json_object_array_get_idx(aud, i), want))
            return true;
    }
    return false;
}

static int check_header(const auth_verifier_t *v, json_object *hdr, const char **reason)
{
    json_object *alg, *crit;
    const char *want = v->alg == ALG_HS256 ? "HS256" : "RS256";

    if (!json_object_object_get_ex(hdr, "alg", &alg) ||
        !json_object_is_type(alg, json_type_string)) {
        *reason = "token header has no alg";
        return -1;
    }
    if (!str_equals(alg, want)) {
        *reason = "token alg is not the configured one";
        return -1;
    }
    /* We implement no JWS extensions, so any critical one must be refused (RFC 7515 4.1.11). */
    if (json_object_object_get_ex(hdr, "crit", &crit)) {
        *reason = "token header has crit";
        return -1;
    }
    return 0;
}

/* Checks the registered claims. Returns AUTH_OK or AUTH_ERR_INVALID. */
static auth_status_t check_claims(const auth_verifier_t *v, json_object *claims, time_t now,
                                  auth_principal_t *out, double *valid_from, double *valid_until,
                                  const char **reason)
{
    json_object *o;
    double t;
    size_t len;

    if (!json_object_object_get_ex(claims, "exp", &o) || o == NULL) {
        *reason = "token has no exp";
        return AUTH_ERR_INVALID;
    }
    if (!is_number(o, &t)) {
        *reason = "token exp is not a number";
        return AUTH_ERR_INVALID;
    }
    if ((double)now >= t + AUTH_LEEWAY) {
        *reason = "token expired";
        return AUTH_ERR_INVALID;
    }
    *valid_until = t + AUTH_LEEWAY;
    *valid_from = -INFINITY;
    if (json_object_object_get_ex(claims, "nbf", &o)) {
        if (o == NULL || !is_number(o, &t)) {
            *reason = "token nbf is not a number";
            return AUTH_ERR_INVALID;
        }
        if ((double)now + AUTH_LEEWAY < t) {
            *reason = "token not yet valid";
            return AUTH_ERR_INVALID;
        }
        *valid_from = t - AUTH_LEEWAY;
    }
    if (!json_object_object_get_ex(claims, "iss", &o) || !str_equals(o, v->issuer)) {
        *reason = "token iss mismatch";
        return AUTH_ERR_INVALID;
    }
    if (!json_object_object_get_ex(claims, "aud", &o) || !audience_ok(o, v->audience)) {
        *reason = "token aud mismatch";
        return AUTH_ERR_INVALID;
    }
    if (!json_object_object_get_ex(claims, "sub", &o) ||
        !json_object_is_type(o, json_type_string)) {
        *reason = "token has no sub";
        return AUTH_ERR_INVALID;
    }
    len = (size_t)json_object_get_string_len(o);
    if (len == 0 || len >= sizeof(out->sub) || memchr(json_object_get_string(o), '\0', len)) {
        *reason = "token sub is empty, too long or holds NUL";
        return AUTH_ERR_INVALID;
    }
    memcpy(out->sub, json_object_get_string(o), len);
    out->sub[len] = '\0';
    out->sub_len = len;
    return AUTH_OK;
}

static auth_status_t check_roles(json_object *claims, auth_principal_t *out, const char **reason)
{
    json_object *roles;
    size_t i, n;

    if (!json_object_object_get_ex(claims, "roles", &roles) ||
        !json_object_is_type(roles, json_type_array)) {
        *reason = "token roles missing or not an array";
        return AUTH_ERR_ROLES;
    }
    n = json_object_array_length(roles);
    for (i = 0; i < n; ++i) {
        json_object *r = json_object_array_get_idx(roles, i);
        if (!json_object_is_type(r, json_type_string)) {
            out->roles = 0;
            *reason = "token roles holds a non-string";
            return AUTH_ERR_ROLES;
        }
        if (str_equals(r, "user"))
            out->roles |= AUTH_ROLE_USER;
        else if (str_equals(r, "support"))
            out->roles |= AUTH_ROLE_SUPPORT;
        else if (str_equals(r, "admin"))
            out->roles |= AUTH_ROLE_ADMIN;
    }
    return AUTH_OK;
}

/* Long (81 lines): the verification steps in their order, each a reason to refuse. */
auth_status_t auth_verify(const auth_verifier_t *v, const char *hdr, size_t hdr_len, time_t now,
                          auth_principal_t *out, const char **reason)
{
    static const char scheme[] = "Bearer ";
    const char *why = NULL, *tok, *dot1, *dot2;
    json_object *header = NULL, *claims = NULL;
    auth_status_t st = AUTH_ERR_INVALID;
    size_t tok_len;
    auth_principal_t p;
    double valid_from = 0, valid_until = 0;

    memset(&p, 0, sizeof(p));
    if (hdr == NULL || hdr_len == 0) {
        st = AUTH_ERR_MISSING;
        why = "no Authorization header";
        goto Exit;
    }
    if (hdr_len < sizeof(scheme) || strncasecmp(hdr, scheme, sizeof(scheme) - 1) != 0) {
        st = AUTH_ERR_MISSING;
        why = "Authorization is not Bearer";
        goto Exit;
    }
    tok = hdr + sizeof(scheme) - 1;
    tok_len = hdr_len - (sizeof(scheme) - 1);
    if (tok_len > AUTH_MAX_TOKEN) {
        why = "token too large";
        goto Exit;
    }
    {
        const auth_cache_entry_t *hit = cache_lookup(v, tok, tok_len, now);
        if (hit != NULL) {
            st = hit->status;
            p = hit->principal;
            if (out != NULL)
                *out = p;
            why = st == AUTH_OK ? "ok" : "token roles invalid (cached)";
            goto Exit;
        }
    }
    /* Exactly three non-empty base64url segments; anything else (spaces, a fourth segment,
     * JWE, an unsigned token with an empty signature) is refused before any decoding. */
    if ((dot1 = memchr(tok, '.', tok_len)) == NULL ||
        (dot2 = memchr(dot1 + 1, '.', tok_len - (size_t)(dot1 + 1 - tok))) == NULL ||
        memchr(dot2 + 1, '.', tok_len - (size_t)(dot2 + 1 - tok)) != NULL) {
        why = "token is not three segments";
        goto Exit;
    }
    {
        size_t hlen = (size_t)(dot1 - tok), plen = (size_t)(dot2 - dot1 - 1);
        size_t slen = tok_len - (size_t)(dot2 + 1 - tok);
        if (hlen == 0 || plen == 0 || slen == 0 || !b64url_valid(tok, hlen) ||
            !b64url_valid(dot1 + 1, plen) || !b64url_valid(dot2 + 1, slen)) {
            why = "token has an empty or non-base64url segment";
            goto Exit;
        }
        if (hlen > AUTH_MAX_HEADER_SEGMENT || (header = decode_json_segment(tok, hlen)) == NULL) {
            why = "token header is not a JSON object";
            goto Exit;
        }
        if (check_header(v, header, &why) != 0)
            goto Exit;
        if (!check_signature(v, tok, (size_t)(dot2 - tok), dot2 + 1, slen)) {
            why = "token signature invalid";
            goto Exit;
        }
        if ((claims = decode_json_segment(dot1 + 1, plen)) == NULL) {
            why = "token claims are not a JSON object";
            goto Exit;
        }
    }
    if ((st = check_claims(v, claims, now, &p, &valid_from, &valid_until, &why)) != AUTH_OK)
        goto Exit;
    st = check_roles(claims, &p, &why);
    cache_store(v, tok, tok_len, valid_from, valid_until, st, &p);
    if (out != NULL)
        *out = p;
    if (st == AUTH_OK)
        why = "ok";
Exit:
    json_object_put(header);
    json_object_put(claims);
    if (reason != NULL)
        *reason = why;
    return st;
}

bool auth_may_access(const auth_principal_t *p, const char *user_id, size_t user_id_len, bool write)
{
    if (p == NULL)
        return false;
    if ((p->roles & AUTH_ROLE_ADMIN) != 0)
        return true;
    if (!write && (p->roles & AUTH_ROLE_SUPPORT) != 0)
        return true;
    if ((p->roles & AUTH_ROLE_USER) != 0 && user_id != NULL && p->sub_len == user_id_len &&
        memcmp(p->sub, user_id, user_id_len) == 0)
        return true;
    return false;
}
