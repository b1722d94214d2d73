/*
 * Unit tests for api/http/auth.c: the full negative token matrix for HS256 and RS256, claim checks,
 * header forms, configuration errors and authorization; JWKS key sets (parsing, kid selection,
 * bounded kid-less tries, algorithm pinning, re-reads and rotation while threads verify). Valid
 * tokens come from libjwt; hostile ones are assembled by hand and signed with OpenSSL.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <jwt.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include "api/http/auth.h"
#include "api/codec/b64url.h"
#include "common/log.h"

#define SECRET "0123456789abcdef0123456789abcdef-test-secret"
#define ISS "https://issuer.test"
#define AUD "profile-api"
#define NOW ((time_t)1700000000)

static EVP_PKEY *rsa_key;  /* signing key for RS256 tokens */
static char *rsa_priv_pem; /* the same, PEM (libjwt wants PEM) */
static char *rsa_pub_pem;  /* public key PEM text */
static char pub_path[64];  /* temp file holding rsa_pub_pem */
static auth_verifier_t *hs_v, *rs_v;

/* ------------------------------------------------------------------ helpers */

static char *bio_to_string(BIO *bio)
{
    char *data = NULL;
    long n = BIO_get_mem_data(bio, &data);
    char *s = malloc((size_t)n + 1);
    memcpy(s, data, (size_t)n);
    s[n] = '\0';
    return s;
}

static char *write_temp(const char *text)
{
    static int seq;
    char *path = malloc(64);
    snprintf(path, 64, "/tmp/test_auth_%d_%d.pem", (int)getpid(), seq++);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
    return path;
}

static char *b64(const char *s, size_t len)
{
    char *out = malloc(B64URL_ENCODED_LEN(len) + 1);
    b64url_encode((const unsigned char *)s, len, out);
    return out;
}

typedef enum { SIGN_NONE, SIGN_EMPTY, SIGN_HS256, SIGN_HS512, SIGN_RS256, SIGN_RS384 } sign_t;

/* Builds header.payload.signature from raw JSON texts. `key` is the HMAC key for HS*. */
static char *make_token(sign_t how, const char *header, const char *payload, const char *key,
                        size_t keylen)
{
    char *h = b64(header, strlen(header)), *p = b64(payload, strlen(payload));
    size_t n = strlen(h) + strlen(p) + 2;
    char *signing = malloc(n);
    snprintf(signing, n, "%s.%s", h, p);
    unsigned char sig[1024];
    size_t siglen = 0;

    switch (how) {
    case SIGN_NONE:
    case SIGN_EMPTY:
        break;
    case SIGN_HS256:
    case SIGN_HS512: {
        unsigned int l = 0;
        HMAC(how == SIGN_HS256 ? EVP_sha256() : EVP_sha512(), key, (int)keylen,
             (const unsigned char *)signing, strlen(signing), sig, &l);
        siglen = l;
        break;
    }
    case SIGN_RS256:
    case SIGN_RS384: {
        EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        siglen = sizeof(sig);
        assert_int_equal(EVP_DigestSignInit(ctx, NULL,
                                            how == SIGN_RS256 ? EVP_sha256() : EVP_sha384(), NULL,
                                            rsa_key),
                         1);
        assert_int_equal(
            EVP_DigestSign(ctx, sig, &siglen, (const unsigned char *)signing, strlen(signing)), 1);
        EVP_MD_CTX_free(ctx);
        break;
    }
    }
    char *s = b64((const char *)sig, siglen);
    size_t total = strlen(signing) + strlen(s) + 2;
    char *tok = malloc(total);
    snprintf(tok, total, "%s.%s", signing, how == SIGN_NONE ? "" : s);
    if (how == SIGN_EMPTY)
        snprintf(tok, total, "%s.", signing);
    free(h);
    free(p);
    free(s);
    free(signing);
    return tok;
}

static char *claims_json(const char *extra)
{
    char *out = malloc(16384);
    snprintf(out, 16384,
             "{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"sub\":\"u1\",\"exp\":%lld,"
             "\"roles\":[\"user\"]%s%s}",
             (long long)NOW + 300, extra && *extra ? "," : "", extra ? extra : "");
    return out;
}

/* Copies `tmpl` with its first "%lld" replaced by `v` (templates are not printf formats). */
static char *subst_number(const char *tmpl, long long v)
{
    char *out = malloc(strlen(tmpl) + 32);
    const char *at = strstr(tmpl, "%lld");
    if (at == NULL) {
        strcpy(out, tmpl);
        return out;
    }
    sprintf(out, "%.*s%lld%s", (int)(at - tmpl), tmpl, v, at + 4);
    return out;
}

/* Verifies "Bearer <tok>" with v. */
static auth_status_t verify(const auth_verifier_t *v, const char *tok, auth_principal_t *p)
{
    char hdr[20000];
    const char *reason = NULL;
    snprintf(hdr, sizeof(hdr), "Bearer %s", tok);
    auth_status_t st = auth_verify(v, hdr, strlen(hdr), NOW, p, &reason);
    assert_non_null(reason);
    return st;
}

/* A token minted with libjwt. */
static char *libjwt_token(jwt_alg_t alg, const char *grants_json)
{
    jwt_t *jwt = NULL;
    assert_int_equal(jwt_new(&jwt), 0);
    assert_int_equal(jwt_add_grants_json(jwt, grants_json), 0);
    if (alg == JWT_ALG_HS256)
        assert_int_equal(jwt_set_alg(jwt, alg, (const unsigned char *)SECRET, strlen(SECRET)), 0);
    else
        assert_int_equal(
            jwt_set_alg(jwt, alg, (const unsigned char *)rsa_priv_pem, (int)strlen(rsa_priv_pem)),
            0);
    char *tok = jwt_encode_str(jwt);
    assert_non_null(tok);
    jwt_free(jwt);
    char *copy = strdup(tok);
    free(tok);
    return copy;
}

static app_config_t base_config(void)
{
    app_config_t cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.jwt_issuer = ISS;
    cfg.jwt_audience = AUD;
    return cfg;
}

static int setup(void **state)
{
    char err[256];
    rsa_key = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    assert_non_null(rsa_key);
    BIO *bio = BIO_new(BIO_s_mem());
    PEM_write_bio_PrivateKey(bio, rsa_key, NULL, NULL, 0, NULL, NULL);
    rsa_priv_pem = bio_to_string(bio);
    BIO_free(bio);
    bio = BIO_new(BIO_s_mem());
    PEM_write_bio_PUBKEY(bio, rsa_key);
    rsa_pub_pem = bio_to_string(bio);
    BIO_free(bio);
    char *path = write_temp(rsa_pub_pem);
    snprintf(pub_path, sizeof(pub_path), "%s", path);
    free(path);

    app_config_t cfg = base_config();
    cfg.jwt_hs256_secret = SECRET;
    hs_v = auth_verifier_create(&cfg, err, sizeof(err));
    assert_non_null(hs_v);
    cfg = base_config();
    cfg.jwt_public_key_file = pub_path;
    rs_v = auth_verifier_create(&cfg, err, sizeof(err));
    if (rs_v == NULL)
        fail_msg("%s", err);
    return 0;
}

static int teardown(void **state)
{
    auth_verifier_destroy(hs_v);
    auth_verifier_destroy(rs_v);
    auth_verifier_destroy(NULL);
    EVP_PKEY_free(rsa_key);
    free(rsa_priv_pem);
    free(rsa_pub_pem);
    unlink(pub_path);
    return 0;
}

/* ------------------------------------------------------------------ tests */

static void test_valid_libjwt_tokens(void **state)
{
    char grants[512];
    snprintf(grants, sizeof(grants),
             "{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"sub\":\"alice\",\"exp\":%lld,"
             "\"iat\":%lld,\"roles\":[\"user\",\"support\"]}",
             (long long)NOW + 600, (long long)NOW);
    auth_principal_t p;

    char *tok = libjwt_token(JWT_ALG_HS256, grants);
    assert_int_equal(verify(hs_v, tok, &p), AUTH_OK);
    assert_string_equal(p.sub, "alice");
    assert_int_equal(p.sub_len, 5);
    assert_int_equal(p.roles, AUTH_ROLE_USER | AUTH_ROLE_SUPPORT);
    assert_int_equal(verify(rs_v, tok, &p), AUTH_ERR_INVALID); /* HS256 against an RSA key */
    free(tok);

    tok = libjwt_token(JWT_ALG_RS256, grants);
    assert_int_equal(verify(rs_v, tok, &p), AUTH_OK);
    assert_string_equal(p.sub, "alice");
    assert_int_equal(verify(hs_v, tok, &p), AUTH_ERR_INVALID); /* RS256 against a secret */
    free(tok);

    tok = libjwt_token(JWT_ALG_RS384, grants);
    assert_int_equal(verify(rs_v, tok, &p), AUTH_ERR_INVALID);
    free(tok);
    tok = libjwt_token(JWT_ALG_RS512, grants);
    assert_int_equal(verify(rs_v, tok, &p), AUTH_ERR_INVALID);
    free(tok);
}

typedef struct {
    const char *name;
    sign_t how;
    const char *header;
    const char *claims_extra; /* appended to the default claims */
    const char *claims_full;  /* replaces the claims when set (use %lld for NOW-relative exp) */
    long long exp_delta;      /* for claims_full: exp = NOW + delta */
    auth_status_t hs_expect;  /* for the HS256 verifier (tokens signed with SECRET) */
} token_case_t;

#define HS "{\"alg\":\"HS256\",\"typ\":\"JWT\"}"

static const token_case_t hs_cases[] = {
    {"valid", SIGN_HS256, HS, NULL, NULL, 0, AUTH_OK},
    {"kid ignored", SIGN_HS256, "{\"alg\":\"HS256\",\"kid\":\"no-such-key\"}", NULL, NULL, 0,
     AUTH_OK},
    {"alg none, no signature", SIGN_NONE, "{\"alg\":\"none\"}", NULL, NULL, 0, AUTH_ERR_INVALID},
    {"alg none, empty signature", SIGN_EMPTY, "{\"alg\":\"none\",\"typ\":\"JWT\"}", NULL, NULL, 0,
     AUTH_ERR_INVALID},
    {"alg None signed", SIGN_HS256, "{\"alg\":\"None\"}", NULL, NULL, 0, AUTH_ERR_INVALID},
    {"alg NONE signed", SIGN_HS256, "{\"alg\":\"NONE\"}", NULL, NULL, 0, AUTH_ERR_INVALID},
    {"alg hs256 lowercase", SIGN_HS256, "{\"alg\":\"hs256\"}", NULL, NULL, 0, AUTH_ERR_INVALID},
    {"alg HS512", SIGN_HS512, "{\"alg\":\"HS512\"}", NULL, NULL, 0, AUTH_ERR_INVALID},
    {"alg HS512 labelled HS256", SIGN_HS512, HS, NULL, NULL, 0, AUTH_ERR_INVALID},
    {"missing alg", SIGN_HS256, "{\"typ\":\"JWT\"}", NULL, NULL, 0, AUTH_ERR_INVALID},
    {"alg number", SIGN_HS256, "{\"alg\":256}", NULL, NULL, 0, AUTH_ERR_INVALID},
    {"alg array", SIGN_HS256, "{\"alg\":[\"HS256\"]}", NULL, NULL, 0, AUTH_ERR_INVALID},
    {"duplicate alg", SIGN_HS256, "{\"alg\":\"none\",\"alg\":\"HS256\"}", NULL, NULL, 0,
     AUTH_ERR_INVALID},
    {"crit header", SIGN_HS256, "{\"alg\":\"HS256\",\"crit\":[\"exp\"]}", NULL, NULL, 0,
     AUTH_ERR_INVALID},
    {"header not JSON", SIGN_HS256, "not json", NULL, NULL, 0, AUTH_ERR_INVALID},
    {"header array", SIGN_HS256, "[\"HS256\"]", NULL, NULL, 0, AUTH_ERR_INVALID},
    {"header empty object", SIGN_HS256, "{}", NULL, NULL, 0, AUTH_ERR_INVALID},
    {"payload not JSON", SIGN_HS256, HS, NULL, "nope", 0, AUTH_ERR_INVALID},
    {"expired beyond leeway", SIGN_HS256, HS, NULL,
     "{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"sub\":\"u1\",\"roles\":[\"user\"],\"exp\":%lld}",
     -61, AUTH_ERR_INVALID},
    {"expired exactly at leeway", SIGN_HS256, HS, NULL,
     "{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"sub\":\"u1\",\"roles\":[\"user\"],\"exp\":%lld}",
     -60, AUTH_ERR_INVALID},
    {"expired within leeway", SIGN_HS256, HS, NULL,
     "{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"sub\":\"u1\",\"roles\":[\"user\"],\"exp\":%lld}",
     -59, AUTH_OK},
    {"exp as real number", SIGN_HS256, HS, NULL,
     "{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"sub\":\"u1\",\"roles\":[\"user\"],\"exp\":%lld.5}",
     10, AUTH_OK},
    {"missing exp", SIGN_HS256, HS, NULL,
     "{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"sub\":\"u1\",\"roles\":[\"user\"]}", 0,
     AUTH_ERR_INVALID},
    {"exp as string", SIGN_HS256, HS, NULL,
     "{\"iss\":\"" ISS "\",\"aud\":\"" AUD
     "\",\"sub\":\"u1\",\"roles\":[\"user\"],\"exp\":\"%lld\"}",
     300, AUTH_ERR_INVALID},
    {"exp null", SIGN_HS256, HS, NULL,
     "{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"sub\":\"u1\",\"roles\":[\"user\"],\"exp\":null}",
     0, AUTH_ERR_INVALID},
    {"exp huge", SIGN_HS256, HS, NULL,
     "{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"sub\":\"u1\",\"roles\":[\"user\"],\"exp\":1e400}",
     0, AUTH_ERR_INVALID},
    {"nbf in the future", SIGN_HS256, HS, "\"nbf\":1700000061", NULL, 0, AUTH_ERR_INVALID},
    {"nbf within leeway", SIGN_HS256, HS, "\"nbf\":1700000059", NULL, 0, AUTH_OK},
    {"nbf in the past", SIGN_HS256, HS, "\"nbf\":1600000000", NULL, 0, AUTH_OK},
    {"nbf string", SIGN_HS256, HS, "\"nbf\":\"1600000000\"", NULL, 0, AUTH_ERR_INVALID},
    {"iat ignored (future, string)", SIGN_HS256, HS, "\"iat\":\"tomorrow\"", NULL, 0, AUTH_OK},
    {"wrong iss", SIGN_HS256, HS, NULL,
     "{\"iss\":\"https://evil.test\",\"aud\":\"" AUD
     "\",\"sub\":\"u1\",\"roles\":[\"user\"],\"exp\":%lld}",
     300, AUTH_ERR_INVALID},
    {"iss prefix", SIGN_HS256, HS, NULL,
     "{\"iss\":\"" ISS "x\",\"aud\":\"" AUD "\",\"sub\":\"u1\",\"roles\":[\"user\"],\"exp\":%lld}",
     300, AUTH_ERR_INVALID},
    {"missing iss", SIGN_HS256, HS, NULL,
     "{\"aud\":\"" AUD "\",\"sub\":\"u1\",\"roles\":[\"user\"],\"exp\":%lld}", 300,
     AUTH_ERR_INVALID},
    {"wrong aud", SIGN_HS256, HS, NULL,
     "{\"iss\":\"" ISS "\",\"aud\":\"other\",\"sub\":\"u1\",\"roles\":[\"user\"],\"exp\":%lld}",
     300, AUTH_ERR_INVALID},
    {"aud array containing ours", SIGN_HS256, HS, NULL,
     "{\"iss\":\"" ISS "\",\"aud\":[\"other\",\"" AUD
     "\"],\"sub\":\"u1\",\"roles\":[\"user\"],\"exp\":%lld}",
     300, AUTH_OK},
    {"aud array without ours", SIGN_HS256, HS, NULL,
     "{\"iss\":\"" ISS "\",\"aud\":[\"other\",1],\"sub\":\"u1\",\"roles\":[\"user\"],\"exp\":%lld}",
     300, AUTH_ERR_INVALID},
    {"aud number", SIGN_HS256, HS, NULL,
     "{\"iss\":\"" ISS "\",\"aud\":1,\"sub\":\"u1\",\"roles\":[\"user\"],\"exp\":%lld}", 300,
     AUTH_ERR_INVALID},
    {"missing aud", SIGN_HS256, HS, NULL,
     "{\"iss\":\"" ISS "\",\"sub\":\"u1\",\"roles\":[\"user\"],\"exp\":%lld}", 300,
     AUTH_ERR_INVALID},
    {"missing sub", SIGN_HS256, HS, NULL,
     "{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"roles\":[\"user\"],\"exp\":%lld}", 300,
     AUTH_ERR_INVALID},
    {"empty sub", SIGN_HS256, HS, NULL,
     "{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"sub\":\"\",\"roles\":[\"user\"],\"exp\":%lld}",
     300, AUTH_ERR_INVALID},
    {"sub number", SIGN_HS256, HS, NULL,
     "{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"sub\":42,\"roles\":[\"user\"],\"exp\":%lld}", 300,
     AUTH_ERR_INVALID},
    {"sub with NUL", SIGN_HS256, HS, NULL,
     "{\"iss\":\"" ISS "\",\"aud\":\"" AUD
     "\",\"sub\":\"u1\\u0000x\",\"roles\":[\"user\"],\"exp\":%lld}",
     300, AUTH_ERR_INVALID},
    {"duplicate sub", SIGN_HS256, HS, NULL,
     "{\"iss\":\"" ISS "\",\"aud\":\"" AUD
     "\",\"sub\":\"u1\",\"sub\":\"admin\",\"roles\":[\"user\"],\"exp\":%lld}",
     300, AUTH_ERR_INVALID},
    {"roles missing", SIGN_HS256, HS, NULL,
     "{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"sub\":\"u1\",\"exp\":%lld}", 300, AUTH_ERR_ROLES},
    {"roles string", SIGN_HS256, HS, NULL,
     "{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"sub\":\"u1\",\"roles\":\"user\",\"exp\":%lld}",
     300, AUTH_ERR_ROLES},
    {"roles null", SIGN_HS256, HS, NULL,
     "{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"sub\":\"u1\",\"roles\":null,\"exp\":%lld}", 300,
     AUTH_ERR_ROLES},
    {"roles with a number", SIGN_HS256, HS, NULL,
     "{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"sub\":\"u1\",\"roles\":[\"user\",2],\"exp\":%lld}",
     300, AUTH_ERR_ROLES},
    {"roles with an object", SIGN_HS256, HS, NULL,
     "{\"iss\":\"" ISS "\",\"aud\":\"" AUD
     "\",\"sub\":\"u1\",\"roles\":[{\"admin\":true}],\"exp\":%lld}",
     300, AUTH_ERR_ROLES},
    {"roles empty", SIGN_HS256, HS, NULL,
     "{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"sub\":\"u1\",\"roles\":[],\"exp\":%lld}", 300,
     AUTH_OK},
    {"roles unknown only", SIGN_HS256, HS, NULL,
     "{\"iss\":\"" ISS "\",\"aud\":\"" AUD
     "\",\"sub\":\"u1\",\"roles\":[\"viewer\",\"Admin\"],\"exp\":%lld}",
     300, AUTH_OK},
};

static void test_hs_matrix(void **state)
{
    for (size_t i = 0; i < sizeof(hs_cases) / sizeof(hs_cases[0]); ++i) {
        const token_case_t *c = &hs_cases[i];
        char *claims;
        if (c->claims_full != NULL) {
            claims = subst_number(c->claims_full, (long long)NOW + c->exp_delta);
        } else {
            claims = claims_json(c->claims_extra);
        }
        char *tok = make_token(c->how, c->header, claims, SECRET, strlen(SECRET));
        auth_principal_t p;
        memset(&p, 0xaa, sizeof(p));
        auth_status_t st = verify(hs_v, tok, &p);
        if (st != c->hs_expect)
            fail_msg("case \"%s\": got %d, want %d", c->name, st, c->hs_expect);
        if (st == AUTH_OK || st == AUTH_ERR_ROLES)
            assert_string_equal(p.sub, "u1");
        if (strcmp(c->name, "roles unknown only") == 0 || strcmp(c->name, "roles empty") == 0)
            assert_int_equal(p.roles, 0);
        free(tok);
        free(claims);
    }
}

static void test_rs_matrix(void **state)
{
    auth_principal_t p;
    char *claims = claims_json(NULL);
    char *tok;

    tok = make_token(SIGN_RS256, "{\"alg\":\"RS256\",\"typ\":\"JWT\"}", claims, NULL, 0);
    assert_int_equal(verify(rs_v, tok, &p), AUTH_OK);
    free(tok);
    tok = make_token(SIGN_RS256, "{\"alg\":\"RS256\",\"kid\":\"rotated-away\"}", claims, NULL, 0);
    assert_int_equal(verify(rs_v, tok, &p), AUTH_OK);
    free(tok);
    /* HS256 signed with the RSA public key bytes as the HMAC secret (key confusion) */
    tok = make_token(SIGN_HS256, HS, claims, rsa_pub_pem, strlen(rsa_pub_pem));
    assert_int_equal(verify(rs_v, tok, &p), AUTH_ERR_INVALID);
    free(tok);
    /* RS384 signature, honestly labelled and relabelled */
    tok = make_token(SIGN_RS384, "{\"alg\":\"RS384\"}", claims, NULL, 0);
    assert_int_equal(verify(rs_v, tok, &p), AUTH_ERR_INVALID);
    free(tok);
    tok = make_token(SIGN_RS384, "{\"alg\":\"RS256\"}", claims, NULL, 0);
    assert_int_equal(verify(rs_v, tok, &p), AUTH_ERR_INVALID);
    free(tok);
    tok = make_token(SIGN_NONE, "{\"alg\":\"none\"}", claims, NULL, 0);
    assert_int_equal(verify(rs_v, tok, &p), AUTH_ERR_INVALID);
    free(tok);
    tok = make_token(SIGN_RS256, "{\"alg\":\"PS256\"}", claims, NULL, 0);
    assert_int_equal(verify(rs_v, tok, &p), AUTH_ERR_INVALID);
    free(tok);
    free(claims);
}

static void test_tampering(void **state)
{
    auth_principal_t p;
    char *claims = claims_json(NULL);
    char *tok = make_token(SIGN_HS256, HS, claims, SECRET, strlen(SECRET));
    size_t len = strlen(tok);
    char *dot1 = strchr(tok, '.'), *dot2 = strrchr(tok, '.');
    char buf[9000];

    assert_int_equal(verify(hs_v, tok, &p), AUTH_OK);

    /* payload: flip one character */
    strcpy(buf, tok);
    buf[(dot1 - tok) + 3] = buf[(dot1 - tok) + 3] == 'A' ? 'B' : 'A';
    assert_int_equal(verify(hs_v, buf, &p), AUTH_ERR_INVALID);
    /* payload swapped for another (admin) payload with the old signature */
    char *evil = claims_json("\"x\":1");
    char *evil_tok = make_token(SIGN_HS256, HS, evil, "wrong-secret-wrong-secret-wrong-secret", 38);
    char *ed1 = strchr(evil_tok, '.'), *ed2 = strrchr(evil_tok, '.');
    snprintf(buf, sizeof(buf), "%.*s%.*s%s", (int)(dot1 - tok), tok, (int)(ed2 - ed1), ed1, dot2);
    assert_int_equal(verify(hs_v, buf, &p), AUTH_ERR_INVALID);
    free(evil);
    free(evil_tok);
    /* signature: flip a character, truncate, extend, pad with '=' */
    strcpy(buf, tok);
    buf[len - 2] = buf[len - 2] == 'A' ? 'B' : 'A';
    assert_int_equal(verify(hs_v, buf, &p), AUTH_ERR_INVALID);
    snprintf(buf, sizeof(buf), "%.*s", (int)len - 5, tok);
    assert_int_equal(verify(hs_v, buf, &p), AUTH_ERR_INVALID);
    snprintf(buf, sizeof(buf), "%.*s", (int)len - 1, tok);
    assert_int_equal(verify(hs_v, buf, &p), AUTH_ERR_INVALID);
    snprintf(buf, sizeof(buf), "%sAAAA", tok);
    assert_int_equal(verify(hs_v, buf, &p), AUTH_ERR_INVALID);
    snprintf(buf, sizeof(buf), "%s=", tok);
    assert_int_equal(verify(hs_v, buf, &p), AUTH_ERR_INVALID);
    /* segments */
    snprintf(buf, sizeof(buf), "%.*s", (int)(dot2 - tok), tok); /* two segments */
    assert_int_equal(verify(hs_v, buf, &p), AUTH_ERR_INVALID);
    snprintf(buf, sizeof(buf), "%s.xyz", tok); /* four */
    assert_int_equal(verify(hs_v, buf, &p), AUTH_ERR_INVALID);
    snprintf(buf, sizeof(buf), "%.*s", (int)(dot1 - tok), tok); /* one */
    assert_int_equal(verify(hs_v, buf, &p), AUTH_ERR_INVALID);
    assert_int_equal(verify(hs_v, "..", &p), AUTH_ERR_INVALID);
    assert_int_equal(verify(hs_v, "a.b.", &p), AUTH_ERR_INVALID);
    assert_int_equal(verify(hs_v, ".b.c", &p), AUTH_ERR_INVALID);
    snprintf(buf, sizeof(buf), "%.*s %s", (int)(dot1 - tok), tok, dot1);
    assert_int_equal(verify(hs_v, buf, &p), AUTH_ERR_INVALID);
    free(tok);
    free(claims);
}

static void test_oversized(void **state)
{
    auth_principal_t p;
    char extra[9000];
    snprintf(extra, sizeof(extra), "\"pad\":\"%08000d\"", 0);
    char *claims = claims_json(extra);
    char *tok = make_token(SIGN_HS256, HS, claims, SECRET, strlen(SECRET));
    assert_true(strlen(tok) > 8192);
    assert_int_equal(verify(hs_v, tok, &p), AUTH_ERR_INVALID);
    free(tok);
    free(claims);

    /* just under the limit still works */
    snprintf(extra, sizeof(extra), "\"pad\":\"%05500d\"", 0);
    claims = claims_json(extra);
    tok = make_token(SIGN_HS256, HS, claims, SECRET, strlen(SECRET));
    assert_true(strlen(tok) <= 8192);
    assert_int_equal(verify(hs_v, tok, &p), AUTH_OK);
    free(tok);
    free(claims);

    /* a huge header value of any size is refused without reading it all */
    size_t big = 1 << 20;
    char *hdr = malloc(big);
    memcpy(hdr, "Bearer ", 7);
    memset(hdr + 7, 'A', big - 7);
    assert_int_equal(auth_verify(hs_v, hdr, big, NOW, &p, NULL), AUTH_ERR_INVALID);
    free(hdr);

    /* deep JSON in the header */
    char deep[600];
    memset(deep, '[', sizeof(deep) - 1);
    deep[sizeof(deep) - 1] = '\0';
    claims = claims_json(NULL);
    tok = make_token(SIGN_HS256, deep, claims, SECRET, strlen(SECRET));
    assert_int_equal(verify(hs_v, tok, &p), AUTH_ERR_INVALID);
    free(tok);
    free(claims);
}

static void test_sub_length(void **state)
{
    auth_principal_t p;
    char claims[1024], sub[300];
    for (int len = 255; len <= 256; ++len) {
        memset(sub, 's', (size_t)len);
        sub[len] = '\0';
        snprintf(claims, sizeof(claims),
                 "{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"sub\":\"%s\",\"exp\":%lld,"
                 "\"roles\":[\"admin\"]}",
                 sub, (long long)NOW + 10);
        char *tok = make_token(SIGN_HS256, HS, claims, SECRET, strlen(SECRET));
        assert_int_equal(verify(hs_v, tok, &p), len == 255 ? AUTH_OK : AUTH_ERR_INVALID);
        if (len == 255) {
            assert_int_equal(p.sub_len, 255);
            assert_int_equal(p.roles, AUTH_ROLE_ADMIN);
        }
        free(tok);
    }
}

static void test_header_forms(void **state)
{
    auth_principal_t p;
    const char *reason = NULL;
    char *claims = claims_json(NULL);
    char *tok = make_token(SIGN_HS256, HS, claims, SECRET, strlen(SECRET));
    char hdr[4096];

    assert_int_equal(auth_verify(hs_v, NULL, 0, NOW, &p, &reason), AUTH_ERR_MISSING);
    assert_non_null(reason);
    assert_int_equal(auth_verify(hs_v, "", 0, NOW, &p, NULL), AUTH_ERR_MISSING);
    assert_int_equal(auth_verify(hs_v, "Bearer", 6, NOW, &p, NULL), AUTH_ERR_MISSING);
    assert_int_equal(auth_verify(hs_v, "Bearer ", 7, NOW, &p, NULL), AUTH_ERR_MISSING);
    static const struct {
        const char *fmt;
        auth_status_t want;
    } forms[] = {
        {"Bearer %s", AUTH_OK},
        {"bearer %s", AUTH_OK},
        {"BEARER %s", AUTH_OK},
        {"Basic %s", AUTH_ERR_MISSING},
        {"Token %s", AUTH_ERR_MISSING},
        {"Bearer  %s", AUTH_ERR_INVALID},
        {"Bearer\t%s", AUTH_ERR_MISSING},
        {"Bearer %s ", AUTH_ERR_INVALID},
        {"Bearer %s,x", AUTH_ERR_INVALID},
        {"Bearer\"%s\"", AUTH_ERR_MISSING},
        {"%s", AUTH_ERR_MISSING},
    };
    for (size_t i = 0; i < sizeof(forms) / sizeof(forms[0]); ++i) {
        const char *at = strstr(forms[i].fmt, "%s");
        snprintf(hdr, sizeof(hdr), "%.*s%s%s", (int)(at - forms[i].fmt), forms[i].fmt, tok, at + 2);
        auth_status_t st = auth_verify(hs_v, hdr, strlen(hdr), NOW, &p, &reason);
        if (st != forms[i].want)
            fail_msg("form \"%s\": got %d want %d", forms[i].fmt, st, forms[i].want);
    }
    /* the header length is what counts, not a NUL */
    snprintf(hdr, sizeof(hdr), "Bearer %s", tok);
    size_t n = strlen(hdr);
    hdr[n] = 'x';
    assert_int_equal(auth_verify(hs_v, hdr, n, NOW, &p, NULL), AUTH_OK);
    free(tok);
    free(claims);
}

static void test_create_errors(void **state)
{
    char err[512];
    app_config_t cfg;

    cfg = base_config();
    cfg.jwt_hs256_secret = SECRET;
    cfg.jwt_public_key_file = pub_path;
    assert_null(auth_verifier_create(&cfg, err, sizeof(err)));
    assert_non_null(strstr(err, "JWT_HS256_SECRET"));
    assert_null(strstr(err, SECRET));

    cfg = base_config();
    assert_null(auth_verifier_create(&cfg, err, sizeof(err)));
    assert_non_null(strstr(err, "JWT_"));

    cfg = base_config();
    cfg.jwt_hs256_secret = "0123456789abcdef0123456789abcde"; /* 31 bytes */
    assert_null(auth_verifier_create(&cfg, err, sizeof(err)));
    assert_non_null(strstr(err, "at least 32"));
    assert_null(strstr(err, "0123456789abcdef"));
    cfg.jwt_hs256_secret = "0123456789abcdef0123456789abcdef"; /* 32 */
    auth_verifier_t *v = auth_verifier_create(&cfg, err, sizeof(err));
    assert_non_null(v);
    auth_verifier_destroy(v);

    cfg = base_config();
    cfg.jwt_hs256_secret = SECRET;
    cfg.jwt_issuer = NULL;
    assert_null(auth_verifier_create(&cfg, err, sizeof(err)));
    assert_non_null(strstr(err, "JWT_ISSUER"));
    cfg = base_config();
    cfg.jwt_hs256_secret = SECRET;
    cfg.jwt_audience = "";
    assert_null(auth_verifier_create(&cfg, err, sizeof(err)));
    assert_non_null(strstr(err, "JWT_AUDIENCE"));

    cfg = base_config();
    cfg.jwt_public_key_file = "/nonexistent/key.pem";
    assert_null(auth_verifier_create(&cfg, err, sizeof(err)));
    assert_non_null(strstr(err, "JWT_PUBLIC_KEY_FILE"));

    /* private key, PKCS#1 label, garbage, EC key, short RSA key, empty file */
    char *bad[6];
    bad[0] = write_temp(rsa_priv_pem);
    char *pkcs1 = strdup(rsa_pub_pem);
    char *tmp = malloc(strlen(pkcs1) + 16);
    char *at = strstr(pkcs1, "BEGIN PUBLIC KEY");
    snprintf(tmp, strlen(pkcs1) + 16, "%.*sBEGIN RSA PUBLIC KEY%s", (int)(at - pkcs1), pkcs1,
             at + strlen("BEGIN PUBLIC KEY"));
    bad[1] = write_temp(tmp);
    free(tmp);
    free(pkcs1);
    bad[2] = write_temp("-----BEGIN PUBLIC KEY-----\nnot base64 !!\n-----END PUBLIC KEY-----\n");
    EVP_PKEY *ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    BIO *bio = BIO_new(BIO_s_mem());
    PEM_write_bio_PUBKEY(bio, ec);
    char *ec_pem = bio_to_string(bio);
    BIO_free(bio);
    EVP_PKEY_free(ec);
    bad[3] = write_temp(ec_pem);
    free(ec_pem);
    EVP_PKEY *small = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
    bio = BIO_new(BIO_s_mem());
    PEM_write_bio_PUBKEY(bio, small);
    char *small_pem = bio_to_string(bio);
    BIO_free(bio);
    EVP_PKEY_free(small);
    bad[4] = write_temp(small_pem);
    free(small_pem);
    bad[5] = write_temp("");
    for (int i = 0; i < 6; ++i) {
        cfg = base_config();
        cfg.jwt_public_key_file = bad[i];
        err[0] = '\0';
        v = auth_verifier_create(&cfg, err, sizeof(err));
        if (v != NULL)
            fail_msg("bad key file %d accepted", i);
        assert_non_null(strstr(err, "JWT_PUBLIC_KEY_FILE"));
        assert_null(strchr(err, '\n'));
        unlink(bad[i]);
        free(bad[i]);
    }
}

static void test_may_access(void **state)
{
    auth_principal_t p;
    memset(&p, 0, sizeof(p));
    strcpy(p.sub, "alice");
    p.sub_len = 5;

    p.roles = AUTH_ROLE_USER;
    assert_true(auth_may_access(&p, "alice", 5, false));
    assert_true(auth_may_access(&p, "alice", 5, true));
    assert_false(auth_may_access(&p, "bob", 3, false));
    assert_false(auth_may_access(&p, "alicex", 6, false));
    assert_false(auth_may_access(&p, "alic", 4, true));
    assert_false(auth_may_access(&p, "ALICE", 5, false));

    p.roles = AUTH_ROLE_SUPPORT;
    assert_true(auth_may_access(&p, "bob", 3, false));
    assert_false(auth_may_access(&p, "bob", 3, true));
    assert_false(auth_may_access(&p, "alice", 5, true)); /* support alone may not write */

    p.roles = AUTH_ROLE_SUPPORT | AUTH_ROLE_USER;
    assert_true(auth_may_access(&p, "alice", 5, true));
    assert_false(auth_may_access(&p, "bob", 3, true));

    p.roles = AUTH_ROLE_ADMIN;
    assert_true(auth_may_access(&p, "bob", 3, true));
    assert_true(auth_may_access(&p, "bob", 3, false));

    p.roles = 0;
    assert_false(auth_may_access(&p, "alice", 5, false));
    assert_false(auth_may_access(NULL, "alice", 5, false));
}

/* The per-thread cache of verified tokens must decide exactly as a full verification: its
 * outcome holds only inside the token's exp/nbf window, for the same verifier and bytes. */
static void test_verified_token_cache(void **state)
{
    char *claims = claims_json("\"nbf\":"
                               "1700000000");
    char *tok = make_token(SIGN_HS256, HS, claims, SECRET, strlen(SECRET));
    char hdr[4096];
    const char *reason;
    auth_principal_t p;

    snprintf(hdr, sizeof(hdr), "Bearer %s", tok);
    for (int i = 0; i < 3; ++i) { /* first a full verification, then cache hits */
        memset(&p, 0, sizeof(p));
        assert_int_equal(auth_verify(hs_v, hdr, strlen(hdr), NOW, &p, &reason), AUTH_OK);
        assert_string_equal(p.sub, "u1");
        assert_int_equal(p.roles, AUTH_ROLE_USER);
    }
    /* exp is NOW + 300, leeway 60: valid at NOW + 359, expired at NOW + 360, cached or not */
    assert_int_equal(auth_verify(hs_v, hdr, strlen(hdr), NOW + 359, &p, &reason), AUTH_OK);
    assert_int_equal(auth_verify(hs_v, hdr, strlen(hdr), NOW + 360, &p, &reason), AUTH_ERR_INVALID);
    /* nbf 1700000000 - 60 s leeway */
    assert_int_equal(auth_verify(hs_v, hdr, strlen(hdr), 1700000000 - 61, &p, &reason),
                     AUTH_ERR_INVALID);
    assert_int_equal(auth_verify(hs_v, hdr, strlen(hdr), 1700000000 - 60, &p, &reason), AUTH_OK);
    /* the same bytes under another verifier are verified afresh (and fail: wrong algorithm) */
    assert_int_equal(auth_verify(rs_v, hdr, strlen(hdr), NOW, &p, &reason), AUTH_ERR_INVALID);
    /* one changed signature byte is a different token: not served from the cache */
    hdr[strlen(hdr) - 2] = hdr[strlen(hdr) - 2] == 'A' ? 'B' : 'A';
    assert_int_equal(auth_verify(hs_v, hdr, strlen(hdr), NOW, &p, &reason), AUTH_ERR_INVALID);
    free(tok);
    free(claims);
}

static char *thread_token;

static void *verify_thread(void *arg)
{
    long ok = 0;
    for (int i = 0; i < 200; ++i) {
        auth_principal_t p;
        char hdr[4096];
        snprintf(hdr, sizeof(hdr), "Bearer %s", thread_token);
        if (auth_verify(rs_v, hdr, strlen(hdr), NOW, &p, NULL) == AUTH_OK &&
            strcmp(p.sub, "u1") == 0)
            ++ok;
    }
    return (void *)ok;
}

static void test_threads(void **state)
{
    pthread_t th[4];
    char *claims = claims_json(NULL);
    thread_token = make_token(SIGN_RS256, "{\"alg\":\"RS256\"}", claims, NULL, 0);
    for (int i = 0; i < 4; ++i)
        assert_int_equal(pthread_create(&th[i], NULL, verify_thread, NULL), 0);
    for (int i = 0; i < 4; ++i) {
        void *ret;
        pthread_join(th[i], &ret);
        assert_int_equal((long)ret, 200);
    }
    free(thread_token);
    free(claims);
}

/* ------------------------------------------------------------------ JWKS (JWT_JWKS_FILE) */

static EVP_PKEY *rsa_key2; /* a second signing key, for rotation */
#define HS_KEY1 "jwks-hs256-key-number-one-0123456789abcdef"
#define HS_KEY2 "jwks-hs256-key-number-two-0123456789abcdef"

/* An RS256 token signed with `key`, with `kid` in its header (NULL: none). */
static char *rs_token_kid(EVP_PKEY *key, const char *kid, const char *claims)
{
    char header[512];
    EVP_PKEY *saved = rsa_key;
    char *tok;
    if (kid != NULL)
        snprintf(header, sizeof(header), "{\"alg\":\"RS256\",\"kid\":\"%s\"}", kid);
    else
        snprintf(header, sizeof(header), "{\"alg\":\"RS256\"}");
    rsa_key = key;
    tok = make_token(SIGN_RS256, header, claims, NULL, 0);
    rsa_key = saved;
    return tok;
}

static char *hs_token_kid(const char *secret, const char *kid, const char *claims)
{
    char header[512];
    if (kid != NULL)
        snprintf(header, sizeof(header), "{\"alg\":\"HS256\",\"kid\":\"%s\"}", kid);
    else
        snprintf(header, sizeof(header), "{\"alg\":\"HS256\"}");
    return make_token(SIGN_HS256, header, claims, secret, strlen(secret));
}

static char *bn_b64(EVP_PKEY *key, const char *param)
{
    BIGNUM *bn = NULL;
    unsigned char bin[1024];
    assert_int_equal(EVP_PKEY_get_bn_param(key, param, &bn), 1);
    int n = BN_bn2bin(bn, bin);
    BN_free(bn);
    return b64((const char *)bin, (size_t)n);
}

/* One JWK of an RSA public key; `extra` holds more members (",\"alg\":\"RS256\"" ...). */
static char *jwk_rsa(EVP_PKEY *key, const char *kid, const char *extra)
{
    char *n = bn_b64(key, OSSL_PKEY_PARAM_RSA_N), *e = bn_b64(key, OSSL_PKEY_PARAM_RSA_E);
    size_t len = strlen(n) + strlen(e) + 512;
    char *out = malloc(len);
    snprintf(out, len, "{\"kty\":\"RSA\",\"kid\":\"%s\",\"n\":\"%s\",\"e\":\"%s\"%s}", kid, n, e,
             extra != NULL ? extra : "");
    free(n);
    free(e);
    return out;
}

static char *jwk_oct(const char *secret, const char *kid, const char *extra)
{
    char *k = b64(secret, strlen(secret));
    char *out = malloc(strlen(k) + 512);
    sprintf(out, "{\"kty\":\"oct\",\"kid\":\"%s\",\"k\":\"%s\"%s}", kid, k,
            extra != NULL ? extra : "");
    free(k);
    return out;
}

/* {"keys":[a, b, ...]} from up to 8 JWKs (NULL ends the list); frees them. */
static char *jwks_doc(char *k0, char *k1, char *k2, char *k3, char *k4, char *k5)
{
    char *keys[] = {k0, k1, k2, k3, k4, k5};
    size_t len = 32;
    for (size_t i = 0; i < 6 && keys[i] != NULL; ++i)
        len += strlen(keys[i]) + 1;
    char *out = malloc(len);
    strcpy(out, "{\"keys\":[");
    for (size_t i = 0; i < 6 && keys[i] != NULL; ++i) {
        if (i > 0)
            strcat(out, ",");
        strcat(out, keys[i]);
        free(keys[i]);
    }
    strcat(out, "]}");
    return out;
}

static char jwks_path[64];

/* Replaces the JWKS file as operators should: a new file renamed over the old one. */
static void jwks_write(const char *doc)
{
    char *tmp = write_temp(doc);
    if (jwks_path[0] == '\0')
        snprintf(jwks_path, sizeof(jwks_path), "/tmp/test_auth_%d.jwks", (int)getpid());
    assert_int_equal(rename(tmp, jwks_path), 0);
    free(tmp);
}

static auth_verifier_t *jwks_verifier(const char *doc, char *err, size_t errlen)
{
    app_config_t cfg = base_config();
    jwks_write(doc);
    cfg.jwt_jwks_file = jwks_path;
    return auth_verifier_create(&cfg, err, errlen);
}

static int jwks_setup(void **state)
{
    log_set_threshold(LOG_LEVEL_WARN); /* one info line per re-read otherwise */
    rsa_key2 = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    assert_non_null(rsa_key2);
    return 0;
}

static int jwks_teardown(void **state)
{
    EVP_PKEY_free(rsa_key2);
    if (jwks_path[0] != '\0')
        unlink(jwks_path);
    return 0;
}

/* A JWKS whose only key has the modulus of `key` and the exponent `e` (base64url). */
static char *jwk_with_e(EVP_PKEY *key, const char *e)
{
    char *n = bn_b64(key, OSSL_PKEY_PARAM_RSA_N);
    char *out = malloc(strlen(n) + 128);
    sprintf(out, "{\"keys\":[{\"kty\":\"RSA\",\"kid\":\"e\",\"n\":\"%s\",\"e\":\"%s\"}]}", n, e);
    free(n);
    return out;
}

static void test_jwks_parse(void **state)
{
    char err[1024];
    /* usable: r1 (RSA, alg RS256, use sig) and h1 (oct); skipped: an EC key, an encryption key
     * and an RSA key published for RS512 */
    char *doc = jwks_doc(
        jwk_rsa(rsa_key, "r1", ",\"alg\":\"RS256\",\"use\":\"sig\""), jwk_oct(HS_KEY1, "h1", NULL),
        strdup("{\"kty\":\"EC\",\"kid\":\"e1\",\"crv\":\"P-256\",\"x\":\"AA\",\"y\":\"AA\"}"),
        jwk_rsa(rsa_key2, "enc1", ",\"use\":\"enc\""),
        jwk_rsa(rsa_key2, "r512", ",\"alg\":\"RS512\""), NULL);
    auth_verifier_t *v = jwks_verifier(doc, err, sizeof(err));
    if (v == NULL)
        fail_msg("%s", err);
    assert_int_equal(auth_verifier_key_count(v), 2);
    auth_verifier_destroy(v);
    free(doc);

    /* broken files: each is refused at start-up with one line naming the variable */
    EVP_PKEY *short_rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
    struct {
        const char *name;
        char *doc;
        const char *says;
    } bad[] = {
        {"not JSON", strdup("{\"keys\":[}"), "not a JSON object"},
        {"no keys", strdup("{\"key\":[]}"), "keys"},
        {"keys not array", strdup("{\"keys\":{}}"), "keys"},
        {"empty", strdup("{\"keys\":[]}"), "no RS256"},
        {"only skipped keys",
         jwks_doc(jwk_rsa(rsa_key, "r1", ",\"alg\":\"HS256\""), NULL, NULL, NULL, NULL, NULL),
         "no RS256"},
        {"no kid",
         strdup("{\"keys\":[{\"kty\":\"oct\",\"k\":\"" /* 32 bytes */
                "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY\"}]}"),
         "kid"},
        {"kid not a string",
         strdup("{\"keys\":[{\"kty\":\"oct\",\"kid\":7,\"k\":\""
                "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY\"}]}"),
         "kid"},
        {"duplicate kid",
         jwks_doc(jwk_rsa(rsa_key, "same", NULL), jwk_oct(HS_KEY1, "same", NULL), NULL, NULL, NULL,
                  NULL),
         "twice"},
        {"short oct",
         jwks_doc(jwk_oct("only-31-bytes-of-secret-0123456", "h", NULL), NULL, NULL, NULL, NULL,
                  NULL),
         "k must be"},
        {"private RSA",
         jwks_doc(jwk_rsa(rsa_key, "p", ",\"d\":\"AQAB\""), NULL, NULL, NULL, NULL, NULL),
         "private"},
        {"short RSA", jwks_doc(jwk_rsa(short_rsa, "s", NULL), NULL, NULL, NULL, NULL, NULL),
         "shorter"},
        {"bad n",
         strdup("{\"keys\":[{\"kty\":\"RSA\",\"kid\":\"x\",\"n\":\"!!\",\"e\":\"AQAB\"}]}"),
         "n and e"},
        {"no kty", strdup("{\"keys\":[{\"kid\":\"x\"}]}"), "kty"},
        {"e = 1", jwk_with_e(rsa_key, "AQ"), "n and e"},
        {"even e", jwk_with_e(rsa_key, "AQAA"), "n and e"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); ++i) {
        v = jwks_verifier(bad[i].doc, err, sizeof(err));
        if (v != NULL)
            fail_msg("%s: accepted", bad[i].name);
        if (strstr(err, "JWT_JWKS_FILE") == NULL || strstr(err, bad[i].says) == NULL)
            fail_msg("%s: %s", bad[i].name, err);
        assert_null(strstr(err, "MDEyMzQ1")); /* never a key */
        free(bad[i].doc);
    }
    EVP_PKEY_free(short_rsa);

    /* one of the three settings, not two */
    app_config_t cfg = base_config();
    cfg.jwt_jwks_file = jwks_path;
    cfg.jwt_hs256_secret = SECRET;
    assert_null(auth_verifier_create(&cfg, err, sizeof(err)));
    assert_non_null(strstr(err, "set only one"));
    cfg = base_config();
    cfg.jwt_jwks_file = "/nonexistent/keys.json";
    assert_null(auth_verifier_create(&cfg, err, sizeof(err)));
    assert_non_null(strstr(err, "JWT_JWKS_FILE"));
}

static void test_jwks_kid_selection(void **state)
{
    char err[1024], *claims = claims_json(NULL);
    char *doc = jwks_doc(jwk_rsa(rsa_key, "r1", NULL), jwk_rsa(rsa_key2, "r2", NULL),
                         jwk_oct(HS_KEY1, "h1", NULL), NULL, NULL, NULL);
    auth_verifier_t *v = jwks_verifier(doc, err, sizeof(err));
    auth_principal_t p;
    assert_non_null(v);
    struct {
        char *tok;
        auth_status_t want;
    } cases[] = {
        {rs_token_kid(rsa_key, "r1", claims), AUTH_OK},
        {rs_token_kid(rsa_key2, "r2", claims), AUTH_OK},
        {hs_token_kid(HS_KEY1, "h1", claims), AUTH_OK},
        {rs_token_kid(rsa_key, "r2", claims), AUTH_ERR_INVALID}, /* kid names another key */
        {rs_token_kid(rsa_key, "r9", claims), AUTH_ERR_INVALID}, /* unknown kid */
        {rs_token_kid(rsa_key, "", claims), AUTH_ERR_INVALID},   /* empty kid */
        {hs_token_kid(HS_KEY2, "h1", claims), AUTH_ERR_INVALID}, /* wrong secret */
        {make_token(SIGN_RS256, "{\"alg\":\"RS256\",\"kid\":1}", claims, NULL, 0),
         AUTH_ERR_INVALID}, /* kid not a string */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); ++i) {
        if (verify(v, cases[i].tok, &p) != cases[i].want)
            fail_msg("case %zu", i);
        free(cases[i].tok);
    }
    auth_verifier_destroy(v);
    free(doc);
    free(claims);
}

static void test_jwks_without_kid(void **state)
{
    char err[1024], *claims = claims_json(NULL);
    auth_principal_t p;
    /* both RSA keys and an HS256 key: a kid-less token is tried against its algorithm's keys */
    char *doc = jwks_doc(jwk_rsa(rsa_key, "r1", NULL), jwk_oct(HS_KEY1, "h1", NULL),
                         jwk_rsa(rsa_key2, "r2", NULL), NULL, NULL, NULL);
    auth_verifier_t *v = jwks_verifier(doc, err, sizeof(err));
    assert_non_null(v);
    char *t1 = rs_token_kid(rsa_key, NULL, claims), *t2 = rs_token_kid(rsa_key2, NULL, claims);
    char *t3 = hs_token_kid(HS_KEY1, NULL, claims), *t4 = hs_token_kid(HS_KEY2, NULL, claims);
    assert_int_equal(verify(v, t1, &p), AUTH_OK);
    assert_int_equal(verify(v, t2, &p), AUTH_OK);
    assert_int_equal(verify(v, t3, &p), AUTH_OK);
    assert_int_equal(verify(v, t4, &p), AUTH_ERR_INVALID);
    auth_verifier_destroy(v);
    free(doc);
    free(t1);
    free(t2);
    free(t3);
    free(t4);

    /* bounded: with five HS256 keys, a kid-less token signed by the fifth is not tried */
    char *secrets[5];
    for (int i = 0; i < 5; ++i) {
        secrets[i] = malloc(64);
        snprintf(secrets[i], 64, "jwks-bounded-secret-%d-0123456789abcdef", i);
    }
    doc = jwks_doc(jwk_oct(secrets[0], "k0", NULL), jwk_oct(secrets[1], "k1", NULL),
                   jwk_oct(secrets[2], "k2", NULL), jwk_oct(secrets[3], "k3", NULL),
                   jwk_oct(secrets[4], "k4", NULL), NULL);
    v = jwks_verifier(doc, err, sizeof(err));
    assert_non_null(v);
    assert_int_equal(AUTH_MAX_KIDLESS_TRIES, 4);
    t1 = hs_token_kid(secrets[3], NULL, claims); /* the fourth: within the bound */
    t2 = hs_token_kid(secrets[4], NULL, claims); /* the fifth: beyond it */
    t3 = hs_token_kid(secrets[4], "k4", claims); /* the fifth, named */
    assert_int_equal(verify(v, t1, &p), AUTH_OK);
    assert_int_equal(verify(v, t2, &p), AUTH_ERR_INVALID);
    assert_int_equal(verify(v, t3, &p), AUTH_OK);
    auth_verifier_destroy(v);
    free(doc);
    free(t1);
    free(t2);
    free(t3);
    for (int i = 0; i < 5; ++i)
        free(secrets[i]);
    free(claims);
}

static void test_jwks_algorithm_pinning(void **state)
{
    char err[1024], *claims = claims_json(NULL);
    auth_principal_t p;
    char *doc = jwks_doc(jwk_rsa(rsa_key, "r1", NULL), jwk_oct(HS_KEY1, "h1", NULL), NULL, NULL,
                         NULL, NULL);
    auth_verifier_t *v = jwks_verifier(doc, err, sizeof(err));
    assert_non_null(v);
    char *bad[] = {
        /* HS256 naming the RSA key, keyed with its public PEM: the classic confusion */
        make_token(SIGN_HS256, "{\"alg\":\"HS256\",\"kid\":\"r1\"}", claims, rsa_pub_pem,
                   strlen(rsa_pub_pem)),
        /* HS256 naming the RSA key, keyed with the real HS256 secret */
        hs_token_kid(HS_KEY1, "r1", claims),
        /* RS256 naming the HS256 key */
        rs_token_kid(rsa_key, "h1", claims),
        make_token(SIGN_NONE, "{\"alg\":\"none\",\"kid\":\"r1\"}", claims, NULL, 0),
        make_token(SIGN_NONE, "{\"alg\":\"none\"}", claims, NULL, 0),
        make_token(SIGN_RS384, "{\"alg\":\"RS384\",\"kid\":\"r1\"}", claims, NULL, 0),
        make_token(SIGN_HS512, "{\"alg\":\"HS512\",\"kid\":\"h1\"}", claims, HS_KEY1,
                   strlen(HS_KEY1)),
        make_token(SIGN_RS256, "{\"alg\":\"RS256\",\"kid\":\"r1\",\"crit\":[\"x\"]}", claims, NULL,
                   0),
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); ++i) {
        if (verify(v, bad[i], &p) != AUTH_ERR_INVALID)
            fail_msg("case %zu accepted", i);
        free(bad[i]);
    }
    /* claims are still checked: expired, wrong iss, wrong aud */
    const char *claim_cases[] = {
        "{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"sub\":\"u1\",\"exp\":1699999000}",
        "{\"iss\":\"other\",\"aud\":\"" AUD "\",\"sub\":\"u1\",\"exp\":1700000600}",
        "{\"iss\":\"" ISS "\",\"aud\":\"other\",\"sub\":\"u1\",\"exp\":1700000600}",
    };
    for (size_t i = 0; i < 3; ++i) {
        char *t = rs_token_kid(rsa_key, "r1", claim_cases[i]);
        assert_int_equal(verify(v, t, &p), AUTH_ERR_INVALID);
        free(t);
    }
    auth_verifier_destroy(v);
    free(doc);
    free(claims);
}

static void test_jwks_reload(void **state)
{
    char err[1024], *claims = claims_json(NULL);
    auth_principal_t p;
    char *doc = jwks_doc(jwk_rsa(rsa_key, "r1", NULL), jwk_rsa(rsa_key2, "r2", NULL), NULL, NULL,
                         NULL, NULL);
    auth_verifier_t *v = jwks_verifier(doc, err, sizeof(err));
    char *old_tok = rs_token_kid(rsa_key, "r1", claims),
         *new_tok = rs_token_kid(rsa_key2, "r2", claims);
    char *kidless_old = rs_token_kid(rsa_key, NULL, claims);
    assert_non_null(v);
    free(doc);
    assert_int_equal(auth_verifier_reload(v, false), 0); /* unchanged */
    assert_int_equal(verify(v, old_tok, &p), AUTH_OK);   /* and now in this thread's cache */
    assert_int_equal(verify(v, kidless_old, &p), AUTH_OK);

    /* a bad new file keeps the keys in use */
    jwks_write("{\"keys\":[{\"kty\":\"RSA\"");
    assert_int_equal(auth_verifier_reload(v, false), -1);
    assert_int_equal(auth_verifier_reload(v, false), 0); /* reported once, not on every check */
    assert_int_equal(auth_verifier_key_count(v), 2);
    assert_int_equal(verify(v, old_tok, &p), AUTH_OK);
    assert_int_equal(verify(v, new_tok, &p), AUTH_OK);
    unlink(jwks_path); /* a missing file too */
    assert_int_equal(auth_verifier_reload(v, false), -1);
    assert_int_equal(auth_verifier_reload(v, true), -1);
    assert_int_equal(auth_verifier_key_count(v), 2);
    assert_int_equal(verify(v, old_tok, &p), AUTH_OK);

    /* the old key removed: its tokens are refused at once, cached or not */
    doc = jwks_doc(jwk_rsa(rsa_key2, "r2", NULL), NULL, NULL, NULL, NULL, NULL);
    jwks_write(doc);
    free(doc);
    assert_int_equal(auth_verifier_reload(v, false), 1);
    assert_int_equal(auth_verifier_key_count(v), 1);
    assert_int_equal(verify(v, old_tok, &p), AUTH_ERR_INVALID);
    assert_int_equal(verify(v, kidless_old, &p), AUTH_ERR_INVALID);
    assert_int_equal(verify(v, new_tok, &p), AUTH_OK);
    assert_int_equal(auth_verifier_reload(v, true), 1); /* SIGHUP reads even an unchanged file */
    assert_int_equal(verify(v, new_tok, &p), AUTH_OK);

    /* single-key verifiers have nothing to re-read */
    assert_int_equal(auth_verifier_reload(hs_v, true), 0);
    assert_int_equal(auth_verifier_reload(NULL, true), 0);
    auth_verifier_destroy(v);
    free(old_tok);
    free(new_tok);
    free(kidless_old);
    free(claims);
}

/* Threads verify tokens of the key present in every set while the set is replaced. */
static auth_verifier_t *rot_v;
static char *rot_tok;
static atomic_bool rot_stop;

static void *rotation_reader(void *arg)
{
    long bad = 0, n = 0;
    char hdr[4096];
    snprintf(hdr, sizeof(hdr), "Bearer %s", rot_tok);
    while (!atomic_load(&rot_stop) || n < 100) {
        auth_principal_t p;
        if (auth_verify(rot_v, hdr, strlen(hdr), NOW, &p, NULL) != AUTH_OK)
            ++bad;
        ++n;
    }
    return (void *)bad;
}

static void test_jwks_rotation_under_threads(void **state)
{
    char err[1024], *claims = claims_json(NULL);
    char *with_both = jwks_doc(jwk_oct(HS_KEY1, "h1", NULL), jwk_oct(HS_KEY2, "h2", NULL), NULL,
                               NULL, NULL, NULL);
    char *only_two = jwks_doc(jwk_oct(HS_KEY2, "h2", NULL), NULL, NULL, NULL, NULL, NULL);
    pthread_t th[3];
    rot_v = jwks_verifier(with_both, err, sizeof(err));
    assert_non_null(rot_v);
    rot_tok = hs_token_kid(HS_KEY2, "h2", claims);
    atomic_store(&rot_stop, false);
    for (int i = 0; i < 3; ++i)
        assert_int_equal(pthread_create(&th[i], NULL, rotation_reader, NULL), 0);
    for (int i = 0; i < 200; ++i) {
        jwks_write(i % 2 == 0 ? only_two : with_both);
        assert_int_equal(auth_verifier_reload(rot_v, true), 1);
    }
    atomic_store(&rot_stop, true);
    for (int i = 0; i < 3; ++i) {
        void *ret;
        pthread_join(th[i], &ret);
        assert_int_equal((long)ret, 0);
    }
    auth_verifier_destroy(rot_v);
    free(rot_tok);
    free(with_both);
    free(only_two);
    free(claims);
}

static int setup_all(void **state)
{
    return setup(state) != 0 ? -1 : jwks_setup(state);
}

static int teardown_all(void **state)
{
    jwks_teardown(state);
    return teardown(state);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_libjwt_tokens),
        cmocka_unit_test(test_hs_matrix),
        cmocka_unit_test(test_rs_matrix),
        cmocka_unit_test(test_tampering),
        cmocka_unit_test(test_oversized),
        cmocka_unit_test(test_sub_length),
        cmocka_unit_test(test_header_forms),
        cmocka_unit_test(test_create_errors),
        cmocka_unit_test(test_may_access),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_verified_token_cache),
        cmocka_unit_test(test_jwks_parse),
        cmocka_unit_test(test_jwks_kid_selection),
        cmocka_unit_test(test_jwks_without_kid),
        cmocka_unit_test(test_jwks_algorithm_pinning),
        cmocka_unit_test(test_jwks_reload),
        cmocka_unit_test(test_jwks_rotation_under_threads),
    };
    return cmocka_run_group_tests(tests, setup_all, teardown_all);
}
