"""`profile-relay snapshot` end to end (docs/events.md, Snapshots): users' current state written
as ordinary events through the outbox while writes go on, published by the real relay to
kafka-mock, folded back per user and compared with the database; a snapshot killed with
kill -9 that resumes without emitting a finished user twice; SIGTERM stops it resumably.

Writes call the SQL write functions the API calls (migrations/V002, V003), from threads in
autocommit, as the API's connection pool does; each is a whole write with its event.
"""
import os
import re
import signal
import subprocess
import threading
import time
import uuid

import psycopg2
import pytest
import requests

import support
from snapshot_fold import db_state, fold, mismatches, snapshot_since
from support import run_sql
from test_observability import promtool_check
from test_relay_e2e import Collector, Relay, pending, wait_for

# One random write of a user, as the API would make it (no Idempotency-Key).
OP_SQL = """
CREATE FUNCTION t_op(p_user text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    r integer := floor(random() * 10);
    v text := 'v' || floor(random() * 8)::int;
    d integer := 60 + floor(random() * 600)::int;
BEGIN
    IF r < 2 THEN
        PERFORM api_put_profile(p_user, NULL, NULL, 60, NULL, p_user, 'N' || r, NULL, NULL, NULL);
    ELSIF r < 5 THEN
        PERFORM api_watchlist_add(p_user, NULL, NULL, 60, NULL, p_user, v);
    ELSIF r < 6 THEN
        PERFORM api_watchlist_remove(p_user, NULL, NULL, 60, NULL, p_user, v);
    ELSIF r < 8 THEN
        PERFORM api_rating_put(p_user, NULL, NULL, 60, NULL, p_user, v, 1 + r % 5,
                               CASE WHEN random() < 0.5 THEN NULL ELSE 'review ' || r END);
    ELSE
        PERFORM api_history_add(p_user, NULL, NULL, 60, NULL, p_user, v,
                                floor(random() * d)::int, CASE WHEN r = 9 THEN d END,
                                date_trunc('milliseconds', now() - random() * interval '2 days'));
    END IF;
END $$;
"""

PROGRESS_RE = re.compile(r"^snapshot [0-9a-f-]{36}: users \d+/\d+ \([0-9.]+%\), events \d+, "
                         r"\d+ events/s, ETA \S+$")


def seeded_db(stack, tag, users, ops_each):
    url = support.new_database(stack, f"snap_{tag}_{uuid.uuid4().hex[:8]}")
    run_sql(url, OP_SQL)
    run_sql(url, "SELECT t_op(u) FROM unnest(%s::text[]) u, generate_series(1, %s)",
            [users, ops_each])
    return url


def snapshot_cmd(url, *args):
    env = {"DATABASE_URL": url, "LOG_LEVEL": "warn", "PATH": os.environ.get("PATH", "")}
    return [support.bin_path("profile-relay"), "snapshot", *args], env


class Workload:
    """Threads making random writes of random users until stopped; counts writes."""

    def __init__(self, url, users, threads=2):
        self.url, self.users = url, users
        self.stop_flag = threading.Event()
        self.writes = 0
        self.errors = []
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                        for i in range(threads)]
        for t in self.threads:
            t.start()

    def _run(self, i):
        import random
        rnd = random.Random(i)
        conn = psycopg2.connect(self.url)
        conn.set_session(autocommit=True)
        try:
            with conn.cursor() as cur:
                while not self.stop_flag.is_set():
                    # now and then a user the snapshot may or may not find
                    u = rnd.choice(self.users) if rnd.random() < 0.95 else f"new{rnd.randrange(50)}"
                    cur.execute("SELECT t_op(%s)", [u])
                    self.writes += 1
        except Exception as e:  # noqa: BLE001 - reported by stop()
            self.errors.append(repr(e))
        finally:
            conn.close()

    def stop(self):
        self.stop_flag.set()
        for t in self.threads:
            t.join(30)
        assert not self.errors, self.errors


def test_snapshot_while_writing_folds_to_the_database(stack):
    users = [f"s{i:04d}" for i in range(300)]
    url = seeded_db(stack, "fold", users, 8)
    topic = f"snapshot-test-{uuid.uuid4().hex[:10]}"
    relay = Relay(stack, url, topic)
    collector = Collector(stack, topic)
    work = None
    try:
        work = Workload(url, users)
        time.sleep(1)
        before = work.writes
        args, env = snapshot_cmd(url, "--all", "--rate", "1500")
        run = subprocess.run(args, env=env, capture_output=True, text=True, timeout=180)
        assert run.returncode == 0, run.stdout + run.stderr
        during = work.writes - before
        time.sleep(1)
        work.stop()
        assert during > 0, "no write ran while the snapshot did"

        lines = run.stdout.splitlines()
        m = re.match(r"^snapshot ([0-9a-f-]{36}) started: 0 of (\d+) users done", lines[0])
        assert m, run.stdout
        sid = m.group(1)
        assert any(PROGRESS_RE.match(line) for line in lines), run.stdout  # plain lines: no TTY
        assert "\r" not in run.stdout
        assert lines[-1].startswith(f"snapshot {sid} finished: "), run.stdout

        wait_for(lambda: pending(url) == 0, 120, "every event published")
        last = dict(run_sql(url, "SELECT user_id, last_seq FROM user_event_seq"))
        collector.wait_users(last, timeout=120)
        events = collector.snapshot()

        snap = [e for e in events if "ce_snapshot" in e["headers"]]
        assert snap and all(e["headers"]["ce_snapshot"] == sid for e in snap)
        assert all(e["hdr_list"][-1] == "ce_snapshot" for e in snap)
        # Each user's snapshot events are one run of consecutive sequence numbers.
        per_user = {}
        for e in snap:
            per_user.setdefault(e["key"], set()).add(int(e["headers"]["ce_sequence"]))
        for u, seqs in per_user.items():
            assert max(seqs) - min(seqs) + 1 == len(seqs), (u, sorted(seqs))
        rows = run_sql(url, "SELECT users_done, events_total, finished_at IS NOT NULL "
                            "FROM snapshots WHERE snapshot_id = %s", [sid])
        assert rows[0][2] and rows[0][1] == sum(len(s) for s in per_user.values())
        assert len(per_user) >= 250, len(per_user)  # users with state when their turn came

        want = db_state(url)
        # A consumer that starts from the snapshot: it reads from (a second before) the
        # snapshot's start, resets each user at its first snapshot event, then folds live
        # events ...
        since = snapshot_since(url, sid)
        assert any(e["headers"]["ce_time"] < since for e in events)  # the seed came before
        got, problems = fold(events, sid, since)
        assert not problems, problems[:5]
        diff = mismatches(want, got)
        assert not diff, [(u, got.get(u), want.get(u)) for u in diff[:3]]
        # ... and one that read everything from the start, snapshot events included.
        got_all, problems = fold(events)
        assert not problems, problems[:5]
        diff = mismatches(want, got_all)
        assert not diff, [(u, got_all.get(u), want.get(u)) for u in diff[:3]]
    finally:
        if work is not None:
            work.stop_flag.set()
        collector.close()
        assert relay.stop() == 0


def state_sizes(url):
    """{user: events a snapshot of the user writes now} for every user with state."""
    return dict(run_sql(url, """
        SELECT user_id, count(*) FROM (
            SELECT user_id FROM profiles UNION ALL SELECT user_id FROM watchlist_items
            UNION ALL SELECT user_id FROM ratings UNION ALL SELECT user_id FROM resume_points) x
        GROUP BY user_id"""))


def test_snapshot_resumes_after_kill9_without_repeating_a_user(stack):
    users = [f"k{i:04d}" for i in range(400)]
    url = seeded_db(stack, "kill", users, 6)
    sizes = state_sizes(url)
    n_events = sum(sizes.values())
    args, env = snapshot_cmd(url, "--all", "--rate", str(max(50, n_events // 20)))
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        wait_for(lambda: (run_sql(url, "SELECT coalesce(max(users_done), 0) FROM snapshots")[0][0]
                          >= 100), 60, "a hundred users done")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    sid, done, total = run_sql(url, "SELECT snapshot_id::text, users_done, users_total "
                                    "FROM snapshots")[0]
    assert 100 <= done < total == 400, (done, total)

    args, env = snapshot_cmd(url, "--all", "--rate", "5000")
    run = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.startswith(f"snapshot {sid} resumed: {done} of 400 users done"), run.stdout
    assert run.stdout.splitlines()[-1] == \
        f"snapshot {sid} finished: 400 users, {n_events} events", run.stdout

    # Every user with state is in the snapshot exactly once: its events are one run of
    # consecutive sequence numbers, as many as its state has items.
    rows = run_sql(url, "SELECT user_id, count(*), max(seq) - min(seq) + 1 FROM outbox "
                        "WHERE snapshot_id = %s GROUP BY user_id", [sid])
    assert {u: c for u, c, _ in rows} == sizes
    assert all(c == span for _, c, span in rows)
    assert run_sql(url, "SELECT users_done, events_total, finished_at IS NOT NULL FROM snapshots "
                        "WHERE snapshot_id = %s", [sid]) == [(400, n_events, True)]

    # The snapshot is finished: the same command starts a new one.
    run = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and " started: 0 of 400 users done" in run.stdout, run.stdout
    assert sid not in run.stdout

    # SIGTERM stops it after the current user: exit 1, resumable, progress kept.
    args, env = snapshot_cmd(url, "--all", "--rate", "50")
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, text=True)
    wait_for(lambda: run_sql(url, "SELECT users_done FROM snapshots WHERE finished_at IS NULL")
             not in ([], [(0,)]), 30, "the third snapshot under way")
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 1, out
    assert out.splitlines()[-1].endswith("stopped; run the same command again to resume it"), out
    assert run_sql(url, "SELECT count(*) FROM snapshots WHERE finished_at IS NULL") == [(1,)]


def snapshot_metrics(relay):
    """The relay's profile_relay_snapshot_* samples ({name or name{labels}: value}), or None
    while /metrics does not answer."""
    try:
        m = relay.metrics()
    except requests.RequestException:
        return None
    return {k: v for k, v in m.items() if k.startswith("profile_relay_snapshot_")}


def table_progress(url, sid):
    return run_sql(url, "SELECT users_done, greatest(users_total, users_done), events_total, "
                        "finished_at IS NOT NULL, extract(epoch FROM updated_at)::float8 "
                        "FROM snapshots WHERE snapshot_id = %s", [sid])[0]


def test_snapshot_progress_in_a_running_relays_metrics(stack):
    """Every relay exports the newest snapshot of all users, read from the progress table
    (every 5 s): under way (a command connected), stopped, resumed to its end; a --user
    snapshot taken later does not replace it."""
    users = [f"m{i:04d}" for i in range(300)]
    url = seeded_db(stack, "metrics", users, 4)
    relay = Relay(stack, url, f"snapshot-metrics-{uuid.uuid4().hex[:10]}")
    try:
        # Before any snapshot: zeros, no info series, nothing running.
        m = wait_for(lambda: snapshot_metrics(relay), 20, "the relay's /metrics")
        assert not any(k.startswith("profile_relay_snapshot_info") for k in m), m
        assert m["profile_relay_snapshot_users"] == 0
        assert m["profile_relay_snapshot_runners"] == 0

        # Under way: about 20 s for the whole snapshot at this rate.
        n_events = sum(state_sizes(url).values())
        args, env = snapshot_cmd(url, "--all", "--rate", str(max(20, n_events // 20)))
        proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, text=True)
        try:
            sid = run_sql_wait(url, "SELECT snapshot_id::text FROM snapshots")
            info = f'profile_relay_snapshot_info{{snapshot_id="{sid}"}}'

            def under_way():
                before = table_progress(url, sid)
                m = snapshot_metrics(relay)
                after = table_progress(url, sid)
                if not m or m.get(info) != 1 or m["profile_relay_snapshot_runners"] != 1 \
                        or m["profile_relay_snapshot_users_done"] == 0:
                    return None
                return before, m, after

            before, m, after = wait_for(under_way, 30, "a snapshot under way in the metrics")
            assert m["profile_relay_snapshot_finished"] == 0
            assert m["profile_relay_snapshot_users"] == 300
            # Read at most 5 s before the scrape: no more than the table shows after it.
            assert 0 < m["profile_relay_snapshot_users_done"] <= after[0] < 300, (m, after)
            assert 0 < m["profile_relay_snapshot_events_written"] <= after[2] < n_events
            assert m["profile_relay_snapshot_last_progress_timestamp_seconds"] <= after[4]
            assert abs(m["profile_relay_snapshot_last_progress_timestamp_seconds"]
                       - time.time()) < 60

            # Stopped half-way: nothing runs, unfinished, the figures are the table's.
            proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=20)
            assert proc.returncode == 1
        finally:
            if proc.poll() is None:
                proc.kill()
        done, total, events, finished, at = table_progress(url, sid)
        assert not finished and done < 300

        def stopped():
            m = snapshot_metrics(relay)
            return m if m and m["profile_relay_snapshot_runners"] == 0 \
                and m["profile_relay_snapshot_users_done"] == done else None

        m = wait_for(stopped, 20, "the stopped snapshot in the metrics")
        assert m[info] == 1 and m["profile_relay_snapshot_finished"] == 0
        assert m["profile_relay_snapshot_events_written"] == events
        assert m["profile_relay_snapshot_last_progress_timestamp_seconds"] == pytest.approx(at, abs=1e-3)

        # Resumed to its end, then a --user snapshot: the metrics stay on the --all one.
        args, env = snapshot_cmd(url, "--all", "--rate", "100000")
        run = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
        assert run.returncode == 0 and f"snapshot {sid} finished" in run.stdout, run.stdout
        args, env = snapshot_cmd(url, "--user", users[0])
        run = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60)
        assert run.returncode == 0, run.stdout + run.stderr
        done, total, events, finished, at = table_progress(url, sid)
        assert finished and done == total == 300

        def finished_metrics():
            m = snapshot_metrics(relay)
            return m if m and m["profile_relay_snapshot_finished"] == 1 else None

        m = wait_for(finished_metrics, 20, "the finished snapshot in the metrics")
        assert m[info] == 1
        assert m["profile_relay_snapshot_users_done"] == m["profile_relay_snapshot_users"] \
            == 300
        assert m["profile_relay_snapshot_events_written"] == events
        assert m["profile_relay_snapshot_runners"] == 0
        assert [k for k in m if k.startswith("profile_relay_snapshot_info")] == [info]
        text = requests.get(f"http://127.0.0.1:{relay.port}/metrics", timeout=2).text
        rc, out = promtool_check(text)
        assert rc == 0 and out == "", f"promtool on the relay's /metrics: {out}"
    finally:
        assert relay.stop() == 0


def run_sql_wait(url, sql, timeout=20):
    """The first column of the first row of `sql`, once it returns a row."""
    return wait_for(lambda: (run_sql(url, sql) or [[None]])[0][0], timeout, sql)
