/*
 * Unit tests for api/http/auth.c: the full negative token matrix for HS256 and RS256, claim checks,
 * header forms, configuration errors and authorization. Valid tokens come from libjwt; hostile
 * ones are assembled by hand and signed with OpenSSL.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <jwt.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include "api/http/auth.h"
#include "api/codec/b64url.h"

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
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
