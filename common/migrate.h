/*
 * Flyway-style schema migrations: files V<NNN>__<name>.sql in one directory, applied in version
 * order, each in its own transaction, recorded with a SHA-256 checksum in schema_migrations,
 * under a session advisory lock so concurrent runners apply each version once.
 *
 * A file whose first line is MIGRATE_NO_TRANSACTION runs outside a transaction (CREATE INDEX
 * CONCURRENTLY): statement by statement, each ending with ';' at the end of a line, then the
 * version is recorded. A failure leaves the statements before it applied and the version
 * unrecorded, so such a file must be safe to run again from the top.
 */
#ifndef PROFILE_COMMON_MIGRATE_H
#define PROFILE_COMMON_MIGRATE_H

#include <stddef.h>
#include <stdio.h>
#include <libpq-fe.h>
#include "common/alloc.h"

/** First line of a migration that runs outside a transaction. */
#define MIGRATE_NO_TRANSACTION "-- profile-migrate: no-transaction"

/** Session advisory lock key (bigint key space) held while migrating. */
#define MIGRATE_LOCK_KEY "5787199393364052306"

/**
 * Picks the migrations directory: `configured` when non-empty (it must be a directory), else
 * the first existing of <exe dir>/../../migrations, <exe dir>/../migrations,
 * <exe dir>/../share/profile-service/migrations, `fallback` (may be NULL; e.g. the source
 * tree's migrations/) and /usr/share/profile-service/migrations. Writes the path to `out`.
 * Returns 0, or -1 with a one-line reason naming MIGRATIONS_DIR in `errbuf`.
 */
PROFILE_MUSTCHECK int migrate_resolve_dir(const char *configured, const char *fallback, char *out,
                                          size_t outlen, char *errbuf, size_t errlen);

/**
 * Applies every pending migration of `dir` to `conn`. Refuses (returns -1, logging one clear
 * line) when an applied version's file is missing, an applied file's checksum changed, a
 * pending version is older than the newest applied one, or a file fails. Stores the number
 * applied in `*applied` (may be NULL). Returns 0 when the schema is up to date.
 */
PROFILE_MUSTCHECK int migrate_run(PGconn *conn, const char *dir, int *applied);

/**
 * Writes one line per version (applied, pending, changed or missing) to `out`. Returns 0 when
 * every applied version matches its file, 1 when some are changed or missing, -1 on error.
 */
PROFILE_MUSTCHECK int migrate_status(PGconn *conn, const char *dir, FILE *out);

/**
 * SHA-256 of `len` bytes as 64 lower-case hex digits plus NUL in `hex` (65 bytes).
 */
void migrate_sha256_hex(const void *data, size_t len, char hex[65]);

/**
 * Parses a file name "V<digits>__<name>.sql". Returns the version (>= 1) and points
 * `*name`/`*name_len` at the name part, or returns -1 when the name does not match.
 */
int migrate_parse_filename(const char *filename, const char **name, size_t *name_len);

#endif
