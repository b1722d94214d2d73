/*
 * JWT verification (docs/api.md "Auth"): algorithm pinned by configuration, every
 * claim checked here because libjwt 1.10.2 checks none. Knows nothing of h2o.
 */
#ifndef PROFILE_API_HTTP_AUTH_H
#define PROFILE_API_HTTP_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>
#include "common/alloc.h"
#include "common/config.h"

#define AUTH_ROLE_USER 0x1u
#define AUTH_ROLE_SUPPORT 0x2u
#define AUTH_ROLE_ADMIN 0x4u

/* JWKS limits (JWT_JWKS_FILE) */
#define AUTH_MAX_JWKS_KEYS 64    /* keys in one file */
#define AUTH_MAX_KID 256         /* bytes of a kid */
#define AUTH_MAX_KIDLESS_TRIES 4 /* keys a token without kid is tried against */
#define AUTH_JWKS_CHECK_MS 1000  /* how often the file's identity is compared (api/server.c) */

/* Opaque. Issuer and audience are fixed at creation; the key set may be replaced at run time
 * (auth_verifier_reload) while other threads verify. */
typedef struct st_auth_verifier_t auth_verifier_t;

typedef enum {
    AUTH_OK = 0,
    AUTH_ERR_MISSING, /* no Authorization header or not "Bearer <token>" -> 401 */
    AUTH_ERR_INVALID, /* bad signature/format/alg/exp/nbf/iss/aud/sub -> 401 */
    AUTH_ERR_ROLES,   /* token valid but roles missing, not an array of strings -> 403 */
} auth_status_t;

typedef struct st_auth_principal_t {
    char sub[256]; /* NUL-terminated; compared byte for byte with path ids */
    size_t sub_len;
    unsigned roles; /* AUTH_ROLE_* bits; may be 0 (token valid, no known role -> 403) */
} auth_principal_t;

/**
 * Builds a verifier from cfg (exactly one of JWT_HS256_SECRET, JWT_PUBLIC_KEY_FILE and
 * JWT_JWKS_FILE; JWT_ISSUER, JWT_AUDIENCE). On failure returns NULL and writes one line into
 * errbuf (never a secret). Thread-safe to use from many threads once created.
 */
auth_verifier_t *auth_verifier_create(const app_config_t *cfg, char *errbuf, size_t errlen);
/** NULL-safe. Call when no thread verifies any more. */
void auth_verifier_destroy(auth_verifier_t *v);

/**
 * JWT_JWKS_FILE only (otherwise returns 0 at once): re-reads the file when `force` (SIGHUP) or
 * when its identity (device, inode, size, mtime, ctime) changed since the last read. A good
 * file replaces the key set atomically: a verification already running finishes with the old
 * set, later ones use the new set, and no token verified under the old set is accepted from
 * the per-thread cache any more. A bad or missing file keeps the keys in use and logs one
 * error (per change of the file, or per forced read). Returns 1 when new keys were installed,
 * 0 when nothing changed, -1 when the file is bad. Thread-safe; cheap when nothing changed (one
 * stat), so it may be called every AUTH_JWKS_CHECK_MS.
 */
int auth_verifier_reload(auth_verifier_t *v, bool force);

/** The number of keys in the set in use. NULL-safe (0). */
size_t auth_verifier_key_count(const auth_verifier_t *v);

/**
 * Verifies the value of an Authorization header (`hdr` may be NULL = absent) at time `now`
 * with a 60 s leeway for exp/nbf. Fills `out` on AUTH_OK and on AUTH_ERR_ROLES. `reason`, when
 * not NULL, receives a short static string for logs (never token contents).
 */
auth_status_t auth_verify(const auth_verifier_t *v, const char *hdr, size_t hdr_len, time_t now,
                          auth_principal_t *out, const char **reason);

/**
 * Authorization: may `p` perform a read (`write` false) or write on resources of `user_id`?
 * user: only its own; support: read any; admin: read and write any.
 */
bool auth_may_access(const auth_principal_t *p, const char *user_id, size_t user_id_len,
                     bool write);

#endif
