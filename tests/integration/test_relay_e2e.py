"""profile-relay end to end: outbox rows in a real PostgreSQL, published to kafka-mock and read
back with confluent_kafka while the run goes on (the mock keeps only ~5 MB per partition).

Every test uses a database of its own (relays count each other and lease partitions per
database) and a topic of its own; fault tests start their own kafka-mock with a control FIFO.
Rows are written directly with SQL (t_emit below bumps user_event_seq as the API does).
"""
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from datetime import timezone

import psycopg2
import pytest
import requests

import event_schemas
import support
from support import run_sql

EMIT_SQL = """
CREATE OR REPLACE FUNCTION t_emit(p_user text, p_n int, p_type text DEFAULT 'WatchlistUpdated',
                                  p_pad int DEFAULT 0, p_traceparent text DEFAULT NULL)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE base bigint;
BEGIN
    INSERT INTO user_event_seq AS s (user_id, last_seq, last_event_at)
        VALUES (p_user, p_n, now())
        ON CONFLICT (user_id) DO UPDATE SET last_seq = s.last_seq + p_n,
            last_event_at = greatest(now(), s.last_event_at)
        RETURNING last_seq - p_n INTO base;
    -- data of the type's schema (schemas/events/); p_pad > 0 adds a member no schema allows,
    -- only for rows meant never to be published (too large for the broker)
    INSERT INTO outbox (user_id, seq, event_type, payload, traceparent, created_at)
        SELECT p_user, base + g, p_type,
               CASE p_type
                 WHEN 'ProfileUpdated' THEN json_build_object('userId', p_user, 'version', base + g)
                 WHEN 'VideoRated' THEN json_build_object('userId', p_user, 'videoId',
                     'v' || (base + g), 'rating', 1 + (base + g) % 5, 'review', NULL)
                 WHEN 'HistoryUpdated' THEN json_build_object('userId', p_user, 'videoId',
                     'v' || (base + g), 'positionSeconds', base + g, 'durationSeconds', NULL,
                     'watchedAt', to_char(now() AT TIME ZONE 'UTC',
                                          'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'))
                 ELSE json_build_object('userId', p_user, 'videoId', 'v' || (base + g),
                                        'action', 'added')
               END::jsonb || CASE WHEN p_pad > 0
                                  THEN jsonb_build_object('pad', repeat('x', p_pad))
                                  ELSE '{}'::jsonb END,
               p_traceparent, now()
        FROM generate_series(1, p_n) g;
    PERFORM pg_notify('outbox_new', outbox_partition(p_user)::text);  -- as V002 does
END $$;
"""

TRACEPARENT_RE = re.compile(r"^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")
CE_TIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


# ---------------------------------------------------------------------------------------------
# helpers


def fresh_db(stack, tag):
    name = f"relay_{tag}_{uuid.uuid4().hex[:8]}"
    url = support.new_database(stack, name)
    run_sql(url, EMIT_SQL)
    return url


def emit(url, user, n, **kw):
    args = [user, n, kw.get("type", "WatchlistUpdated"), kw.get("pad", 0), kw.get("traceparent")]
    run_sql(url, "SELECT t_emit(%s, %s, %s, %s, %s)", args)


def emit_many(url, users, n_each):
    """n_each events for every user, in one transaction per call."""
    run_sql(url, "SELECT t_emit(u, %s) FROM unnest(%s::text[]) u", [n_each, list(users)])


def relay_env(url, bootstrap, topic, port, **extra):
    """The relay's environment for the database of `url` (any role's URL): it connects as the
    relay role, so a grant missing from migrations/ fails the test."""
    env = {
        "DATABASE_URL": support.role_url(url, "relay"),
        "REDIS_URL": extra.pop("redis_url", None),
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "KAFKA_TOPIC": topic,
        "RELAY_METRICS_PORT": str(port),
        "RELAY_POLL_INTERVAL_MS": "200",
        "LOG_LEVEL": "info",
    }
    env.update({k: str(v) for k, v in extra.items()})
    return env


class Relay:
    def __init__(self, stack, url, topic, bootstrap=None, **extra):
        self.port = support.free_port()
        env = relay_env(url, bootstrap or stack["KAFKA_BOOTSTRAP_SERVERS"], topic, self.port,
                        redis_url=extra.pop("redis_url", stack["REDIS_URL"]), **extra)
        self.proc = support.spawn([support.bin_path("profile-relay")], env,
                                  ready_url=f"http://127.0.0.1:{self.port}/health/live")

    def metrics(self):
        text = requests.get(f"http://127.0.0.1:{self.port}/metrics", timeout=2).text
        out = {}
        for line in text.splitlines():
            if line.startswith("#") or not line.strip():
                continue
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
        return out

    def metric(self, name):
        try:
            return self.metrics().get(name, 0.0)
        except requests.RequestException:
            return None

    def stop(self, sig=signal.SIGTERM):
        return self.proc.stop(sig=sig, timeout=20)


class Collector:
    """Consumes a topic in a background thread into self.events (dicts)."""

    def __init__(self, stack, topic, bootstrap=None, check=True):
        """Every record read is checked against its schema (event_schemas.check); problems go
        to event_schemas.problems_seen, which conftest.py fails the test on. check=False leaves
        that to the caller (record_schema_problems), for a reader that must stay cheap while
        a benchmark measures."""
        self.check = check
        st = dict(stack)
        if bootstrap:
            st["KAFKA_BOOTSTRAP_SERVERS"] = bootstrap
        self.consumer = support.kafka_consumer(st, topic)
        self.events = []
        self.errors = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            for m in self.consumer.consume(num_messages=1000, timeout=0.1):
                if m.error():
                    if m.error().code() != -191:  # _PARTITION_EOF
                        self.errors.append(str(m.error()))
                    continue
                h = {k: (v.decode() if v is not None else None) for k, v in (m.headers() or [])}
                ev = {"key": m.key().decode() if m.key() else None, "value": m.value(),
                      "headers": h, "partition": m.partition(), "offset": m.offset(),
                      "hdr_list": [k for k, _ in (m.headers() or [])]}
                if self.check:
                    record_schema_problems(ev)
                with self._lock:
                    self.events.append(ev)

    def count(self):
        with self._lock:
            return len(self.events)

    def snapshot(self):
        with self._lock:
            return list(self.events)

    def wait_users(self, expected, timeout=60):
        """Waits until every user in expected {user: last_seq} was seen up to its last seq."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            seen = {}
            for ev in self.snapshot():
                u = ev["key"]
                s = int(ev["headers"]["ce_sequence"])
                if s > seen.get(u, 0):
                    seen[u] = s
            if all(seen.get(u, 0) >= n for u, n in expected.items()):
                return
            time.sleep(0.1)
        missing = {u: (seen.get(u, 0), n) for u, n in expected.items() if seen.get(u, 0) < n}
        raise AssertionError(f"not all events arrived in {timeout}s: {list(missing.items())[:5]}"
                             f" ({len(missing)} users short)")

    def close(self):
        self._stop.set()
        self._thread.join(5)
        self.consumer.close()


def record_schema_problems(ev):
    """Checks one consumed record (Collector's dict) against the schema its ce_dataschema names;
    problems are collected in event_schemas.problems_seen (conftest.py fails the test)."""
    problems = event_schemas.check(ev["headers"], ev["key"], ev["value"])
    if problems:
        event_schemas.problems_seen.append(
            f"{ev['key']}#{ev['headers'].get('ce_sequence')} ({ev['headers'].get('ce_type')}): "
            + "; ".join(problems))


def check_order(events, expected, exact=True):
    """Per user: a consumer that drops seq <= last seen gets 1..n with no gap, and every
    duplicate carries the ce_id of the first send. Returns the number of duplicates."""
    by_user = {}
    for ev in events:
        by_user.setdefault(ev["key"], []).append(ev)
    dups = 0
    for user, n in expected.items():
        last = 0
        ids = {}
        for ev in by_user.get(user, []):
            s = int(ev["headers"]["ce_sequence"])
            ce_id = ev["headers"]["ce_id"]
            if s <= last:
                assert ids[s] == ce_id, f"{user}: seq {s} re-sent with another ce_id"
                dups += 1
                continue
            assert s == last + 1, f"{user}: got seq {s} after {last} (gap or reorder)"
            ids[s] = ce_id
            last = s
        assert last == n, f"{user}: last seq {last}, want {n}"
    if exact:
        assert set(by_user) <= set(expected), "events for unexpected users"
    return dups


def wait_for(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def pending(url):
    return run_sql(url, "SELECT count(*) FROM outbox WHERE published_at IS NULL")[0][0]


class OwnMock:
    """A kafka-mock of our own for fault injection; its log is where support.kafka_control
    looks for the confirmation of each command."""

    def __init__(self, brokers=3):
        self.dir = tempfile.mkdtemp(prefix="relay-mock-")
        self.ctl = os.path.join(self.dir, "kafka.ctl")
        os.mkfifo(self.ctl)
        self.log = open(os.path.join(self.dir, "kafka-mock.log"), "w")
        self.proc = subprocess.Popen(
            [support.bin_path("kafka-mock"), "--brokers", str(brokers), "--control", self.ctl],
            stdout=subprocess.PIPE, stderr=self.log, stdin=subprocess.DEVNULL, text=True,
            start_new_session=True)
        self.bootstrap = self.proc.stdout.readline().strip()
        assert self.bootstrap, "kafka-mock printed no bootstrap address"
        self.stack = {"KAFKA_BOOTSTRAP_SERVERS": self.bootstrap, "KAFKA_CONTROL": self.ctl,
                      "STACK_DIR": self.dir}

    def control(self, cmd):
        support.kafka_control(self.stack, cmd)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def topic():
    return f"relay-test-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def cleanup():
    """What a test started (relays, API processes, collectors), stopped in reverse order at
    teardown even when the test failed; other modules import this fixture."""
    items = []
    yield items
    for it in reversed(items):
        try:
            it.close() if isinstance(it, Collector) else it.stop()
        except Exception:  # noqa: BLE001 - teardown must go on
            pass


def uid(prefix="u"):
    return f"{prefix}{uuid.uuid4().hex[:12]}"


# ---------------------------------------------------------------------------------------------
# tests


def test_relay_config_errors_exit_2():
    env = {"DATABASE_URL": None, "KAFKA_BOOTSTRAP_SERVERS": None, "RELAY_BATCH_SIZE": "0",
           "RELAY_METRICS_PORT": "0"}
    p = support.spawn([support.bin_path("profile-relay")], env)
    assert p.proc.wait(10) == 2
    lines = [ln for ln in p.output().splitlines() if ln.strip()]
    names = sorted(ln.split(":")[0] for ln in lines)
    assert names == ["DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS", "RELAY_BATCH_SIZE"], lines


def test_relay_events_headers_and_data(stack, topic, cleanup):
    url = fresh_db(stack, "hdr")
    col = Collector(stack, topic)
    cleanup.append(col)
    relay = Relay(stack, url, topic, CE_SOURCE="/profile-test")
    cleanup.append(relay)
    support.wait_http(f"http://127.0.0.1:{relay.port}/health/ready", 15)

    a, b = uid("a"), uid("b")
    tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    emit(url, a, 3, traceparent=tp)
    emit(url, a, 1, type="ProfileUpdated")
    emit(url, b, 2, type="VideoRated")
    emit(url, b, 1, type="HistoryUpdated")
    col.wait_users({a: 4, b: 3}, timeout=20)
    check_order(col.snapshot(), {a: 4, b: 3})

    rows = {(r[0], r[1]): r for r in run_sql(
        url, "SELECT user_id, seq, event_id::text, event_type, payload::text, traceparent,"
             " created_at, published_at FROM outbox")}
    for ev in col.snapshot():
        h = ev["headers"]
        row = rows[(ev["key"], int(h["ce_sequence"]))]
        assert ev["hdr_list"] == ["ce_specversion", "ce_id", "ce_source", "ce_type",
                                  "ce_dataschema", "ce_subject", "ce_time", "ce_sequence",
                                  "content-type", "traceparent"]
        assert h["ce_specversion"] == "1.0"
        assert h["ce_dataschema"] == f"urn:profile-service:schema:{row[3]}:1"
        assert event_schemas.check(h, ev["key"], ev["value"]) == []
        assert h["ce_id"] == row[2]
        assert h["ce_source"] == "/profile-test"
        assert h["ce_type"] == row[3]
        assert h["ce_subject"] == ev["key"] == row[0]
        assert h["content-type"] == "application/json"
        assert ev["value"] == row[4].encode()
        assert CE_TIME_RE.match(h["ce_time"]), h["ce_time"]
        want_time = row[6].astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        assert h["ce_time"] == want_time
        assert TRACEPARENT_RE.match(h["traceparent"])
        if row[5] is not None:
            assert h["traceparent"] == row[5]
        assert row[7] is not None, "delivered row not marked published"
    # one user's events share a Kafka partition (key = user id)
    assert len({ev["partition"] for ev in col.snapshot() if ev["key"] == a}) == 1

    # Redis: the relay raised each user's cache version to its last published sequence.
    import redis as redislib
    r = redislib.Redis.from_url(stack["REDIS_URL"])
    wait_for(lambda: r.get(f"pc:{{{a}}}:ver") == b"4", 5, "redis version key of a")
    assert r.get(f"pc:{{{b}}}:ver") == b"3"
    assert r.ttl(f"pc:{{{a}}}:ver") > 0

    m = relay.metrics()
    assert m['profile_relay_events_published_total{type="WatchlistUpdated"}'] == 3
    assert m['profile_relay_events_published_total{type="VideoRated"}'] == 2
    assert m["profile_relay_commit_to_delivery_seconds_count"] == 7
    assert m["profile_relay_partitions_held"] == 64
    assert any(k.startswith('profile_relay_build_info{version="') for k in m), m.keys()
    assert relay.stop() == 0


def test_relay_commit_order_trap(stack, topic, cleanup):
    """T1 begins and writes first, T2 writes and commits, T1 commits last: T1's row is still
    published (no 'highest id seen' skipping)."""
    url = fresh_db(stack, "trap")
    col = Collector(stack, topic)
    cleanup.append(col)
    relay = Relay(stack, url, topic)
    cleanup.append(relay)

    a, b = uid("a"), uid("b")
    t1 = psycopg2.connect(url)
    try:
        with t1.cursor() as cur:
            cur.execute("SELECT t_emit(%s, 1)", [a])  # T1: first in, not committed
        emit(url, b, 1)  # T2 commits
        col.wait_users({b: 1}, timeout=10)
        time.sleep(0.5)  # several polls happen while T1 is open
        assert not [e for e in col.snapshot() if e["key"] == a]
        t1.commit()
    finally:
        t1.close()
    col.wait_users({a: 1}, timeout=10)
    # the same with the NOTIFY lost: T1's hint arrives, but also a row committed without one
    c = uid("c")
    run_sql(url, "INSERT INTO user_event_seq VALUES (%s, 1, now());"
                 "INSERT INTO outbox (user_id, seq, event_type, payload, created_at)"
                 " VALUES (%s, 1, 'ProfileUpdated', json_build_object('userId', %s, 'version', 1),"
                 " now())",
            [c, c, c])
    col.wait_users({c: 1}, timeout=5)  # found by the poll timer
    check_order(col.snapshot(), {a: 1, b: 1, c: 1})


def test_relay_two_relays_10k_events(stack, topic, cleanup):
    url = fresh_db(stack, "two")
    col = Collector(stack, topic)
    cleanup.append(col)
    r1 = Relay(stack, url, topic)
    r2 = Relay(stack, url, topic)
    cleanup += [r1, r2]
    wait_for(lambda: r1.metric("profile_relay_partitions_held") == 32 and
             r2.metric("profile_relay_partitions_held") == 32, 10, "32 partitions each")

    users = [uid() for _ in range(200)]
    for _ in range(10):  # 10 rounds of 5 events per user, while the relays run
        emit_many(url, users, 5)
        time.sleep(0.05)
    col.wait_users({u: 50 for u in users}, timeout=60)
    dups = check_order(col.snapshot(), {u: 50 for u in users})
    assert dups == 0
    wait_for(lambda: pending(url) == 0, 10, "all rows marked published")
    assert r1.metric('profile_relay_events_published_total{type="WatchlistUpdated"}') > 0
    assert r2.metric('profile_relay_events_published_total{type="WatchlistUpdated"}') > 0
    assert r1.stop() == 0 and r2.stop() == 0


def test_relay_three_relays_kill9_one(stack, topic, cleanup):
    """Brokers answer slowly (rtt), so the victim dies with messages in flight: its rows stay
    unmarked and the relays that take its partitions send them again, with the same ce_id."""
    mock = OwnMock()
    cleanup.append(mock)
    url = fresh_db(stack, "three")
    col = Collector(stack, topic, bootstrap=mock.bootstrap)
    cleanup.append(col)
    relays = [Relay(stack, url, topic, bootstrap=mock.bootstrap) for _ in range(3)]
    cleanup += relays
    wait_for(lambda: sum(r.metric("profile_relay_partitions_held") or 0 for r in relays) == 64 and
             all((r.metric("profile_relay_partitions_held") or 0) >= 20 for r in relays), 15,
             "64 partitions shared by 3 relays")

    users = [uid() for _ in range(200)]
    expected = {u: 50 for u in users}
    victim = relays[1]
    for i in range(10):
        emit_many(url, users, 5)
        if i == 4:
            for b in (1, 2, 3):
                mock.control(f"rtt {b} 300")
            emit_many(url, users, 1)
            expected = {u: 51 for u in users}
            wait_for(lambda: (victim.metric("profile_relay_inflight_messages") or 0) > 0, 10,
                     "victim with messages in flight")
            victim.proc.kill9()
            for b in (1, 2, 3):
                mock.control(f"rtt {b} 0")
        time.sleep(0.05)
    survivors = [relays[0], relays[2]]
    wait_for(lambda: sum(r.metric("profile_relay_partitions_held") for r in survivors) == 64, 10,
             "survivors take over every partition")
    col.wait_users(expected, timeout=60)
    dups = check_order(col.snapshot(), expected)  # duplicates allowed, only with same ce_id
    print(f"kill -9 run: {len(col.snapshot())} messages, {dups} duplicate(s)")
    wait_for(lambda: pending(url) == 0, 10, "all rows marked published")
    assert all(r.stop() == 0 for r in survivors)


def test_relay_frozen_relay_loses_its_partitions(stack, topic, cleanup):
    """A relay frozen (SIGSTOP) with messages in flight keeps its connections and so its
    advisory locks: the other relay ends its lease backend after RELAY_TAKEOVER_SECONDS and
    publishes its users. When the frozen relay resumes, its stale sends are duplicates (same
    ce_id) and per-user order holds; it then rejoins with a fair share."""
    takeover = 3
    mock = OwnMock()
    cleanup.append(mock)
    url = fresh_db(stack, "freeze")
    col = Collector(stack, topic, bootstrap=mock.bootstrap)
    cleanup.append(col)
    relays = [Relay(stack, url, topic, bootstrap=mock.bootstrap, RELAY_TAKEOVER_SECONDS=takeover)
              for _ in range(2)]
    cleanup += relays
    live, victim = relays
    # A session that is no relay's, idle for longer than the takeover: it must survive.
    bystander = psycopg2.connect(url, application_name="profile-relay-bystander")
    wait_for(lambda: live.metric("profile_relay_partitions_held") == 32 and
             victim.metric("profile_relay_partitions_held") == 32, 10, "32 partitions each")

    users = [uid() for _ in range(100)]
    emit_many(url, users, 3)
    for b in (1, 2, 3):
        mock.control(f"rtt {b} 400")
    emit_many(url, users, 1)
    wait_for(lambda: (victim.metric("profile_relay_inflight_messages") or 0) > 0, 10,
             "victim with messages in flight")
    os.kill(victim.proc.pid, signal.SIGSTOP)
    try:
        frozen_at = time.time()
        for b in (1, 2, 3):
            mock.control(f"rtt {b} 0")
        emit_many(url, users, 2)
        expected = {u: 6 for u in users}
        wait_for(lambda: live.metric("profile_relay_partitions_held") == 64, takeover + 5,
                 "the live relay takes every partition")
        col.wait_users(expected, timeout=takeover + 10)
        waited = time.time() - frozen_at
        assert live.metric("profile_relay_takeovers_total") == 1
        wait_for(lambda: pending(url) == 0, 5, "rows marked published by the live relay")
    finally:
        os.kill(victim.proc.pid, signal.SIGCONT)
    print(f"frozen relay: every user published {waited:.1f}s after the freeze "
          f"(takeover after {takeover}s)")
    # Back: the woken relay has lost its lease, reconnects and gets its share again.
    wait_for(lambda: live.metric("profile_relay_partitions_held") == 32 and
             victim.metric("profile_relay_partitions_held") == 32, 15, "32 partitions each again")
    emit_many(url, users, 2)
    expected = {u: 8 for u in users}
    col.wait_users(expected, timeout=30)
    dups = check_order(col.snapshot(), expected)  # duplicates allowed, only with same ce_id
    print(f"frozen relay run: {len(col.snapshot())} messages, {dups} duplicate(s)")
    wait_for(lambda: pending(url) == 0, 10, "all rows marked published")
    assert "lost the lease connection" in victim.proc.output()
    with bystander.cursor() as cur:  # only the frozen relay's lease backend was ended
        cur.execute("SELECT 1")
    bystander.close()
    assert "silent for" in live.proc.output()
    assert live.stop() == 0 and victim.stop() == 0


def test_relay_postgres_restart(stack, topic, cleanup):
    stack_sh = str(support.REPO / "tools" / "stack.sh")
    if "STACK_DIR" not in stack or not os.path.isfile(stack_sh):
        pytest.skip("needs tools/stack.sh pg-restart")
    url = fresh_db(stack, "pgr")
    col = Collector(stack, topic)
    cleanup.append(col)
    relay = Relay(stack, url, topic)
    cleanup.append(relay)
    users = [uid() for _ in range(20)]
    emit_many(url, users, 5)
    col.wait_users({u: 5 for u in users}, timeout=20)

    r = subprocess.run([stack_sh, "pg-restart", stack["STACK_DIR"], "fast"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    wait_for(lambda: relay.metric("profile_relay_pg_reconnects_total"), 20, "relay reconnected")
    emit_many(url, users, 5)
    col.wait_users({u: 10 for u in users}, timeout=20)
    check_order(col.snapshot(), {u: 10 for u in users})
    assert relay.proc.proc.poll() is None
    wait_for(lambda: relay.metric("profile_relay_partitions_held") == 64, 10, "leases re-taken")
    assert relay.stop() == 0


def test_relay_redis_down_does_not_stop_publishing(stack, topic, cleanup):
    url = fresh_db(stack, "redis")
    col = Collector(stack, topic)
    cleanup.append(col)
    dead = support.free_port()  # nothing listens here
    relay = Relay(stack, url, topic, redis_url=f"redis://127.0.0.1:{dead}/0")
    cleanup.append(relay)
    a = uid()
    emit(url, a, 5)
    col.wait_users({a: 5}, timeout=15)
    wait_for(lambda: pending(url) == 0, 5, "rows marked")
    assert relay.metric("profile_relay_redis_errors_total") >= 1
    assert relay.metric("profile_relay_redis_up") == 0
    support.wait_http(f"http://127.0.0.1:{relay.port}/health/ready", 5)
    assert relay.stop() == 0
    outages = [ln for ln in relay.proc.output().splitlines() if "redis unavailable" in ln]
    assert len(outages) == 1, "one log line per outage"


def test_relay_redis_outage_then_invalidations_catch_up(stack, topic, cleanup):
    stack_sh = str(support.REPO / "tools" / "stack.sh")
    if "STACK_DIR" not in stack or not os.path.isfile(stack_sh):
        pytest.skip("needs tools/stack.sh redis-stop/redis-start")
    import redis as redislib
    url = fresh_db(stack, "redisout")
    col = Collector(stack, topic)
    cleanup.append(col)
    relay = Relay(stack, url, topic)
    cleanup.append(relay)
    a = uid()
    emit(url, a, 2)
    col.wait_users({a: 2}, timeout=10)
    r = redislib.Redis.from_url(stack["REDIS_URL"])
    wait_for(lambda: r.get(f"pc:{{{a}}}:ver") == b"2", 5, "version 2")
    subprocess.run([stack_sh, "redis-stop", stack["STACK_DIR"]], check=True, timeout=30,
                   capture_output=True)
    try:
        emit(url, a, 3)
        col.wait_users({a: 5}, timeout=10)  # publishing goes on without Redis
        wait_for(lambda: pending(url) == 0, 5, "rows marked")
        wait_for(lambda: relay.metric("profile_relay_redis_up") == 0, 5, "redis seen down")
    finally:
        subprocess.run([stack_sh, "redis-start", stack["STACK_DIR"]], check=True, timeout=30,
                       capture_output=True)
    r = redislib.Redis.from_url(stack["REDIS_URL"])
    wait_for(lambda: r.get(f"pc:{{{a}}}:ver") == b"5", 15, "queued invalidation applied")
    assert relay.metric("profile_relay_redis_up") == 1
    assert relay.stop() == 0


@pytest.mark.parametrize("seeds", ["all", "one replica"])
def test_relay_invalidates_across_a_redis_cluster(stack, topic, cleanup, seeds):
    """REDIS_MODE=cluster: the relay learns the slot map (from every seed, or from one replica
    alone) and raises the version key of users spread over all three masters; no invalidation
    is refused, none is left queued."""
    cstack = support.stack_for_redis_mode(stack, "cluster")
    r = support.redis_client(cstack)
    if seeds == "all":
        redis_url = cstack["REDIS_URL"]
    else:
        redis_url = f"redis://127.0.0.1:{r.get_replicas()[0].port}"
    url = fresh_db(stack, "rcluster")
    col = Collector(stack, topic)
    cleanup.append(col)
    relay = Relay(stack, url, topic, redis_url=redis_url, REDIS_MODE="cluster")
    cleanup.append(relay)
    users = [uid("rc") for _ in range(24)]
    emit_many(url, users, 2)
    col.wait_users({u: 2 for u in users}, timeout=30)
    wait_for(lambda: all(r.get(f"pc:{{{u}}}:ver") == b"2" for u in users), 10,
             "version keys on every master")
    slots = {r.keyslot(f"pc:{{{u}}}:ver") for u in users}
    owners = {r.get_node_from_key(f"pc:{{{u}}}:ver").port for u in users}
    assert len(slots) > 10 and len(owners) == 3, (len(slots), owners)
    assert relay.metric("profile_relay_redis_errors_total") == 0
    assert relay.metric("profile_relay_redis_up") == 1
    assert relay.stop() == 0
    out = relay.proc.output()
    assert "error on invalidation" not in out and "CROSSSLOT" not in out, out[-2000:]


def test_relay_retention_deletes_published_rows(stack, topic, cleanup):
    url = fresh_db(stack, "ret")
    col = Collector(stack, topic)
    cleanup.append(col)
    relay = Relay(stack, url, topic, OUTBOX_RETENTION_SECONDS=0)
    cleanup.append(relay)
    a = uid()
    emit(url, a, 20)
    col.wait_users({a: 20}, timeout=15)
    wait_for(lambda: run_sql(url, "SELECT count(*) FROM outbox")[0][0] == 0, 10,
             "published rows deleted")
    assert relay.stop() == 0


def test_relay_kafka_faults_brokers_down_and_retriable_errors(stack, topic, cleanup):
    mock = OwnMock()
    cleanup.append(mock)
    url = fresh_db(stack, "kfault")
    col = Collector(stack, topic, bootstrap=mock.bootstrap)
    cleanup.append(col)
    relay = Relay(stack, url, topic, bootstrap=mock.bootstrap, RELAY_BATCH_SIZE=100)
    cleanup.append(relay)
    users = [uid() for _ in range(50)]
    emit_many(url, users, 2)
    col.wait_users({u: 2 for u in users}, timeout=20)

    # every broker down for longer than a batch takes: rows wait, nothing is marked
    for b in (1, 2, 3):
        mock.control(f"down {b}")
    emit_many(url, users, 4)
    time.sleep(3)
    assert pending(url) > 0
    for b in (1, 2, 3):
        mock.control(f"up {b}")
    col.wait_users({u: 6 for u in users}, timeout=60)

    # retriable Produce errors: librdkafka retries them, order holds
    mock.control("err 20 NOT_ENOUGH_REPLICAS")
    emit_many(url, users, 4)
    mock.control("err 10 REQUEST_TIMED_OUT")
    emit_many(url, users, 4)
    col.wait_users({u: 14 for u in users}, timeout=60)
    check_order(col.snapshot(), {u: 14 for u in users})
    wait_for(lambda: pending(url) == 0, 10, "all rows marked published")
    assert run_sql(url, "SELECT count(*) FROM outbox_dead_letters")[0][0] == 0

    # A permanent error reported by the broker, twice for the same event (one ProduceRequest
    # per attempt: only x's rows are in flight): x's first failed row becomes the dead letter,
    # x's later rows are held back, the other users flow.
    x = uid("x")
    mock.control("err 2 MSG_SIZE_TOO_LARGE")
    emit(url, x, 3)
    wait_for(lambda: run_sql(url, "SELECT user_id, seq FROM outbox_dead_letters"), 15,
             "a dead letter")
    mock.control("clear")
    assert run_sql(url, "SELECT user_id, seq FROM outbox_dead_letters") == [(x, 1)]
    emit_many(url, users, 2)
    col.wait_users({u: 16 for u in users}, timeout=30)
    assert not [e for e in col.snapshot() if e["key"] == x]
    assert relay.metric("profile_relay_dead_lettered_total") == 1
    r = dlq(url, "requeue", f"{x}:1")
    assert r.returncode == 0, r.stdout + r.stderr
    col.wait_users({x: 3}, timeout=15)
    expected = {u: 16 for u in users}
    expected[x] = 3
    check_order(col.snapshot(), expected)
    assert relay.stop() == 0


def test_relay_sigterm_flushes_in_flight(stack, topic, cleanup):
    mock = OwnMock()
    cleanup.append(mock)
    url = fresh_db(stack, "term")
    col = Collector(stack, topic, bootstrap=mock.bootstrap)
    cleanup.append(col)
    relay = Relay(stack, url, topic, bootstrap=mock.bootstrap)
    cleanup.append(relay)
    wait_for(lambda: relay.metric("profile_relay_partitions_held") == 64, 10, "partitions")
    for b in (1, 2, 3):
        mock.control(f"rtt {b} 400")
    users = [uid() for _ in range(20)]
    emit_many(url, users, 10)
    wait_for(lambda: (relay.metric("profile_relay_inflight_messages") or 0) > 0, 10, "in flight")
    t0 = time.monotonic()
    assert relay.stop() == 0
    assert time.monotonic() - t0 < 12
    out = relay.proc.output()
    m = re.search(r"flushing (\d+) in-flight", out)
    assert m and int(m.group(1)) > 0, out[-2000:]
    # every row marked published was delivered (the consumer sees it), none marked otherwise
    marked = run_sql(url, "SELECT user_id, seq FROM outbox WHERE published_at IS NOT NULL")
    assert marked, "nothing was marked during the flush"
    time.sleep(1)
    delivered = {(e["key"], int(e["headers"]["ce_sequence"])) for e in col.snapshot()}
    assert set(marked) <= delivered, "a row was marked without being delivered"

    # brokers down: the flush gives up after its bound, exit 0, rows stay pending. (A relay
    # takes partitions only once a broker answered: it starts with the brokers up.)
    for b in (1, 2, 3):
        mock.control(f"rtt {b} 0")
    relay2 = Relay(stack, url, topic, bootstrap=mock.bootstrap)
    cleanup.append(relay2)
    wait_for(lambda: relay2.metric("profile_relay_partitions_held") == 64, 15, "partitions")
    for b in (1, 2, 3):
        mock.control(f"down {b}")
    emit_many(url, users, 2)
    wait_for(lambda: (relay2.metric("profile_relay_inflight_messages") or 0) > 0, 10, "in flight")
    t0 = time.monotonic()
    assert relay2.stop() == 0
    assert time.monotonic() - t0 < 15
    assert "still in the producer queue" in relay2.proc.output()
    assert pending(url) > 0


def dlq(url, *args):
    env = dict(os.environ, DATABASE_URL=support.role_url(url, "relay"))
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    return subprocess.run([support.bin_path("profile-relay"), "dlq", *args], env=env,
                          capture_output=True, text=True, timeout=20)


def test_relay_dead_letters_hold_back_one_user(stack, topic, cleanup):
    url = fresh_db(stack, "dlq")
    col = Collector(stack, topic)
    cleanup.append(col)
    relay = Relay(stack, url, topic)
    cleanup.append(relay)
    bad, bad2, good = uid("bad"), uid("bad2"), uid("good")
    emit(url, bad, 1)
    emit(url, bad2, 1)
    emit(url, bad, 1, pad=1_100_000)  # larger than message.max.bytes: never publishable
    emit(url, bad2, 1, pad=1_100_000)
    emit(url, bad, 2)
    emit(url, bad2, 2)
    emit(url, good, 5)
    col.wait_users({good: 5, bad: 1, bad2: 1}, timeout=20)
    wait_for(lambda: run_sql(url, "SELECT count(*) FROM outbox_dead_letters")[0][0] == 2, 10,
             "two dead letters")
    time.sleep(1)  # a few polls: the held-back users' later rows must stay unsent
    seen = {(e["key"], int(e["headers"]["ce_sequence"])) for e in col.snapshot()}
    assert (bad, 2) not in seen and (bad, 3) not in seen and (bad2, 3) not in seen
    err = run_sql(url, "SELECT error FROM outbox_dead_letters WHERE user_id = %s", [bad])[0][0]
    assert "too large" in err.lower() or "size" in err.lower(), err
    wait_for(lambda: relay.metric("profile_relay_dead_letters") == 2, 10, "dead-letter gauge")
    assert relay.metric("profile_relay_dead_lettered_total") >= 2

    r = dlq(url, "list")
    assert r.returncode == 0, r.stderr
    assert f"{bad}:2\t" in r.stdout and f"{bad2}:2\t" in r.stdout

    # skip: bad's seq 2 is marked published without sending, 3 and 4 follow
    r = dlq(url, "skip", f"{bad}:2")
    assert r.returncode == 0, r.stdout + r.stderr
    col.wait_users({bad: 4}, timeout=10)

    # requeue after fixing the row: bad2's seq 2, 3, 4 go out in order
    ev_id = run_sql(url, "SELECT event_id::text FROM outbox WHERE user_id = %s AND seq = 2",
                    [bad2])[0][0]
    run_sql(url, "UPDATE outbox SET payload = (payload::jsonb - 'pad')::json WHERE event_id = %s",
            [ev_id])
    r = dlq(url, "requeue", ev_id.upper())
    assert r.returncode == 0, r.stdout + r.stderr
    col.wait_users({bad2: 4}, timeout=10)

    events = col.snapshot()
    check_order([e for e in events if e["key"] == bad2], {bad2: 4})
    bad_seqs = [int(e["headers"]["ce_sequence"]) for e in events if e["key"] == bad]
    assert bad_seqs == [1, 3, 4], bad_seqs  # 2 was skipped by the operator
    assert dlq(url, "requeue", f"{bad}:2").returncode == 1  # nothing left to requeue
    assert dlq(url, "skip", "not-an-id").returncode == 2
    assert relay.stop() == 0


def test_relay_lag_gauge_leaves_held_back_rows_out(stack, topic, cleanup):
    """profile_relay_oldest_pending_age_seconds ages only with rows the relay may send; rows held
    back behind a dead letter have their own gauge (profile_relay_held_back_rows), so one poison
    event pages as a dead letter, not as lag. Checked against a real backlog: Kafka down, rows
    backdated in the outbox."""
    mock = OwnMock()
    cleanup.append(mock)
    url = fresh_db(stack, "lag")
    col = Collector(stack, topic, bootstrap=mock.bootstrap)
    cleanup.append(col)
    relay = Relay(stack, url, topic, bootstrap=mock.bootstrap)
    cleanup.append(relay)
    bad, good = uid("bad"), uid("good")

    def gauges():
        m = relay.metrics()
        return {k: m.get(f"profile_relay_{k}") for k in
                ("pending_rows", "held_back_rows", "oldest_pending_age_seconds", "dead_letters")}

    def sql_age(user):
        return float(run_sql(url, "SELECT extract(epoch FROM clock_timestamp() - min(created_at))"
                                  " FROM outbox WHERE published_at IS NULL AND user_id = %s",
                             [user])[0][0])

    emit(url, bad, 1, pad=1_100_000)  # larger than message.max.bytes: dead-lettered
    wait_for(lambda: run_sql(url, "SELECT count(*) FROM outbox_dead_letters")[0][0] == 1, 15,
             "a dead letter")
    emit(url, bad, 3)  # held back behind it
    for b in (1, 2, 3):
        mock.control(f"down {b}")
    emit(url, good, 2)  # sendable, but Kafka is down: a real backlog
    run_sql(url, "UPDATE outbox SET created_at = created_at - interval '1 hour'"
                 " WHERE user_id = %s", [bad])
    run_sql(url, "UPDATE outbox SET created_at = created_at - interval '2 minutes'"
                 " WHERE user_id = %s", [good])

    g = wait_for(lambda: (lambda g: g if g["held_back_rows"] == 4 and g["pending_rows"] == 6
                          else None)(gauges()), 20, "held-back and pending gauges")
    assert g["dead_letters"] == 1
    # the lag is the good user's two minutes, not the held-back hour
    assert 110 < g["oldest_pending_age_seconds"] < 600, g
    assert abs(g["oldest_pending_age_seconds"] - sql_age(good)) < 15, g

    # skip the dead letter: bad's later rows become sendable, and now they are the lag
    r = dlq(url, "skip", f"{bad}:1")
    assert r.returncode == 0, r.stdout + r.stderr
    g = wait_for(lambda: (lambda g: g if g["held_back_rows"] == 0 and g["dead_letters"] == 0
                          else None)(gauges()), 20, "held-back gauge back to 0")
    assert g["pending_rows"] == 5, g
    assert 3500 < g["oldest_pending_age_seconds"] < 4000, g
    assert abs(g["oldest_pending_age_seconds"] - sql_age(bad)) < 15, g

    # Kafka back: the backlog drains and both gauges fall to 0
    for b in (1, 2, 3):
        mock.control(f"up {b}")
    col.wait_users({good: 2, bad: 4}, timeout=60)
    g = wait_for(lambda: (lambda g: g if g["pending_rows"] == 0 else None)(gauges()), 20,
                 "backlog drained")
    assert g["oldest_pending_age_seconds"] == 0 and g["held_back_rows"] == 0, g
    assert relay.stop() == 0
