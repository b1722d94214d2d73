#!/usr/bin/python3
"""Relay steady-state latency (issue 5): RATE events/s written through SQL, one transaction
each (as the API's write functions do since V007: bump user_event_seq, insert the outbox row
with emitted_at = clock_timestamp()), then, as the API does after the commit, the hint
(NOTIFY outbox_new, '<partition>') on a connection of its own; --notify-in-tx puts the NOTIFY
back inside the write transaction (before V007). Runs for SECONDS; reports the relay's
commit-to-delivery histogram (outbox emitted_at -> Kafka delivery report) as p50/p99,
interpolated within buckets.

    STACK_ENV=.local/stack/stack.env bench/relay_latency.py [--rate 1000] [--seconds 10]
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "integration"))
import psycopg2  # noqa: E402
import requests  # noqa: E402

import support  # noqa: E402

EMIT = """
CREATE OR REPLACE FUNCTION bench_emit(p_user text, p_notify boolean) RETURNS smallint
LANGUAGE plpgsql AS $$
DECLARE s bigint;
BEGIN
    INSERT INTO user_event_seq AS q (user_id, last_seq, last_event_at) VALUES (p_user, 1, now())
        ON CONFLICT (user_id) DO UPDATE SET last_seq = q.last_seq + 1,
            last_event_at = greatest(now(), q.last_event_at)
        RETURNING last_seq INTO s;
    INSERT INTO outbox (user_id, seq, event_type, payload, created_at, emitted_at)
        VALUES (p_user, s, 'WatchlistUpdated',
                json_build_object('userId', p_user, 'videoId', 'v' || s, 'action', 'added'),
                now(), clock_timestamp());
    IF p_notify THEN
        PERFORM pg_notify('outbox_new', outbox_partition(p_user)::text);
    END IF;
    RETURN outbox_partition(p_user);
END $$;
"""

# api/data/pgpool.c's PGPOOL_STMT_OUTBOX_HINT
HINT = """
SELECT count(pg_notify('outbox_new', p::text)) FROM unnest(%s::smallint[]) AS p
 WHERE set_config('synchronous_commit', 'off', true) IS NOT NULL
"""


def quantile(buckets, q):
    """buckets: sorted [(le_seconds, cumulative_count)], last le = inf."""
    total = buckets[-1][1]
    want = q * total
    prev_le, prev_c = 0.0, 0
    for le, c in buckets:
        if c >= want:
            if le == float("inf"):
                return prev_le
            frac = (want - prev_c) / (c - prev_c) if c > prev_c else 0
            return prev_le + (le - prev_le) * frac
        prev_le, prev_c = le, c
    return prev_le


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=int, default=1000)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--writers", type=int, default=4)
    ap.add_argument("--notify-in-tx", action="store_true",
                    help="NOTIFY inside the write transaction (before V007) instead of after it")
    args = ap.parse_args()
    stack = support.load_stack_env(os.environ["STACK_ENV"])

    url = support.new_database(stack, f"relay_lat_{uuid.uuid4().hex[:8]}")
    support.psql(stack, EMIT, db=url.rsplit("/", 1)[1])

    work = tempfile.mkdtemp(prefix="relay-lat-")
    ctl = os.path.join(work, "kafka.ctl")
    os.mkfifo(ctl)
    mock = subprocess.Popen([support.bin_path("kafka-mock"), "--brokers", "3", "--control", ctl],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    bootstrap = mock.stdout.readline().strip()
    port = support.free_port()
    relay = support.spawn([support.bin_path("profile-relay")], {
        "DATABASE_URL": support.role_url(url, "relay"), "REDIS_URL": stack["REDIS_URL"],
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "KAFKA_TOPIC": "relay.latency",
        "RELAY_METRICS_PORT": port}, ready_url=f"http://127.0.0.1:{port}/health/ready")
    try:
        total = args.rate * args.seconds
        per_writer = total // args.writers
        interval = args.writers / args.rate
        start = time.monotonic() + 0.5

        def writer(w):
            conn = psycopg2.connect(url)
            conn.set_session(autocommit=True)
            cur = conn.cursor()
            hint = psycopg2.connect(url)
            hint.set_session(autocommit=True)
            hcur = hint.cursor()
            for i in range(per_writer):
                t = start + i * interval + w * (interval / args.writers)
                d = t - time.monotonic()
                if d > 0:
                    time.sleep(d)
                cur.execute("SELECT bench_emit(%s, %s)",
                            [f"lat-{(i * args.writers + w) % 1000}", args.notify_in_tx])
                if not args.notify_in_tx:
                    hcur.execute(HINT, [[cur.fetchone()[0]]])
            conn.close()
            hint.close()

        threads = [threading.Thread(target=writer, args=(w,)) for w in range(args.writers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - start
        deadline = time.monotonic() + 30
        while support.psql(stack, "SELECT count(*) FROM outbox WHERE published_at IS NULL",
                           db=url.rsplit("/", 1)[1])[0][0] and time.monotonic() < deadline:
            time.sleep(0.2)
        text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        buckets = []
        for m in re.finditer(r'profile_relay_commit_to_delivery_seconds_bucket\{le="([^"]+)"\} (\d+)', text):
            le = float("inf") if m.group(1) == "+Inf" else float(m.group(1))
            buckets.append((le, int(m.group(2))))
        buckets.sort()
        n = buckets[-1][1]
        print(f"relay-latency: {n} events at {per_writer * args.writers / elapsed:.0f}/s written: "
              f"commit-to-delivery p50 {quantile(buckets, 0.5) * 1000:.2f} ms, "
              f"p99 {quantile(buckets, 0.99) * 1000:.2f} ms")
    finally:
        relay.stop()
        mock.terminate()
        mock.wait()
        shutil.rmtree(work, ignore_errors=True)
        support.psql(stack, f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')


if __name__ == "__main__":
    main()
