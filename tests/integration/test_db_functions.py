"""V002 SQL functions under concurrency (what pgTAP cannot show inside one transaction):
idempotency keys in flight, per-user sequence = commit order, the watchlist limit with racing
writers, concurrent profile creation, and no NOTIFY in the write transaction (V007)."""
import hashlib
import select
import threading
import time
import uuid

import psycopg2
import pytest

import support


@pytest.fixture(scope="module")
def db(stack):
    name = "dbfn_" + uuid.uuid4().hex[:12]
    url = support.new_database(stack, name, migrate=True)
    yield url
    support.psql(stack, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def connect(url, autocommit=True):
    c = psycopg2.connect(url)
    c.set_session(autocommit=autocommit)
    return c


def q(conn, sql, params=None):
    with conn.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchall() if cur.description is not None else []


def uid():
    return "t-" + uuid.uuid4().hex[:16]


def h(s):
    return psycopg2.Binary(hashlib.sha256(s.encode()).digest())


def test_key_in_flight_is_409_then_replayed(db):
    user = uid()
    a = connect(db, autocommit=False)
    b = connect(db)
    try:
        first = q(a, "SELECT status, replayed, seq FROM api_watchlist_add(%s, 'k1', %s, 600, NULL, %s, 'v1')",
                  (user, h("req"), user))
        assert first == [(201, False, 1)]
        # a is still open: the key is in flight
        st, body, rep, seq = q(b, "SELECT status, body, replayed, seq FROM api_watchlist_add(%s, 'k1', %s, 600, NULL, %s, 'v1')",
                                (user, h("req"), user))[0]
        assert (st, rep, seq) == (409, False, None)
        assert '"/problems/idempotency-key-in-use"' in body
        a.commit()
        st, body, rep, seq = q(b, "SELECT status, body, replayed, seq FROM api_watchlist_add(%s, 'k1', %s, 600, NULL, %s, 'v1')",
                                (user, h("req"), user))[0]
        assert (st, rep, seq) == (201, True, None)
        assert q(b, "SELECT count(*) FROM outbox WHERE user_id = %s", (user,)) == [(1,)]
        # the 409 was not stored: the record is the first request's
        assert q(b, "SELECT status FROM idempotency_keys WHERE caller = %s", (user,)) == [(201,)]
    finally:
        a.close()
        b.close()


def run_threads(n, fn):
    errors = []

    def wrap(i):
        try:
            fn(i)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=wrap, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors


def test_concurrent_writers_get_gapless_sequences_in_commit_order(db):
    user = uid()
    per_thread = 25
    returned = []
    lock = threading.Lock()

    def writer(i):
        c = connect(db)
        try:
            for j in range(per_thread):
                if j % 3 == 0:
                    sql = ("SELECT seq FROM api_history_add(%s, NULL, NULL, 60, NULL, %s, %s, 1, 10, "
                           "NULL)")
                    args = (user, user, f"v{i}")
                elif j % 3 == 1:
                    sql = "SELECT seq FROM api_watchlist_add(%s, NULL, NULL, 60, NULL, %s, %s)"
                    args = (user, user, f"w{i}-{j}")
                else:
                    sql = "SELECT seq FROM api_rating_put(%s, NULL, NULL, 60, NULL, %s, %s, 3, NULL)"
                    args = (user, user, f"v{i}")
                seq = q(c, sql, args)[0][0]
                with lock:
                    returned.append(seq)
        finally:
            c.close()

    run_threads(6, writer)
    total = 6 * per_thread
    # every write changed something, and each got its own sequence number back
    assert sorted(returned) == list(range(1, total + 1))
    c = connect(db)
    try:
        rows = q(c, "SELECT seq, created_at FROM outbox WHERE user_id = %s ORDER BY seq", (user,))
        assert [r[0] for r in rows] == list(range(1, total + 1))
        # ce_time never goes backwards along the sequence
        assert all(rows[i][1] <= rows[i + 1][1] for i in range(len(rows) - 1))
        assert q(c, "SELECT last_seq FROM user_event_seq WHERE user_id = %s", (user,)) == [(total,)]
    finally:
        c.close()


def test_watchlist_limit_holds_under_concurrency(db):
    user = uid()
    c = connect(db)
    q(c, "INSERT INTO watchlist_items (user_id, video_id) "
         "SELECT %s, 'pre' || i FROM generate_series(1, 990) i", (user,))
    statuses = []
    lock = threading.Lock()

    def adder(i):
        cc = connect(db)
        try:
            st = q(cc, "SELECT status FROM api_watchlist_add(%s, NULL, NULL, 60, NULL, %s, %s)",
                   (user, user, f"new{i}"))[0][0]
            with lock:
                statuses.append(st)
        finally:
            cc.close()

    run_threads(20, adder)
    assert sorted(statuses) == [201] * 10 + [409] * 10
    assert q(c, "SELECT count(*) FROM watchlist_items WHERE user_id = %s", (user,)) == [(1000,)]
    assert q(c, "SELECT array_agg(seq ORDER BY seq) FROM outbox WHERE user_id = %s", (user,)) == \
        [(list(range(1, 11)),)]
    c.close()


def test_concurrent_profile_puts_create_once(db):
    user = uid()
    statuses = []
    lock = threading.Lock()

    def putter(i):
        cc = connect(db)
        try:
            st = q(cc, "SELECT status FROM api_put_profile(%s, NULL, NULL, 60, NULL, %s, %s, NULL, "
                       "'{}', NULL)", (user, user, f"name {i}"))[0][0]
            with lock:
                statuses.append(st)
        finally:
            cc.close()

    run_threads(8, putter)
    assert sorted(statuses) == [200] * 7 + [201]
    c = connect(db)
    assert q(c, "SELECT version FROM profiles WHERE user_id = %s", (user,)) == [(8,)]
    assert q(c, "SELECT array_agg((payload->>'version')::int ORDER BY seq) FROM outbox "
                "WHERE user_id = %s", (user,)) == [(list(range(1, 9)),)]
    c.close()


def wait_notifies(conn, timeout):
    deadline = time.monotonic() + timeout
    got = []
    while time.monotonic() < deadline:
        if select.select([conn], [], [], max(0.0, deadline - time.monotonic())) == ([], [], []):
            break
        conn.poll()
        while conn.notifies:
            got.append(conn.notifies.pop(0))
        if got:
            # collect anything sent with it, briefly
            deadline = min(deadline, time.monotonic() + 0.2)
    return got


# api/data/pgpool.c's PGPOOL_STMT_OUTBOX_HINT, the wake-up the API sends after the commit
HINT_SQL = ("SELECT count(pg_notify('outbox_new', p::text)) FROM unnest(%s::smallint[]) AS p "
            "WHERE set_config('synchronous_commit', 'off', true) IS NOT NULL")


def test_write_functions_do_not_notify_the_hint_after_commit_does(db):
    """V007: a notifying transaction serialises commits, so the write functions no longer
    NOTIFY; the API sends one NOTIFY per partition after the commit (api/data/hint.c)."""
    user = uid()
    listener = connect(db)
    writer = connect(db, autocommit=False)
    try:
        q(listener, "LISTEN outbox_new")
        q(writer, "SELECT * FROM api_watchlist_add(%s, NULL, NULL, 60, NULL, %s, 'v1')", (user, user))
        writer.commit()
        assert wait_notifies(listener, 0.5) == [], "the write transaction must not notify"
        assert q(listener, "SELECT array_agg(seq) FROM outbox WHERE user_id = %s", (user,)) == [([1],)]
        # the hint: one notification per partition, payload = the partition number
        part = q(listener, "SELECT outbox_partition(%s)", (user,))[0][0]
        other = (part + 1) % 64
        hinter = connect(db)
        try:
            q(hinter, HINT_SQL, ([part, other],))
        finally:
            hinter.close()
        got = wait_notifies(listener, 5)
        assert [n.channel for n in got] == ["outbox_new", "outbox_new"]
        assert sorted(int(n.payload) for n in got) == sorted([part, other])
    finally:
        listener.close()
        writer.close()


def test_concurrent_rating_puts_create_once(db):
    user = uid()
    statuses = []
    lock = threading.Lock()

    def rater(i):
        cc = connect(db)
        try:
            st = q(cc, "SELECT status FROM api_rating_put(%s, NULL, NULL, 60, NULL, %s, 'v1', %s, "
                       "NULL)", (user, user, 1 + i % 5))[0][0]
            with lock:
                statuses.append(st)
        finally:
            cc.close()

    run_threads(8, rater)
    assert sorted(statuses) == [200] * 7 + [201]
    c = connect(db)
    assert q(c, "SELECT count(*) FROM ratings WHERE user_id = %s", (user,)) == [(1,)]
    assert q(c, "SELECT array_agg(seq ORDER BY seq) FROM outbox WHERE user_id = %s", (user,)) == \
        [(list(range(1, 9)),)]
    c.close()
