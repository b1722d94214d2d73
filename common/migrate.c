/*
 * Flyway-style migration runner behind profile-migrate: scans V<NNN>__<name>.sql files, checks
 * the applied ones against their recorded SHA-256, and applies the rest one transaction each.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <stdbool.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <openssl/evp.h>
#include "common/buf.h"
#include "common/clock.h"
#include "common/db.h"
#include "common/log.h"
#include "common/migrate.h"

#define LOG_MODULE "migrate"

/* Largest migration file accepted (a guard against reading something that is not SQL). */
#define MIGRATE_MAX_FILE ((size_t)16 << 20)

typedef struct st_migrate_file_t {
    int version;
    char *name;
    char *path;
    char checksum[65];
} migrate_file_t;

typedef struct st_migrate_applied_t {
    int version;
    char *name;
    char *checksum;
    char *applied_at;
} migrate_applied_t;

static const char sql_create_history[] = "CREATE TABLE IF NOT EXISTS schema_migrations ("
                                         " version integer NOT NULL PRIMARY KEY,"
                                         " name text NOT NULL,"
                                         " checksum text NOT NULL,"
                                         " applied_at timestamptz NOT NULL DEFAULT now(),"
                                         " execution_ms integer NOT NULL)";

static const char sql_history_exists[] = "SELECT to_regclass('schema_migrations') IS NOT NULL";

static const char sql_list_applied[] =
    "SELECT version, name, checksum,"
    " to_char(applied_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
    " FROM schema_migrations ORDER BY version";

static const char sql_record[] = "INSERT INTO schema_migrations (version, name, checksum, "
                                 "execution_ms) VALUES ($1, $2, $3, $4)";

static int is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int migrate_resolve_dir(const char *configured, const char *fallback, char *out, size_t outlen,
                        char *errbuf, size_t errlen)
{
    char exe[PATH_MAX], cand[PATH_MAX + 64];
    ssize_t n;
    static const char *const rel[] = {"/../../migrations", "/../migrations",
                                      "/../share/profile-service/migrations"};
    size_t i;

    if (configured != NULL && configured[0] != '\0') {
        if (!is_dir(configured)) {
            snprintf(errbuf, errlen, "MIGRATIONS_DIR: not a directory");
            return -1;
        }
        snprintf(out, outlen, "%s", configured);
        return 0;
    }
    n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n > 0) {
        char *slash;
        exe[n] = '\0';
        if ((slash = strrchr(exe, '/')) != NULL)
            *slash = '\0';
        for (i = 0; i < sizeof(rel) / sizeof(rel[0]); ++i) {
            snprintf(cand, sizeof(cand), "%s%s", exe, rel[i]);
            if (is_dir(cand)) {
                char *real = realpath(cand, NULL);
                snprintf(out, outlen, "%s", real != NULL ? real : cand);
                free(real);
                return 0;
            }
        }
    }
    if (fallback != NULL && is_dir(fallback)) {
        snprintf(out, outlen, "%s", fallback);
        return 0;
    }
    if (is_dir("/usr/share/profile-service/migrations")) {
        snprintf(out, outlen, "%s", "/usr/share/profile-service/migrations");
        return 0;
    }
    snprintf(errbuf, errlen,
             "MIGRATIONS_DIR: not set and no migrations/ directory found beside the program");
    return -1;
}

void migrate_sha256_hex(const void *data, size_t len, char hex[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0, i;

    if (EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != 32)
        PROFILE_FATAL("SHA-256 failed");
    for (i = 0; i < mdlen; ++i)
        snprintf(hex + (size_t)2 * i, 3, "%02x", md[i]);
    hex[64] = '\0';
}

int migrate_parse_filename(const char *filename, const char **name, size_t *name_len)
{
    const char *p = filename, *sep, *ext;
    long v = 0;
    size_t flen = strlen(filename);

    if (*p++ != 'V' || !isdigit((unsigned char)*p))
        return -1;
    while (isdigit((unsigned char)*p)) {
        v = v * 10 + (*p - '0');
        if (v > INT_MAX)
            return -1;
        ++p;
    }
    if (v < 1 || strncmp(p, "__", 2) != 0)
        return -1;
    sep = p + 2;
    if (flen < 4 || strcmp(filename + flen - 4, ".sql") != 0)
        return -1;
    ext = filename + flen - 4;
    if (ext <= sep)
        return -1;
    *name = sep;
    *name_len = (size_t)(ext - sep);
    return (int)v;
}

static char *read_file(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    strbuf_t b;
    char chunk[65536];
    size_t n;

    if (fp == NULL)
        return NULL;
    strbuf_init(&b);
    while ((n = fread(chunk, 1, sizeof(chunk), fp)) > 0) {
        strbuf_append(&b, chunk, n);
        if (b.len > MIGRATE_MAX_FILE) {
            errno = EFBIG;
            break;
        }
    }
    if (ferror(fp) || b.len > MIGRATE_MAX_FILE) {
        int saved = b.len > MIGRATE_MAX_FILE ? EFBIG : errno;
        fclose(fp);
        strbuf_dispose(&b);
        errno = saved;
        return NULL;
    }
    fclose(fp);
    return strbuf_steal(&b, len);
}

static void free_files(migrate_file_t *files, size_t n)
{
    size_t i;
    if (files == NULL)
        return;
    for (i = 0; i < n; ++i) {
        free(files[i].name);
        free(files[i].path);
    }
    free(files);
}

static void free_applied(migrate_applied_t *a, size_t n)
{
    size_t i;
    if (a == NULL)
        return;
    for (i = 0; i < n; ++i) {
        free(a[i].name);
        free(a[i].checksum);
        free(a[i].applied_at);
    }
    free(a);
}

static int cmp_files(const void *x, const void *y)
{
    const migrate_file_t *a = x, *b = y;
    return (a->version > b->version) - (a->version < b->version);
}

/* Lists and checksums the migration files of `dir`, sorted by version. */
static int scan_dir(const char *dir, migrate_file_t **out, size_t *count)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    migrate_file_t *files = NULL;
    size_t n = 0, cap = 0, i;

    *out = NULL;
    *count = 0;
    if (d == NULL) {
        log_error("cannot open the migrations directory %s: %s", dir, strerror(errno));
        return -1;
    }
    while ((de = readdir(d)) != NULL) {
        const char *name;
        size_t name_len, len;
        int version = migrate_parse_filename(de->d_name, &name, &name_len);
        char *path, *text;

        if (version < 0) {
            if (de->d_name[0] == 'V' && strstr(de->d_name, ".sql") != NULL)
                log_warn("ignoring %s: not named V<version>__<name>.sql", de->d_name);
            continue;
        }
        path = xmalloc(strlen(dir) + strlen(de->d_name) + 2);
        sprintf(path, "%s/%s", dir, de->d_name);
        if ((text = read_file(path, &len)) == NULL) {
            log_error("cannot read %s: %s", path, strerror(errno));
            free(path);
            goto Error;
        }
        if (n == cap) {
            cap = cap == 0 ? 16 : cap * 2;
            files = xrealloc(files, cap * sizeof(*files));
        }
        files[n].version = version;
        files[n].name = xstrndup(name, name_len);
        files[n].path = path;
        migrate_sha256_hex(text, len, files[n].checksum);
        free(text);
        ++n;
    }
    closedir(d);
    d = NULL;
    if (n > 0)
        qsort(files, n, sizeof(*files), cmp_files);
    for (i = 1; i < n; ++i) {
        if (files[i].version == files[i - 1].version) {
            log_error("two migration files have version %d (%s and %s)", files[i].version,
                      files[i - 1].path, files[i].path);
            goto Error;
        }
    }
    *out = files;
    *count = n;
    return 0;

Error:
    if (d != NULL)
        closedir(d);
    free_files(files, n);
    return -1;
}

/* Reads schema_migrations (empty when it does not exist yet). */
static int load_applied(PGconn *conn, migrate_applied_t **out, size_t *count)
{
    PGresult *res;
    migrate_applied_t *a;
    int i, rows;

    *out = NULL;
    *count = 0;
    if ((res = db_query(conn, "check the history table", sql_history_exists, 0, NULL)) == NULL)
        return -1;
    rows = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    PQclear(res);
    if (!rows)
        return 0;
    if ((res = db_query(conn, "read the history table", sql_list_applied, 0, NULL)) == NULL)
        return -1;
    rows = PQntuples(res);
    a = xcalloc((size_t)rows + 1, sizeof(*a));
    for (i = 0; i < rows; ++i) {
        a[i].version = atoi(PQgetvalue(res, i, 0));
        a[i].name = xstrdup(PQgetvalue(res, i, 1));
        a[i].checksum = xstrdup(PQgetvalue(res, i, 2));
        a[i].applied_at = xstrdup(PQgetvalue(res, i, 3));
    }
    PQclear(res);
    *out = a;
    *count = (size_t)rows;
    return 0;
}

static const migrate_file_t *find_file(const migrate_file_t *files, size_t n, int version)
{
    size_t i;
    for (i = 0; i < n; ++i) {
        if (files[i].version == version)
            return files + i;
    }
    return NULL;
}

static const migrate_applied_t *find_applied(const migrate_applied_t *a, size_t n, int version)
{
    size_t i;
    for (i = 0; i < n; ++i) {
        if (a[i].version == version)
            return a + i;
    }
    return NULL;
}

/*
 * Files edited after release in comments only: V001 and V002 named a document outside the
 * repository, which the repository's own docs replaced. A database migrated before that edit
 * recorded the old checksum; the pair below is that file and the current one, so such a
 * database migrates on without an operator's repair. Any other change is still refused.
 */
static const struct {
    int version;
    const char *applied; /* what earlier releases recorded */
    const char *file;    /* the file as it is now */
} comment_only_edits[] = {
    {1, "3b2fbd3e8205322c2ccda6749d68f46161ce44dbc9b335444e71e7b0dc1f1a2b",
     "93c9e57d464363795051c7ad16b8b779ce3dcc4a2de2a9ae54b2dc8c7984fdb0"},
    {2, "2198f23dc078ca8cf281989ce7771979dbc6b41237e1e67a5bcf5cb6fcc9a9c8",
     "d30fb9ca7f22c4493dbbd5f8e0c682f64552b34a9688a535f3013a84f8bdeafc"},
};

/* True when the file of `version` (checksum `file`) is the one applied with checksum `applied`. */
static bool same_file(int version, const char *file, const char *applied)
{
    if (strcmp(file, applied) == 0)
        return true;
    for (size_t i = 0; i < sizeof(comment_only_edits) / sizeof(comment_only_edits[0]); ++i)
        if (comment_only_edits[i].version == version &&
            strcmp(comment_only_edits[i].applied, applied) == 0 &&
            strcmp(comment_only_edits[i].file, file) == 0)
            return true;
    return false;
}

/* Every applied version must still have its file, unchanged. Logs the first problem. */
static int validate(const migrate_file_t *files, size_t nfiles, const migrate_applied_t *applied,
                    size_t napplied)
{
    size_t i;
    int max_applied = 0;

    for (i = 0; i < napplied; ++i) {
        const migrate_file_t *f = find_file(files, nfiles, applied[i].version);
        if (f == NULL) {
            log_error("refusing to migrate: version %d (%s) is applied but its file "
                      "V%03d__%s.sql is missing",
                      applied[i].version, applied[i].name, applied[i].version, applied[i].name);
            return -1;
        }
        if (!same_file(f->version, f->checksum, applied[i].checksum)) {
            log_error("refusing to migrate: %s changed after it was applied (checksum %.12s, "
                      "applied %.12s); add a new migration instead of editing an applied one",
                      f->path, f->checksum, applied[i].checksum);
            return -1;
        }
        if (applied[i].version > max_applied)
            max_applied = applied[i].version;
    }
    for (i = 0; i < nfiles; ++i) {
        if (files[i].version < max_applied &&
            find_applied(applied, napplied, files[i].version) == NULL) {
            log_error("refusing to migrate: %s is older than the newest applied version %d "
                      "(out-of-order migrations are not supported)",
                      files[i].path, max_applied);
            return -1;
        }
    }
    return 0;
}

static bool no_transaction(const char *text, size_t len)
{
    size_t n = strlen(MIGRATE_NO_TRANSACTION);
    return len >= n && memcmp(text, MIGRATE_NO_TRANSACTION, n) == 0 &&
           (len == n || text[n] == '\n' || text[n] == '\r');
}

/*
 * Runs `text` one statement at a time, each in its own implicit transaction: a statement ends
 * with ';' at the end of a line; lines that are blank or start with "--" are skipped.
 */
static int exec_statements(PGconn *conn, const char *what, char *text)
{
    strbuf_t stmt;
    char *line = text;
    int ret = 0;
    strbuf_init(&stmt);
    while (line != NULL && *line != '\0' && ret == 0) {
        char *nl = strchr(line, '\n');
        size_t n = nl != NULL ? (size_t)(nl - line) : strlen(line);
        const char *p = line;
        size_t end = n;
        while (p < line + n && (*p == ' ' || *p == '\t'))
            ++p;
        while (end > 0 && (line[end - 1] == ' ' || line[end - 1] == '\t' || line[end - 1] == '\r'))
            --end;
        if (p < line + end && !(p[0] == '-' && p + 1 < line + end && p[1] == '-')) {
            strbuf_append(&stmt, line, n);
            strbuf_append_char(&stmt, '\n');
            if (line[end - 1] == ';') {
                ret = db_exec(conn, what, stmt.data);
                strbuf_reset(&stmt);
            }
        }
        line = nl != NULL ? nl + 1 : NULL;
    }
    if (ret == 0 && stmt.len > 0)
        ret = db_exec(conn, what, stmt.data);
    strbuf_dispose(&stmt);
    return ret;
}

static int apply_one(PGconn *conn, const migrate_file_t *f)
{
    char what[128], version[16], ms[24];
    const char *params[4];
    int64_t t0;
    size_t len;
    char *text;
    long took;

    snprintf(what, sizeof(what), "apply V%03d__%s", f->version, f->name);
    if ((text = read_file(f->path, &len)) == NULL) {
        log_error("cannot read %s: %s", f->path, strerror(errno));
        return -1;
    }
    {
        /* The file may have changed since it was scanned: apply exactly what was checked. */
        char sum[65];
        migrate_sha256_hex(text, len, sum);
        if (strcmp(sum, f->checksum) != 0) {
            log_error("%s changed while migrating; run again", f->path);
            free(text);
            return -1;
        }
    }
    t0 = clock_mono_ms();
    if (no_transaction(text, len)) {
        if (exec_statements(conn, what, text) != 0) {
            log_error("V%03d__%s runs outside a transaction: the statements before the failure "
                      "stay applied; the version is not recorded and runs again from the top",
                      f->version, f->name);
            goto Error;
        }
        if (db_exec(conn, "begin", "BEGIN") != 0)
            goto Error;
    } else {
        if (db_exec(conn, "begin", "BEGIN") != 0)
            goto Error;
        if (db_exec(conn, what, text) != 0)
            goto Rollback;
    }
    took = (long)(clock_mono_ms() - t0);
    snprintf(version, sizeof(version), "%d", f->version);
    snprintf(ms, sizeof(ms), "%ld", took);
    params[0] = version;
    params[1] = f->name;
    params[2] = f->checksum;
    params[3] = ms;
    if (db_exec_params(conn, "record the migration", sql_record, 4, params) != 0)
        goto Rollback;
    if (db_exec(conn, "commit", "COMMIT") != 0)
        goto Rollback;
    log_info("applied V%03d__%s in %ld ms", f->version, f->name, took);
    free(text);
    return 0;

Rollback:
    if (db_exec(conn, "rollback", "ROLLBACK") != 0)
        log_warn("rollback after a failed migration failed too");
Error:
    free(text);
    return -1;
}

/*
 * Takes the session lock, waiting for another runner (it releases the lock when it finishes or
 * its session ends); says so when it has to wait, so a stuck runner is easy to spot. It waits
 * by trying again every MIGRATE_LOCK_RETRY_MS, never inside a blocking pg_advisory_lock: that
 * call is a transaction, which the other runner's CREATE INDEX CONCURRENTLY would wait for
 * while this one waits for its lock (a deadlock).
 */
#define MIGRATE_LOCK_RETRY_MS 200
static int take_lock(PGconn *conn)
{
    bool said = false;
    for (;;) {
        PGresult *res = db_query(conn, "try the migration lock",
                                 "SELECT pg_try_advisory_lock(" MIGRATE_LOCK_KEY ")", 0, NULL);
        int got;

        if (res == NULL)
            return -1;
        got = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
        PQclear(res);
        if (got)
            return 0;
        if (!said)
            log_info("another profile-migrate holds the migration lock; waiting for it");
        said = true;
        usleep(MIGRATE_LOCK_RETRY_MS * 1000);
    }
}

int migrate_run(PGconn *conn, const char *dir, int *applied)
{
    migrate_file_t *files = NULL;
    migrate_applied_t *done = NULL;
    size_t nfiles = 0, ndone = 0, i;
    int locked = 0, count = 0, ret = -1, newest = 0;

    if (applied != NULL)
        *applied = 0;
    if (scan_dir(dir, &files, &nfiles) != 0)
        return -1;
    if (nfiles == 0) {
        log_error("no migration files (V<version>__<name>.sql) in %s", dir);
        goto Exit;
    }
    if (take_lock(conn) != 0)
        goto Exit;
    locked = 1;
    if (db_exec(conn, "create the history table", sql_create_history) != 0)
        goto Exit;
    if (load_applied(conn, &done, &ndone) != 0)
        goto Exit;
    if (validate(files, nfiles, done, ndone) != 0)
        goto Exit;
    for (i = 0; i < nfiles; ++i) {
        if (find_applied(done, ndone, files[i].version) != NULL) {
            newest = files[i].version;
            continue;
        }
        if (apply_one(conn, files + i) != 0)
            goto Exit;
        newest = files[i].version;
        ++count;
    }
    if (count == 0)
        log_info("schema is up to date at version %d (nothing to apply)", newest);
    else
        log_info("schema is now at version %d (%d applied)", newest, count);
    if (applied != NULL)
        *applied = count;
    ret = 0;

Exit:
    if (locked && PQstatus(conn) == CONNECTION_OK &&
        db_exec(conn, "release the migration lock",
                "SELECT pg_advisory_unlock(" MIGRATE_LOCK_KEY ")") != 0)
        log_warn("could not release the migration lock; it goes with the session");
    free_applied(done, ndone);
    free_files(files, nfiles);
    return ret;
}

int migrate_status(PGconn *conn, const char *dir, FILE *out)
{
    migrate_file_t *files = NULL;
    migrate_applied_t *done = NULL;
    size_t nfiles = 0, ndone = 0, i, j;
    int ret = 0, npending = 0;

    if (scan_dir(dir, &files, &nfiles) != 0)
        return -1;
    if (load_applied(conn, &done, &ndone) != 0) {
        free_files(files, nfiles);
        return -1;
    }
    fprintf(out, "%-8s %-9s %-21s %s\n", "version", "state", "applied_at", "name");
    /* Merge both sorted lists by version. */
    for (i = 0, j = 0; i < nfiles || j < ndone;) {
        const migrate_file_t *f = i < nfiles ? files + i : NULL;
        const migrate_applied_t *a = j < ndone ? done + j : NULL;
        if (a != NULL && (f == NULL || a->version < f->version)) {
            fprintf(out, "%-8d %-9s %-21s %s\n", a->version, "missing", a->applied_at, a->name);
            ret = 1;
            ++j;
        } else if (f != NULL && (a == NULL || f->version < a->version)) {
            fprintf(out, "%-8d %-9s %-21s %s\n", f->version, "pending", "-", f->name);
            ++npending;
            ++i;
        } else if (f != NULL && a != NULL) {
            int same = same_file(f->version, f->checksum, a->checksum);
            fprintf(out, "%-8d %-9s %-21s %s\n", f->version, same ? "applied" : "changed",
                    a->applied_at, f->name);
            if (!same)
                ret = 1;
            ++i;
            ++j;
        } else {
            break; /* unreachable: the loop condition guarantees one of them */
        }
    }
    fprintf(out, "%zu applied, %d pending\n", ndone, npending);
    fflush(out);
    free_applied(done, ndone);
    free_files(files, nfiles);
    return ret;
}
