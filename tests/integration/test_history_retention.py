"""History retention (HISTORY_RETENTION_DAYS, migrations/V005, relay/history_retention.c): the
relay, connected as its own role, removes entries older than the retention in bounded batches;
recent entries, resume points and the continue view stay as they were."""
import math
import time
import uuid

import psycopg2
import pytest

import support
from support import run_sql
from test_relay_e2e import Relay, wait_for

OLD_PER_USER = 90
RECENT_PER_USER = 4
USERS = ("ret-a", "ret-b")
BATCH = 25


@pytest.fixture
def cleanup():
    items = []
    yield items
    for it in reversed(items):
        it.stop()


@pytest.fixture
def db(stack):
    name = "hret_" + uuid.uuid4().hex[:10]
    url = support.new_database(stack, name)
    yield url
    support.psql(stack, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def seed(url):
    """Per user: OLD_PER_USER entries 40 to 60 days old over six videos, then RECENT_PER_USER
    from the last day, written through api_history_add (which keeps the resume points). One video
    (v-old) has only old entries: its resume point must survive its whole history."""
    for u in USERS:
        run_sql(url, """
            SELECT api_history_add(NULL, NULL, NULL, 60, NULL, %(u)s,
                                   CASE WHEN g %% 6 = 0 THEN 'v-old' ELSE 'v' || (g %% 6) END,
                                   g, 5000, now() - interval '40 days' - g * interval '5 hours')
              FROM generate_series(1, %(n)s) g""", {"u": u, "n": OLD_PER_USER})
        run_sql(url, """
            SELECT api_history_add(NULL, NULL, NULL, 60, NULL, %(u)s, 'v' || g, 100 + g, 5000,
                                   now() - g * interval '1 hour')
              FROM generate_series(1, %(n)s) g""", {"u": u, "n": RECENT_PER_USER})


def counts(url):
    return run_sql(url, """
        SELECT count(*) FILTER (WHERE watched_at < now() - interval '30 days'),
               count(*) FILTER (WHERE watched_at >= now() - interval '30 days')
          FROM history_entries""")[0]


def resume_state(url):
    points = run_sql(url, "SELECT user_id, video_id, entry_id::text, position_seconds, watched_at "
                          "FROM resume_points ORDER BY user_id, video_id")
    pages = [run_sql(url, "SELECT entry_id::text, video_id, position_seconds "
                          "FROM api_page_continue(%s, 100, NULL, NULL)", (u,)) for u in USERS]
    return points, pages


def test_old_entries_go_in_bounded_batches_recent_and_resume_points_stay(stack, db, cleanup):
    seed(db)
    old, recent = counts(db)
    assert (old, recent) == (OLD_PER_USER * len(USERS), RECENT_PER_USER * len(USERS))
    before = resume_state(db)
    assert any(vid == "v-old" for _, vid, _, _, _ in before[0])

    relay = Relay(stack, db, f"hret-{uuid.uuid4().hex[:8]}", HISTORY_RETENTION_DAYS=30,
                  HISTORY_RETENTION_BATCH=BATCH)
    cleanup.append(relay)
    wait_for(lambda: counts(db)[0] == 0, 30, "old history entries removed")

    assert counts(db) == (0, recent), "recent entries are kept"
    assert resume_state(db) == before, "resume points and the continue view are unchanged"
    wait_for(lambda: relay.metric("profile_relay_history_rows_removed_total") == old, 10, "metric")
    batches = relay.metric("profile_relay_history_retention_batches_total")
    # At most BATCH rows per statement: the removal took at least ceil(old / BATCH) batches.
    assert batches >= math.ceil(old / BATCH), (batches, old)
    # Caught up: later passes remove nothing and come only after the idle interval.
    time.sleep(1.5)
    assert relay.metric("profile_relay_history_retention_batches_total") <= batches + 1
    assert relay.metric("profile_relay_history_rows_removed_total") == old


def test_retention_off_by_default_keeps_everything(stack, db, cleanup):
    seed(db)
    before = counts(db)
    relay = Relay(stack, db, f"hret-{uuid.uuid4().hex[:8]}")
    cleanup.append(relay)
    time.sleep(2)
    assert relay.metric("profile_relay_history_retention_batches_total") == 0
    assert counts(db) == before


def test_two_relays_never_delete_at_once_and_remove_each_row_once(stack, db, cleanup):
    seed(db)
    old, recent = counts(db)
    relays = [Relay(stack, db, f"hret-{uuid.uuid4().hex[:8]}", HISTORY_RETENTION_DAYS=30,
                    HISTORY_RETENTION_BATCH=BATCH) for _ in range(2)]
    cleanup.extend(relays)
    wait_for(lambda: counts(db)[0] == 0, 30, "old history entries removed")
    assert counts(db) == (0, recent)
    wait_for(lambda: sum(r.metric("profile_relay_history_rows_removed_total") for r in relays) == old,
             10, "metrics of both relays add up to the rows removed")


def test_a_batch_in_progress_elsewhere_is_not_waited_for(stack, db):
    """While one session runs a batch (holds the retention lock), another call returns NULL at
    once instead of queueing behind it; as the relay role, which may call nothing else here."""
    seed(db)
    holder = psycopg2.connect(db)
    try:
        with holder.cursor() as cur:
            cur.execute("SELECT history_retention_purge(30, 1)")  # transaction left open
            assert cur.fetchone() == (1,)
        t0 = time.monotonic()
        relay_url = support.role_url(db, "relay")
        assert run_sql(relay_url, "SELECT history_retention_purge(30, 10)") == [(None,)]
        assert time.monotonic() - t0 < 5
    finally:
        holder.rollback()
        holder.close()
    assert run_sql(support.role_url(db, "relay"), "SELECT history_retention_purge(30, 10)") == [(10,)]
