/*
 * JWT verification with the algorithm pinned by configuration. The signature is checked here
 * with OpenSSL (libjwt 1.10.2 compares HMACs with strcmp and trusts the header's alg), and every
 * claim is read with the same strict JSON parser the request bodies get. The keys live in a
 * reference-counted key set: one key (JWT_HS256_SECRET, JWT_PUBLIC_KEY_FILE) or a JWKS file
 * (JWT_JWKS_FILE) that is swapped whole when the file changes.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <json.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include "api/http/auth.h"
#include "api/codec/b64url.h"
#include "api/resources/validate.h"
#include "api/codec/jsonscan.h"
#include "common/log.h"

#define LOG_MODULE "auth"

#define AUTH_MAX_TOKEN 8192
#define AUTH_MAX_HEADER_SEGMENT 1024
#define AUTH_MAX_SIG 1024 /* RSA keys up to 8192 bits */
#define AUTH_LEEWAY 60
#define AUTH_MIN_SECRET 32
#define AUTH_MIN_RSA_BITS 2048
#define AUTH_MAX_RSA_BYTES 1024 /* 8192 bits, as AUTH_MAX_SIG */
#define AUTH_MAX_KEY_FILE (64 * 1024)
#define AUTH_MAX_JWKS_FILE (256 * 1024)
#define AUTH_MAX_HS_KEY 4096

typedef enum { ALG_HS256, ALG_RS256 } alg_t;

static const char *const alg_names[] = {[ALG_HS256] = "HS256", [ALG_RS256] = "RS256"};

typedef struct st_auth_key_t {
    char *kid;             /* NULL for a single-key configuration */
    alg_t alg;             /* decided by the key (kty), never by a token */
    unsigned char *secret; /* HS256 */
    size_t secret_len;
    EVP_PKEY *pkey; /* RS256; only read after creation, which OpenSSL allows from many threads */
} auth_key_t;

/*
 * An immutable set of keys. Every thread that verifies holds one reference to the set it last
 * used (see thread_keys()), the verifier holds one to the current set; the last release frees
 * it, so a request verifying while the set is swapped finishes with the keys it started with.
 */
typedef struct st_auth_keyset_t {
    atomic_uint refs;
    uint64_t gen; /* unique in the process; tags verified-token cache entries */
    bool jwks;    /* the token's kid selects the key */
    size_t nkeys;
    auth_key_t keys[];
} auth_keyset_t;

/* Identity of the JWKS file as last read: a change of any member triggers a re-read. */
typedef struct st_file_id_t {
    bool exists;
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime, ctime;
} file_id_t;

struct st_auth_verifier_t {
    char *issuer;
    char *audience;
    char *jwks_path;    /* NULL: one fixed key, never re-read */
    pthread_mutex_t mu; /* guards `current` while a reference is taken or the set swapped */
    auth_keyset_t *current;
    _Atomic uint64_t current_gen; /* current->gen, read without the lock on every request */
    pthread_mutex_t reload_mu;    /* one re-read at a time; guards `file` */
    file_id_t file;
};

static _Atomic uint64_t keyset_generation; /* source of auth_keyset_t.gen */

static bool set(const char *s)
{
    return s != NULL && s[0] != '\0';
}

/* ---------------------------------------------------------------- key sets */

static auth_keyset_t *keyset_new(size_t nkeys, bool jwks)
{
    auth_keyset_t *ks = xcalloc(1, sizeof(*ks) + nkeys * sizeof(auth_key_t));
    atomic_init(&ks->refs, 1);
    ks->gen = atomic_fetch_add(&keyset_generation, 1) + 1;
    ks->jwks = jwks;
    ks->nkeys = 0; /* counts keys as they are filled in, so a partial set frees cleanly */
    return ks;
}

static void key_dispose(auth_key_t *k)
{
    free(k->kid);
    if (k->secret != NULL) {
        OPENSSL_cleanse(k->secret, k->secret_len);
        free(k->secret);
    }
    EVP_PKEY_free(k->pkey);
}

static void keyset_release(auth_keyset_t *ks)
{
    if (ks == NULL || atomic_fetch_sub(&ks->refs, 1) != 1)
        return;
    for (size_t i = 0; i < ks->nkeys; ++i)
        key_dispose(&ks->keys[i]);
    free(ks);
}

/* Takes a reference to the verifier's current set. */
static auth_keyset_t *keyset_acquire(const auth_verifier_t *cv)
{
    auth_verifier_t *v = (auth_verifier_t *)(uintptr_t)cv; /* the lock, not the keys, changes */
    auth_keyset_t *ks;
    pthread_mutex_lock(&v->mu);
    ks = v->current;
    atomic_fetch_add(&ks->refs, 1);
    pthread_mutex_unlock(&v->mu);
    return ks;
}

/* Installs `ks` (taking over the caller's reference) and drops the verifier's old one. */
static void keyset_install(auth_verifier_t *v, auth_keyset_t *ks)
{
    auth_keyset_t *old;
    pthread_mutex_lock(&v->mu);
    old = v->current;
    v->current = ks;
    atomic_store(&v->current_gen, ks->gen);
    pthread_mutex_unlock(&v->mu);
    keyset_release(old);
}

/* ---------------------------------------------------------------- single-key configuration */

/* Reads the whole file (at most `max` bytes) through `fd`. Returns a malloc'ed NUL-terminated
 * buffer or NULL with `what` and the path in errbuf. */
static char *read_fd(int fd, const char *what, const char *path, size_t max, size_t *len,
                     char *errbuf, size_t errlen)
{
    char *buf = xmalloc(max + 1);
    size_t n = 0;

    for (;;) {
        ssize_t r = read(fd, buf + n, max + 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            snprintf(errbuf, errlen, "%s: %s is unreadable: %s", what, path, strerror(errno));
            free(buf);
            return NULL;
        }
        if (r == 0 || (n += (size_t)r) > max)
            break;
    }
    if (n == 0 || n > max) {
        snprintf(errbuf, errlen, "%s: %s is %s", what, path,
                 n == 0                     ? "empty"
                 : max == AUTH_MAX_KEY_FILE ? "larger than 64 KiB"
                                            : "larger than 256 KiB");
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

/* Reads the whole key file (bounded). Returns a malloc'ed NUL-terminated buffer or NULL. */
static char *read_key_file(const char *path, size_t *len, char *errbuf, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    char *buf;

    if (fd < 0) {
        snprintf(errbuf, errlen, "JWT_PUBLIC_KEY_FILE: cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    buf = read_fd(fd, "JWT_PUBLIC_KEY_FILE", path, AUTH_MAX_KEY_FILE, len, errbuf, errlen);
    close(fd);
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

/* ---------------------------------------------------------------- JWKS (RFC 7517) */

/* Decodes the base64url string member `name` of `jwk` into a malloc'ed buffer. */
static unsigned char *jwk_bytes(json_object *jwk, const char *name, size_t max, size_t *len)
{
    json_object *o;
    unsigned char *buf;
    long n;
    size_t slen;

    if (!json_object_object_get_ex(jwk, name, &o) || !json_object_is_type(o, json_type_string))
        return NULL;
    slen = (size_t)json_object_get_string_len(o);
    if (slen == 0 || slen > B64URL_ENCODED_LEN(max))
        return NULL;
    buf = xmalloc(B64URL_DECODED_MAX(slen));
    n = b64url_decode(json_object_get_string(o), slen, buf, B64URL_DECODED_MAX(slen));
    if (n <= 0) {
        free(buf);
        return NULL;
    }
    *len = (size_t)n;
    return buf;
}

/* Builds an RSA public key from the big-endian modulus and exponent (OpenSSL 3 provider API). */
static EVP_PKEY *rsa_from_ne(const unsigned char *n, size_t nlen, const unsigned char *e,
                             size_t elen)
{
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *ctx = NULL;
    EVP_PKEY *pkey = NULL;
    BIGNUM *bn_n = BN_bin2bn(n, (int)nlen, NULL), *bn_e = BN_bin2bn(e, (int)elen, NULL);

    if (bld == NULL || bn_n == NULL || bn_e == NULL)
        PROFILE_FATAL("OpenSSL allocation failed");
    /* An even exponent or e = 1 is no RSA key (with e = 1 anyone could sign). */
    if (!BN_is_odd(bn_e) || BN_num_bits(bn_e) < 2)
        goto Exit;
    if (OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn_n) != 1 ||
        OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, bn_e) != 1 ||
        (params = OSSL_PARAM_BLD_to_param(bld)) == NULL ||
        (ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL)) == NULL ||
        EVP_PKEY_fromdata_init(ctx) != 1 ||
        EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1)
        pkey = NULL;
Exit:
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    BN_free(bn_n);
    BN_free(bn_e);
    return pkey;
}

static bool json_str(json_object *obj, const char *name, const char **out)
{
    json_object *o;
    if (!json_object_object_get_ex(obj, name, &o) || !json_object_is_type(o, json_type_string))
        return false;
    *out = json_object_get_string(o);
    return true;
}

/*
 * Fills `k` from one JWK. Returns 1 when filled, 0 when the key is not for us (another kty,
 * `use` other than "sig", an `alg` we do not verify: IdPs publish such keys too) or -1 with a
 * reason in errbuf when the key is for us but broken.
 */
static int jwk_parse(json_object *jwk, size_t idx, auth_key_t *k, char *errbuf, size_t errlen)
{
    const char *kty, *use, *alg, *kid = NULL;
    json_object *o;
    size_t kidlen;
    alg_t want;

    if (!json_object_is_type(jwk, json_type_object)) {
        snprintf(errbuf, errlen, "keys[%zu] is not an object", idx);
        return -1;
    }
    if (!json_str(jwk, "kty", &kty)) {
        snprintf(errbuf, errlen, "keys[%zu] has no kty", idx);
        return -1;
    }
    if (strcmp(kty, "RSA") == 0)
        want = ALG_RS256;
    else if (strcmp(kty, "oct") == 0)
        want = ALG_HS256;
    else
        return 0;
    if (json_object_object_get_ex(jwk, "use", &o) &&
        (!json_str(jwk, "use", &use) || strcmp(use, "sig") != 0))
        return 0;
    if (json_object_object_get_ex(jwk, "alg", &o)) {
        if (!json_str(jwk, "alg", &alg) || strcmp(alg, alg_names[want]) != 0)
            return 0;
    }
    if (!json_object_object_get_ex(jwk, "kid", &o) || !json_object_is_type(o, json_type_string) ||
        (kidlen = (size_t)json_object_get_string_len(o)) == 0 || kidlen > AUTH_MAX_KID ||
        memchr((kid = json_object_get_string(o)), '\0', kidlen) != NULL) {
        snprintf(errbuf, errlen, "keys[%zu] has no kid (a string of 1 to %d bytes)", idx,
                 AUTH_MAX_KID);
        return -1;
    }
    if (json_object_object_get_ex(jwk, "d", &o) || json_object_object_get_ex(jwk, "p", &o)) {
        snprintf(errbuf, errlen,
                 "key %s holds private key material (d, p): publish public keys only", kid);
        return -1;
    }
    memset(k, 0, sizeof(*k));
    k->alg = want;
    if (want == ALG_HS256) {
        if ((k->secret = jwk_bytes(jwk, "k", AUTH_MAX_HS_KEY, &k->secret_len)) == NULL ||
            k->secret_len < AUTH_MIN_SECRET) {
            snprintf(errbuf, errlen, "key %s: k must be base64url of %d to %d bytes", kid,
                     AUTH_MIN_SECRET, AUTH_MAX_HS_KEY);
            key_dispose(k);
            return -1;
        }
    } else {
        size_t nlen = 0, elen = 0;
        unsigned char *n = jwk_bytes(jwk, "n", AUTH_MAX_RSA_BYTES, &nlen);
        unsigned char *e = jwk_bytes(jwk, "e", 8, &elen);
        if (n != NULL && e != NULL)
            k->pkey = rsa_from_ne(n, nlen, e, elen);
        free(n);
        free(e);
        if (k->pkey == NULL) {
            snprintf(errbuf, errlen, "key %s: n and e must be base64url big-endian integers", kid);
            return -1;
        }
        if (EVP_PKEY_get_bits(k->pkey) < AUTH_MIN_RSA_BITS) {
            snprintf(errbuf, errlen, "key %s: RSA key shorter than %d bits", kid,
                     AUTH_MIN_RSA_BITS);
            key_dispose(k);
            return -1;
        }
    }
    k->kid = xstrdup(kid);
    return 1;
}

/* Parses a JWKS document into a new key set. Returns NULL with a reason in errbuf. */
static auth_keyset_t *jwks_parse(const char *text, size_t len, char *errbuf, size_t errlen)
{
    field_errors_t errs;
    json_object *root = jsonscan_parse_object(text, len, &errs), *keys;
    auth_keyset_t *ks = NULL;
    size_t i, n;

    if (root == NULL) {
        bool named = errs.count > 0 && errs.items[0].field[0] != '\0';
        snprintf(errbuf, errlen, "not a JSON object (%s%s%s)", named ? errs.items[0].field : "",
                 named ? ": " : "", errs.count > 0 ? errs.items[0].message : "?");
        return NULL;
    }
    if (!json_object_object_get_ex(root, "keys", &keys) ||
        !json_object_is_type(keys, json_type_array)) {
        snprintf(errbuf, errlen, "has no \"keys\" array");
        goto Error;
    }
    n = json_object_array_length(keys);
    if (n > AUTH_MAX_JWKS_KEYS) {
        snprintf(errbuf, errlen, "holds %zu keys, more than %d", n, AUTH_MAX_JWKS_KEYS);
        goto Error;
    }
    ks = keyset_new(n, true);
    for (i = 0; i < n; ++i) {
        auth_key_t *k = &ks->keys[ks->nkeys];
        int r = jwk_parse(json_object_array_get_idx(keys, i), i, k, errbuf, errlen);
        if (r < 0)
            goto Error;
        if (r == 0)
            continue;
        for (size_t j = 0; j < ks->nkeys; ++j) {
            if (strcmp(ks->keys[j].kid, k->kid) == 0) {
                snprintf(errbuf, errlen, "kid %s appears twice", k->kid);
                key_dispose(k);
                goto Error;
            }
        }
        ks->nkeys++;
    }
    if (ks->nkeys == 0) {
        snprintf(errbuf, errlen, "holds no RS256 (kty RSA) or HS256 (kty oct) signing key");
        goto Error;
    }
    json_object_put(root);
    return ks;
Error:
    keyset_release(ks);
    json_object_put(root);
    return NULL;
}

static void file_id_of(const struct stat *st, file_id_t *id)
{
    memset(id, 0, sizeof(*id));
    id->exists = true;
    id->dev = st->st_dev;
    id->ino = st->st_ino;
    id->size = st->st_size;
    id->mtime = st->st_mtim;
    id->ctime = st->st_ctim;
}

static bool file_id_equal(const file_id_t *a, const file_id_t *b)
{
    return a->exists == b->exists && a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
           a->mtime.tv_sec == b->mtime.tv_sec && a->mtime.tv_nsec == b->mtime.tv_nsec &&
           a->ctime.tv_sec == b->ctime.tv_sec && a->ctime.tv_nsec == b->ctime.tv_nsec;
}

/*
 * Reads and parses the JWKS file. `id` receives the identity of what was read (taken from the
 * open descriptor, before reading, so that a write racing the read changes the identity and
 * triggers another read). Returns NULL with "JWT_JWKS_FILE: path: reason" in errbuf.
 */
static auth_keyset_t *jwks_load(const char *path, file_id_t *id, char *errbuf, size_t errlen)
{
    char reason[512] = "";
    struct stat st;
    auth_keyset_t *ks = NULL;
    size_t len = 0;
    char *text;
    int fd;

    memset(id, 0, sizeof(*id));
    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
        snprintf(errbuf, errlen, "JWT_JWKS_FILE: cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    if (fstat(fd, &st) != 0) {
        snprintf(errbuf, errlen, "JWT_JWKS_FILE: cannot stat %s: %s", path, strerror(errno));
        close(fd);
        return NULL;
    }
    file_id_of(&st, id);
    text = read_fd(fd, "JWT_JWKS_FILE", path, AUTH_MAX_JWKS_FILE, &len, errbuf, errlen);
    close(fd);
    if (text == NULL)
        return NULL;
    if ((ks = jwks_parse(text, len, reason, sizeof(reason))) == NULL)
        snprintf(errbuf, errlen, "JWT_JWKS_FILE: %s: %s", path, reason);
    OPENSSL_cleanse(text, len); /* HS256 keys are secrets */
    free(text);
    return ks;
}

/* ---------------------------------------------------------------- the verifier */

auth_verifier_t *auth_verifier_create(const app_config_t *cfg, char *errbuf, size_t errlen)
{
    auth_verifier_t *v;
    auth_keyset_t *ks = NULL;
    file_id_t id;
    bool hs = set(cfg->jwt_hs256_secret), rs = set(cfg->jwt_public_key_file),
         jw = set(cfg->jwt_jwks_file);

    if (errlen > 0)
        errbuf[0] = '\0';
    if ((int)hs + (int)rs + (int)jw > 1) {
        snprintf(errbuf, errlen,
                 "JWT_HS256_SECRET, JWT_PUBLIC_KEY_FILE, JWT_JWKS_FILE: set only one of them");
        return NULL;
    }
    if (!hs && !rs && !jw) {
        snprintf(errbuf, errlen,
                 "JWT_HS256_SECRET, JWT_PUBLIC_KEY_FILE, JWT_JWKS_FILE: one is required");
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
    if (hs) {
        ks = keyset_new(1, false);
        ks->keys[0].alg = ALG_HS256;
        ks->keys[0].secret_len = strlen(cfg->jwt_hs256_secret);
        ks->keys[0].secret =
            (unsigned char *)xstrndup(cfg->jwt_hs256_secret, ks->keys[0].secret_len);
        ks->nkeys = 1;
    } else if (rs) {
        EVP_PKEY *pkey = load_public_key(cfg->jwt_public_key_file, errbuf, errlen);
        if (pkey == NULL)
            return NULL;
        ks = keyset_new(1, false);
        ks->keys[0].alg = ALG_RS256;
        ks->keys[0].pkey = pkey;
        ks->nkeys = 1;
    } else if ((ks = jwks_load(cfg->jwt_jwks_file, &id, errbuf, errlen)) == NULL) {
        return NULL;
    }
    v = xcalloc(1, sizeof(*v));
    pthread_mutex_init(&v->mu, NULL);
    pthread_mutex_init(&v->reload_mu, NULL);
    v->current = ks;
    atomic_init(&v->current_gen, ks->gen);
    if (jw) {
        v->jwks_path = xstrdup(cfg->jwt_jwks_file);
        v->file = id;
    }
    v->issuer = xstrdup(cfg->jwt_issuer);
    v->audience = xstrdup(cfg->jwt_audience);
    return v;
}

void auth_verifier_destroy(auth_verifier_t *v)
{
    if (v == NULL)
        return;
    keyset_release(v->current); /* threads still holding it release it when they end */
    pthread_mutex_destroy(&v->mu);
    pthread_mutex_destroy(&v->reload_mu);
    free(v->jwks_path);
    free(v->issuer);
    free(v->audience);
    free(v);
}

int auth_verifier_reload(auth_verifier_t *v, bool force)
{
    char errbuf[1024];
    struct stat st;
    file_id_t now_id, read_id;
    auth_keyset_t *ks;
    int ret = 0;

    if (v == NULL || v->jwks_path == NULL)
        return 0;
    pthread_mutex_lock(&v->reload_mu);
    if (stat(v->jwks_path, &st) == 0)
        file_id_of(&st, &now_id);
    else
        memset(&now_id, 0, sizeof(now_id)); /* gone: logged once below, keys kept */
    if (!force && file_id_equal(&now_id, &v->file))
        goto Exit;
    ks = jwks_load(v->jwks_path, &read_id, errbuf, sizeof(errbuf));
    /* Remember what was seen even when it was bad, so a bad file is reported once, not on
     * every check; the next change (or SIGHUP) tries again. */
    v->file = read_id.exists ? read_id : now_id;
    if (ks == NULL) {
        log_error("%s; keeping the %zu key(s) in use", errbuf, auth_verifier_key_count(v));
        ret = -1;
        goto Exit;
    }
    keyset_install(v, ks);
    log_info("JWT_JWKS_FILE: %s: %zu key(s) in use (%s)", v->jwks_path, ks->nkeys,
             force ? "forced re-read" : "file changed");
    ret = 1;
Exit:
    pthread_mutex_unlock(&v->reload_mu);
    return ret;
}

size_t auth_verifier_key_count(const auth_verifier_t *v)
{
    auth_keyset_t *ks;
    size_t n;
    if (v == NULL)
        return 0;
    ks = keyset_acquire(v);
    n = ks->nkeys;
    keyset_release(ks);
    return n;
}
/* ---------------------------------------------------------------- verification */

/*
 * Per-thread cache of verified tokens. Clients send the same token on every request, and a
 * verification (HMAC or RSA, base64url, two JSON parses) costs more than a cached list read.
 * An entry holds the exact token bytes, the generation of the key set that verified it and
 * the time window in which its outcome holds (exp and nbf with the leeway), so a hit decides
 * exactly as a full verification would: once the key set is replaced (a key removed from the
 * JWKS), no entry of the old set matches any more. Tokens are compared in constant time; only
 * successful outcomes (OK, or valid with bad roles) are kept.
 */
#define AUTH_CACHE_SLOTS 1024 /* ~1.1 MB per thread, allocated on first use */
#define AUTH_CACHE_MAX_TOKEN 1024

typedef struct st_auth_cache_entry_t {
    uint64_t gen; /* auth_keyset_t.gen; 0 = empty */
    size_t len;
    double valid_from, valid_until; /* now in [from, until): the outcome below holds */
    auth_status_t status;
    auth_principal_t principal;
    char token[AUTH_CACHE_MAX_TOKEN];
} auth_cache_entry_t;

/* What a thread keeps between verifications: its reference to a key set and its cache. */
typedef struct st_auth_thread_t {
    auth_keyset_t *keys; /* the set this thread last verified with (one reference) */
    auth_cache_entry_t cache[AUTH_CACHE_SLOTS];
} auth_thread_t;

static __thread auth_thread_t *auth_thread;
static pthread_key_t auth_thread_key; /* frees a thread's state when the thread ends */
static pthread_once_t auth_thread_once = PTHREAD_ONCE_INIT;

static void auth_thread_free(void *p)
{
    auth_thread_t *t = p;
    keyset_release(t->keys);
    free(t);
}

static void auth_thread_key_init(void)
{
    if (pthread_key_create(&auth_thread_key, auth_thread_free) != 0)
        PROFILE_FATAL("pthread_key_create failed");
}

/*
 * The key set to verify with. The common case costs one atomic load: the thread still holds
 * the verifier's current set. After a swap the thread takes the new set under the verifier's
 * lock and drops the old one, which is freed by whichever holder lets go of it last.
 */
static const auth_keyset_t *thread_keys(const auth_verifier_t *v)
{
    auth_thread_t *t = auth_thread;
    if (t == NULL) {
        pthread_once(&auth_thread_once, auth_thread_key_init);
        t = auth_thread = xcalloc(1, sizeof(*t));
        (void)pthread_setspecific(auth_thread_key, t);
    }
    /* Generations are unique in the process, so a match is this verifier's current set. */
    if (t->keys == NULL || t->keys->gen != atomic_load(&v->current_gen)) {
        auth_keyset_t *ks = keyset_acquire(v);
        keyset_release(t->keys);
        t->keys = ks;
    }
    return t->keys;
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

static const auth_cache_entry_t *cache_lookup(uint64_t gen, const char *tok, size_t len, time_t now)
{
    const auth_cache_entry_t *e = &auth_thread->cache[cache_slot(tok, len)];
    if (e->gen != gen || e->len != len || len > AUTH_CACHE_MAX_TOKEN ||
        CRYPTO_memcmp(e->token, tok, len) != 0)
        return NULL;
    if ((double)now < e->valid_from || (double)now >= e->valid_until)
        return NULL;
    return e;
}

static void cache_store(uint64_t gen, const char *tok, size_t len, double from, double until,
                        auth_status_t st, const auth_principal_t *p)
{
    auth_cache_entry_t *e;
    if (len > AUTH_CACHE_MAX_TOKEN)
        return;
    e = &auth_thread->cache[cache_slot(tok, len)];
    e->gen = gen;
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
    field_errors_t errs;
    long n = b64url_decode(s, len, buf, sizeof(buf));

    if (n <= 0)
        return NULL;
    return jsonscan_parse_object((const char *)buf, (size_t)n, &errs);
}

/* `sig` is the decoded signature; the key's own algorithm decides how it is checked. */
static bool check_signature(const auth_key_t *k, const char *signed_part, size_t signed_len,
                            const unsigned char *sig, size_t siglen)
{
    bool ok = false;

    if (k->alg == ALG_HS256) {
        unsigned char mac[EVP_MAX_MD_SIZE];
        unsigned int maclen = 0;
        if (HMAC(EVP_sha256(), k->secret, (int)k->secret_len, (const unsigned char *)signed_part,
                 signed_len, mac, &maclen) == NULL)
            return false;
        ok = siglen == maclen && CRYPTO_memcmp(mac, sig, maclen) == 0;
        OPENSSL_cleanse(mac, sizeof(mac));
    } else {
        EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        if (ctx == NULL)
            PROFILE_FATAL("EVP_MD_CTX_new failed");
        /* Default RSA padding for a digest-verify is PKCS #1 v1.5, which RS256 is. */
        ok =
            EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, k->pkey) == 1 &&
            EVP_DigestVerify(ctx, sig, siglen, (const unsigned char *)signed_part, signed_len) == 1;
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

/*
 * Picks the keys a token may be verified with, at most AUTH_MAX_KIDLESS_TRIES of them, into
 * `out`. The algorithm is pinned by the key, never chosen by the token: the header's alg must
 * be the one of the key (single key, or the key its kid names); a JWKS token without a kid is
 * tried only against keys of the algorithm it names. Returns the count, or 0 with a reason.
 */
static size_t select_keys(const auth_keyset_t *ks, json_object *hdr,
                          const auth_key_t *out[AUTH_MAX_KIDLESS_TRIES], const char **reason)
{
    json_object *alg, *crit, *kid;
    alg_t want;
    size_t i, n = 0;

    if (!json_object_object_get_ex(hdr, "alg", &alg) ||
        !json_object_is_type(alg, json_type_string)) {
        *reason = "token header has no alg";
        return 0;
    }
    /* We implement no JWS extensions, so any critical one must be refused (RFC 7515 4.1.11). */
    if (json_object_object_get_ex(hdr, "crit", &crit)) {
        *reason = "token header has crit";
        return 0;
    }
    if (str_equals(alg, "HS256"))
        want = ALG_HS256;
    else if (str_equals(alg, "RS256"))
        want = ALG_RS256;
    else {
        *reason = "token alg is not the configured one";
        return 0;
    }
    if (!ks->jwks) { /* one configured key; a kid, if any, is ignored as before */
        if (ks->keys[0].alg != want) {
            *reason = "token alg is not the configured one";
            return 0;
        }
        out[0] = &ks->keys[0];
        return 1;
    }
    if (json_object_object_get_ex(hdr, "kid", &kid)) {
        if (!json_object_is_type(kid, json_type_string)) {
            *reason = "token kid is not a string";
            return 0;
        }
        for (i = 0; i < ks->nkeys; ++i) {
            if (str_equals(kid, ks->keys[i].kid)) {
                if (ks->keys[i].alg != want) {
                    *reason = "token alg is not the one of its key";
                    return 0;
                }
                out[0] = &ks->keys[i];
                return 1;
            }
        }
        *reason = "token kid names no key in use";
        return 0;
    }
    for (i = 0; i < ks->nkeys && n < AUTH_MAX_KIDLESS_TRIES; ++i)
        if (ks->keys[i].alg == want)
            out[n++] = &ks->keys[i];
    if (n == 0)
        *reason = "token alg is not the configured one";
    return n;
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

/* Long (98 lines): the verification steps in their order, each a reason to refuse. */
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
    const auth_keyset_t *ks;
    const auth_key_t *keys[AUTH_MAX_KIDLESS_TRIES];
    unsigned char sig[AUTH_MAX_SIG];
    long siglen;
    size_t i, nkeys;

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
    ks = thread_keys(v);
    {
        const auth_cache_entry_t *hit = cache_lookup(ks->gen, tok, tok_len, now);
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
        if ((nkeys = select_keys(ks, header, keys, &why)) == 0)
            goto Exit;
        if ((siglen = b64url_decode(dot2 + 1, slen, sig, sizeof(sig))) <= 0) {
            why = "token signature invalid";
            goto Exit;
        }
        for (i = 0; i < nkeys; ++i)
            if (check_signature(keys[i], tok, (size_t)(dot2 - tok), sig, (size_t)siglen))
                break;
        if (i == nkeys) {
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
    cache_store(ks->gen, tok, tok_len, valid_from, valid_until, st, &p);
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
