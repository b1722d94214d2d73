/*
 * Partition leases over session advisory locks (class OUTBOX_LEASE_CLASS, key = partition) on
 * a dedicated connection. The set held is re-read from pg_locks on every tick, so the view
 * never drifts from what the server says; a peer whose lease connection went silent is ended.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include "common/buf.h"
#include "common/clock.h"
#include "common/db.h"
#include "common/log.h"
#include "relay/lease.h"

#define LOG_MODULE "lease"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000

struct st_lease_t {
    char *dsn;
    int takeover_s;
    unsigned long long peers_ended;
    PGconn *conn;
    int pid;
    bool held[OUTBOX_PARTITIONS];
    bool releasing[OUTBOX_PARTITIONS];
    int nheld;
    unsigned rotate;
    int backoff_ms;
    long long next_attempt_ms;
    bool down_logged;
    bool read_only; /* the last connection's server reported itself read-only (failover) */
};

int lease_fair_share(int relays)
{
    if (relays < 1)
        relays = 1;
    return (OUTBOX_PARTITIONS + relays - 1) / relays;
}

lease_t *lease_create(const char *dsn, int takeover_s)
{
    lease_t *l = xcalloc(1, sizeof(*l));
    unsigned r = 0;
    l->dsn = xstrdup(dsn);
    l->takeover_s = takeover_s;
    if (getrandom(&r, sizeof(r), 0) != sizeof(r))
        r = (unsigned)time(NULL);
    l->rotate = r % OUTBOX_PARTITIONS;
    l->backoff_ms = BACKOFF_MIN_MS;
    return l;
}

static void drop(lease_t *l)
{
    if (l->conn != NULL)
        PQfinish(l->conn);
    l->conn = NULL;
    l->pid = 0;
    if (l->nheld > 0)
        log_warn("lost the lease connection: %d partition(s) released", l->nheld);
    memset(l->held, 0, sizeof(l->held));
    memset(l->releasing, 0, sizeof(l->releasing));
    l->nheld = 0;
}

void lease_destroy(lease_t *l)
{
    if (l == NULL)
        return;
    if (l->conn != NULL)
        PQfinish(l->conn);
    free(l->dsn);
    free(l);
}

static int connect_lease(lease_t *l)
{
    char err[512];
    long long now = clock_mono_ms();
    if (now < l->next_attempt_ms)
        return -1;
    l->conn = outbox_connect(l->dsn, LEASE_APPLICATION_NAME, err, sizeof(err));
    if (l->conn == NULL) {
        if (!l->down_logged)
            log_error("lease connection failed: %s; retrying with backoff", err);
        l->down_logged = true;
        l->next_attempt_ms = now + l->backoff_ms;
        l->backoff_ms = l->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : l->backoff_ms * 2;
        return -1;
    }
    if (l->down_logged)
        log_info("lease connection restored");
    l->down_logged = false;
    l->read_only = false;
    l->backoff_ms = BACKOFF_MIN_MS;
    l->pid = PQbackendPID(l->conn);
    return 0;
}

static PGresult *query(lease_t *l, const char *what, const char *sql, int n,
                       const char *const *vals)
{
    char op[64];
    snprintf(op, sizeof(op), "lease %s", what);
    return db_query(l->conn, op, sql, n, vals);
}

/* Parses "{1,2,3}" into held[]. */
static void parse_held(lease_t *l, const char *arr)
{
    memset(l->held, 0, sizeof(l->held));
    l->nheld = 0;
    for (const char *p = arr; *p;) {
        if (*p >= '0' && *p <= '9') {
            char *end;
            long v = strtol(p, &end, 10);
            if (v >= 0 && v < OUTBOX_PARTITIONS && !l->held[v]) {
                l->held[v] = true;
                l->nheld++;
            }
            p = end;
        } else {
            ++p;
        }
    }
    for (int i = 0; i < OUTBOX_PARTITIONS; ++i) {
        if (!l->held[i])
            l->releasing[i] = false;
    }
}

/*
 * Over the share: stops claiming the extras and releases each once nothing of it is in flight.
 * Returns 0, or -1 when the connection failed.
 */
static int release_extras(lease_t *l, int share, int relays, const int inflight[OUTBOX_PARTITIONS],
                          const char *cls)
{
    int keep = 0;
    for (int p = 0; p < OUTBOX_PARTITIONS; ++p) {
        if (!l->held[p])
            continue;
        if (keep < share) {
            keep++;
            l->releasing[p] = false;
            continue;
        }
        l->releasing[p] = true;
        if (inflight[p] == 0) {
            char part[16];
            snprintf(part, sizeof(part), "%d", p);
            const char *v[] = {cls, part};
            PGresult *res = query(l, "unlock", "SELECT pg_advisory_unlock($1::int, $2::int)", 2, v);
            if (res == NULL)
                return -1;
            PQclear(res);
            l->held[p] = l->releasing[p] = false;
            l->nheld--;
            log_info("released partition %d (fair share %d of %d for %d relays)", p, share,
                     OUTBOX_PARTITIONS, relays);
        }
    }
    return 0;
}

/*
 * Under the share: tries to lock free partitions, scanning from an offset that changes between
 * calls. Returns 0, or -1 when the connection failed.
 */
static int take_share(lease_t *l, int share, int relays, const char *cls)
{
    static const char take_sql[] =
        "SELECT p FROM (SELECT ((g + $1::int) % $5::int)::int AS p"
        "   FROM generate_series(0, $5::int - 1) g) s"
        " WHERE p <> ALL ($2::int[]) AND pg_try_advisory_lock($3::int, p) LIMIT $4::int";
    char off[16], need[16], nparts[16];
    strbuf_t held;

    strbuf_init(&held);
    strbuf_append_char(&held, '{');
    for (int p = 0, first = 1; p < OUTBOX_PARTITIONS; ++p) {
        if (l->held[p]) {
            strbuf_appendf(&held, first ? "%d" : ",%d", p);
            first = 0;
        }
    }
    strbuf_append_char(&held, '}');
    snprintf(off, sizeof(off), "%u", (unsigned)(clock_mono_ms() % OUTBOX_PARTITIONS));
    snprintf(need, sizeof(need), "%d", share - l->nheld);
    snprintf(nparts, sizeof(nparts), "%d", OUTBOX_PARTITIONS);
    const char *v[] = {off, held.data, cls, need, nparts};
    PGresult *res = query(l, "take", take_sql, 5, v);
    strbuf_dispose(&held);
    if (res == NULL)
        return -1;
    for (int i = 0; i < PQntuples(res); ++i) {
        int p = atoi(PQgetvalue(res, i, 0));
        if (p >= 0 && p < OUTBOX_PARTITIONS && !l->held[p]) {
            l->held[p] = true;
            l->nheld++;
        }
    }
    if (PQntuples(res) > 0)
        log_info("took %d partition(s); holding %d (fair share %d for %d relays)", PQntuples(res),
                 l->nheld, share, relays);
    PQclear(res);
    return 0;
}

/*
 * Ends the lease backend of every peer whose lease connection has been silent (no statement
 * started or finished) for takeover_s: a live relay runs one every tick, so such a relay is
 * frozen, cut off or stuck. Ending the backend frees its advisory locks for take_share(); its
 * worker connections cannot claim any more (outbox_claim() checks the lease backend's locks).
 * Waits up to 2 s for each backend to exit. Returns 0, or -1 when the connection failed.
 */
static int end_stale_peers(lease_t *l)
{
    /* MATERIALIZED: the planner may not mix pg_terminate_backend() into the filter (it orders
     * quals by cost, so a flattened query could end backends the filter would have skipped). */
    static const char stale_sql[] =
        "WITH stale AS MATERIALIZED ("
        "  SELECT pid, round(extract(epoch FROM clock_timestamp() - since))::int AS silent"
        "  FROM (SELECT pid, coalesce(state_change, backend_start) AS since"
        "    FROM pg_stat_activity WHERE application_name = $1 AND datname = current_database()"
        "    AND backend_type = 'client backend' AND pid <> pg_backend_pid()) a"
        "  WHERE since < clock_timestamp() - make_interval(secs => $2::int))"
        " SELECT pid, silent FROM stale WHERE pg_terminate_backend(pid, 2000)";
    char secs[16];
    snprintf(secs, sizeof(secs), "%d", l->takeover_s);
    const char *v[] = {LEASE_APPLICATION_NAME, secs};
    PGresult *res = query(l, "end stale peers", stale_sql, 2, v);
    if (res == NULL)
        return -1;
    for (int i = 0; i < PQntuples(res); ++i) {
        log_warn("peer relay (lease backend %s) silent for %s s (takeover after %d s): ended its "
                 "lease backend to take its partitions",
                 PQgetvalue(res, i, 0), PQgetvalue(res, i, 1), l->takeover_s);
        l->peers_ended++;
    }
    PQclear(res);
    return 0;
}

int lease_tick(lease_t *l, const int inflight[OUTBOX_PARTITIONS])
{
    static const char state_sql[] =
        "SELECT (SELECT count(*) FROM pg_stat_activity WHERE application_name = $1"
        "   AND datname = current_database()),"
        " array(SELECT objid::int FROM pg_locks WHERE locktype = 'advisory'"
        "   AND pid = pg_backend_pid() AND classid = $2::oid AND objsubid = 2 AND granted"
        "   ORDER BY objid)";
    char cls[16];
    PGresult *res;
    int relays, share;

    snprintf(cls, sizeof(cls), "%d", OUTBOX_LEASE_CLASS);
    /* outbox_conn_ok(): also false on a server that became read-only (failover) */
    if (l->conn != NULL && !outbox_conn_ok(l->conn)) {
        if (PQstatus(l->conn) == CONNECTION_OK && db_conn_read_only(l->conn)) {
            log_warn("the server became read-only (standby, demoted or fenced primary): "
                     "dropping the lease connection");
            l->read_only = true;
        }
        drop(l);
    }
    if (l->conn == NULL && connect_lease(l) != 0)
        return -1;

    if (end_stale_peers(l) != 0)
        goto Lost;
    const char *v1[] = {LEASE_APPLICATION_NAME, cls};
    if ((res = query(l, "state", state_sql, 2, v1)) == NULL)
        goto Lost;
    relays = atoi(PQgetvalue(res, 0, 0));
    parse_held(l, PQgetvalue(res, 0, 1));
    PQclear(res);
    share = lease_fair_share(relays);
    if (release_extras(l, share, relays, inflight, cls) != 0)
        goto Lost;
    if (l->nheld < share && take_share(l, share, relays, cls) != 0)
        goto Lost;
    return 0;

Lost:
    drop(l);
    l->next_attempt_ms = clock_mono_ms() + l->backoff_ms;
    return -1;
}

int lease_claimable(lease_t *l, int out[OUTBOX_PARTITIONS])
{
    int n = 0;
    l->rotate = (l->rotate + 1) % OUTBOX_PARTITIONS;
    for (int i = 0; i < OUTBOX_PARTITIONS; ++i) {
        int p = (int)((l->rotate + (unsigned)i) % OUTBOX_PARTITIONS);
        if (l->held[p] && !l->releasing[p])
            out[n++] = p;
    }
    return n;
}

uint64_t lease_claimable_mask(const lease_t *l)
{
    uint64_t mask = 0;
    for (int p = 0; p < OUTBOX_PARTITIONS; ++p) {
        if (l->held[p] && !l->releasing[p])
            mask |= (uint64_t)1 << p;
    }
    return mask;
}

int lease_held_count(const lease_t *l)
{
    return l->nheld;
}

bool lease_server_read_only(const lease_t *l)
{
    return l->read_only;
}

int lease_backend_pid(const lease_t *l)
{
    return l->pid;
}

unsigned long long lease_peers_ended(const lease_t *l)
{
    return l->peers_ended;
}
