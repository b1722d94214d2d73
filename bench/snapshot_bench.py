#!/usr/bin/python3
"""Snapshot benchmark (docs/performance.md, Snapshots): the cost of `profile-relay snapshot --all`
to live writes.

Against a running stack (tools/stack.sh; STACK_ENV names its stack.env) it creates a database
bench_snapshot, seeds USERS users with random state through the SQL write functions, starts a
relay publishing to the stack's kafka-mock, then runs a paced write workload (WRITES per second
over 2 connections, random users) three times for the same time:
  1. alone;
  2. while `profile-relay snapshot --all` runs at its default rate (or --snapshot-rate);
  3. alone again, after the snapshot finished.
It prints the write latency (p50, p99, max) of both runs (and of a third run alone, after the
snapshot, since the load of a shared machine moves), the snapshot's events and events/s,
and the relay's publishing backlog at the end. Latency is the write's database call (the SQL
write function, one transaction with its event), which is what a snapshot competes with; the
API adds its own constant on top.

Then the fold check (tests/integration/snapshot_fold.py, as test_snapshot.py does on a few
hundred users): once every event is published it reads the whole topic back from kafka-mock
(every record checked against its schema), folds it per user as a consumer starting from the
snapshot would (from the snapshot's start, each user reset at its first snapshot event), and as
one that read the topic from its start, and compares both with the database for every user:
  fold: N users, M events, K mismatches
The exit status is 1 when any user differs, a user's sequence has a gap, a record breaks its
schema or the snapshot did not finish.

  STACK_ENV=.local/dev/stack.env PROFILE_BIN_DIR=build/bin \
      bench/snapshot_bench.py [--users 10000] [--writes 200] [--seconds 60] [--snapshot-rate N]
"""
import argparse
import os
import random
import re
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import psycopg2

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "tests" / "integration"))
import event_schemas  # noqa: E402
import support  # noqa: E402
from snapshot_fold import db_state, fold, mismatches, snapshot_since  # noqa: E402
from test_relay_e2e import Collector, record_schema_problems  # noqa: E402
from test_snapshot import OP_SQL  # noqa: E402


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))] if xs else float("nan")


def workload(url, users, rate, seconds, stop_early=None):
    """Paced random writes; returns the latencies in ms."""
    lat, lock = [], threading.Lock()
    per_thread = rate / 2

    def run(i):
        rnd = random.Random(i * 7919 + int(time.time()))
        conn = psycopg2.connect(url)
        conn.set_session(autocommit=True)
        cur = conn.cursor()
        t0 = time.monotonic()
        n = 0
        while time.monotonic() - t0 < seconds and not (stop_early and stop_early.is_set()):
            due = t0 + n / per_thread
            now = time.monotonic()
            if due > now:
                time.sleep(due - now)
            s = time.perf_counter()
            cur.execute("SELECT t_op(%s)", [rnd.choice(users)])
            d = (time.perf_counter() - s) * 1000
            with lock:
                lat.append(d)
            n += 1
        conn.close()

    ts = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return lat


def line(name, lat, seconds):
    return (f"{name}: {len(lat)} writes ({len(lat) / seconds:.0f}/s), p50 {pct(lat, 50):.2f} ms, "
            f"p99 {pct(lat, 99):.2f} ms, max {max(lat):.2f} ms")


def pending(url):
    return support.run_sql(url, "SELECT count(*) FROM outbox WHERE published_at IS NULL")[0][0]


def caught_up(collector, url, timeout=300):
    """Waits until the relay has published every outbox row and the collector has read as many
    records as the outbox holds (the relay publishes each row once here: no fault)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pending(url):
            total = support.run_sql(url, "SELECT count(*) FROM outbox")[0][0]
            if collector.count() >= total:
                return
        time.sleep(0.2)
    raise AssertionError(f"the topic was not read back within {timeout} s")


def fold_check(collector, url, sid):
    """Folds the topic read since its start and compares it with the database; returns the
    number of problems (mismatched users, sequence gaps, records breaking their schema)."""
    last = dict(support.run_sql(url, "SELECT user_id, last_seq FROM user_event_seq"))
    t = time.monotonic()
    caught_up(collector, url)
    collector.wait_users(last, timeout=max(300, len(last) // 10))
    events = collector.snapshot()
    for ev in events:
        record_schema_problems(ev)
    print(f"read {len(events)} events of {len(last)} users back ({time.monotonic() - t:.0f} s "
          "after the last write)", flush=True)
    want = db_state(url)
    since = snapshot_since(url, sid)
    bad = len(collector.errors) + len(event_schemas.problems_seen)
    for what, (got, gaps) in (("", fold(events, sid, since)),
                              (" from the topic's start", fold(events))):
        diff = mismatches(want, got)
        n = sum(1 for e in events if what or e["headers"]["ce_time"] >= since)
        print(f"fold{what}: {len(set(want) | set(got))} users, {n} events, {len(diff)} mismatches"
              + (f", {len(gaps)} sequence gaps" if gaps else ""), flush=True)
        for u in diff[:3]:
            print(f"  {u}: topic {got.get(u)}\n  {' ' * len(u)}  database {want.get(u)}")
        for g in gaps[:3]:
            print(f"  {g}")
        bad += len(diff) + len(gaps)
    for p in (collector.errors + event_schemas.problems_seen)[:3]:
        print(f"  {p}")
    return bad


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=10000)
    ap.add_argument("--ops", type=int, default=6, help="seed writes per user")
    ap.add_argument("--writes", type=float, default=200, help="live writes per second")
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--snapshot-rate", type=float, default=None)
    a = ap.parse_args()
    stack = support.load_stack_env(os.environ["STACK_ENV"])
    url = support.new_database(stack, "bench_snapshot")
    support.run_sql(url, OP_SQL)
    users = [f"b{i:05d}" for i in range(a.users)]

    port = support.free_port()
    topic = f"bench-snapshot-{uuid.uuid4().hex[:10]}"  # the mock keeps earlier runs' topics
    env = {"DATABASE_URL": url, "REDIS_URL": stack["REDIS_URL"],
           "KAFKA_BOOTSTRAP_SERVERS": stack["KAFKA_BOOTSTRAP_SERVERS"],
           "KAFKA_TOPIC": topic, "RELAY_METRICS_PORT": str(port), "LOG_LEVEL": "warn"}
    relay = support.spawn([support.bin_path("profile-relay")], env,
                          ready_url=f"http://127.0.0.1:{port}/health/live")
    collector = None
    try:
        # The topic is read while it is written: kafka-mock keeps only the last few MB of each
        # partition, less than a 10,000-user run writes. One event creates the topic, then the
        # consumer starts at its beginning, and the seed goes in chunks it keeps up with.
        support.run_sql(url, "SELECT t_op(%s)", [users[0]])
        while pending(url):
            time.sleep(0.2)
        collector = Collector(stack, topic, check=False)  # checked after the timed phases
        t = time.monotonic()
        for i in range(0, len(users), 1000):
            support.run_sql(url, "SELECT t_op(u) FROM unnest(%s::text[]) u, "
                            "generate_series(1, %s)", [users[i:i + 1000], a.ops])
            caught_up(collector, url)
        print(f"seeded {a.users} users x {a.ops} writes in {time.monotonic() - t:.0f} s, "
              "published and read back", flush=True)

        base = workload(url, users, a.writes, a.seconds)
        print(line("writes alone", base, a.seconds), flush=True)

        args = [support.bin_path("profile-relay"), "snapshot", "--all"]
        if a.snapshot_rate:
            args += ["--rate", str(a.snapshot_rate)]
        snap = subprocess.Popen(args, env={"DATABASE_URL": url, "LOG_LEVEL": "warn"},
                                stdout=subprocess.PIPE, text=True)
        out = []
        reader = threading.Thread(target=lambda: out.extend(snap.stdout), daemon=True)
        reader.start()
        t0 = time.monotonic()
        during = workload(url, users, a.writes, a.seconds)
        print(line("writes during the snapshot", during, a.seconds), flush=True)
        snap.wait()
        reader.join(5)
        took = time.monotonic() - t0
        m = re.search(r"finished: (\d+) users, (\d+) events", "".join(out))
        started = re.match(r"snapshot ([0-9a-f-]{36}) (started|resumed)", "".join(out))
        if m:
            print(f"snapshot: {m.group(1)} users, {m.group(2)} events in {took:.1f} s = "
                  f"{int(m.group(2)) / took:.0f} events/s", flush=True)
        print("".join(out[-3:]), end="")
        pend = support.run_sql(url, "SELECT count(*) FROM outbox WHERE published_at IS NULL")
        print(f"relay backlog when the snapshot finished: {pend[0][0]} events", flush=True)
        # Alone once more: on a shared machine the load moves; two baselines bracket it.
        after = workload(url, users, a.writes, a.seconds)
        print(line("writes alone again", after, a.seconds), flush=True)
        print(f"p99 ratio (during / alone, alone again): {pct(during, 99) / pct(base, 99):.2f}, "
              f"{pct(during, 99) / pct(after, 99):.2f}", flush=True)
        if not m or not started:
            print(f"the snapshot did not finish (exit {snap.returncode})")
            return 1
        return 1 if fold_check(collector, url, started.group(1)) else 0
    finally:
        relay.stop()
        if collector is not None:
            collector.close()


if __name__ == "__main__":
    sys.exit(main())
