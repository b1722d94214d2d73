#!/usr/bin/python3
"""Sustained writes with the relay draining at the same time (docs/performance.md, "Writes at
the database's limit"): what the write path keeps up for minutes when every event also costs
the relay's mark UPDATE and, once OUTBOX_RETENTION_SECONDS have passed, its retention DELETE.

Against a running stack (tools/stack.sh; STACK_ENV names its stack.env, the stack's kafka-mock
receives the events), in a database of its own (write_sustained, migrated, dropped at the end),
it loads USERS users (bench/load.sql), starts one profile-api
(limiter off) and one profile-relay, and runs wrk POST watchlist at CONNS connections for
SECONDS. Every SAMPLE seconds it prints the API's write rate, the relay's publish rate, the
unpublished backlog and the outbox's table and index sizes; at the end a summary line:

  sustained: W writes/s through the API, P events/s published, backlog B at the end;
  outbox after S s: table T MB, indexes I MB (R rows)

  STACK_ENV=.local/bench/stack.env PROFILE_BIN_DIR=build/bin \
      bench/write_sustained.py [--seconds 600] [--conns 64] [--users 10000] [--retention 60]
"""
import argparse
import os
import re
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
import requests  # noqa: E402

import support  # noqa: E402
from run import start_api, token, wrk  # noqa: E402

SIZES = """
SELECT pg_table_size('outbox'), pg_indexes_size('outbox'),
       (SELECT count(*) FROM outbox), (SELECT count(*) FROM outbox WHERE published_at IS NULL)
"""


def counter(text, name):
    return sum(float(m.group(1)) for m in
               re.finditer(rf"^{name}(?:{{[^}}]*}})? ([0-9.e+]+)$", text, re.M))


def posts(port):
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    return sum(float(m.group(1)) for m in re.finditer(
        r'^profile_api_requests_total\{route="/profiles/\{userId\}/watchlist",method="POST",'
        r'status="2xx"\} ([0-9.e+]+)$', text, re.M))


def published(port):
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    return counter(text, "profile_relay_events_published_total")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=600)
    ap.add_argument("--conns", type=int, default=64)
    ap.add_argument("--users", type=int, default=10000)
    ap.add_argument("--retention", type=int, default=60,
                    help="OUTBOX_RETENTION_SECONDS of the relay (published rows older go)")
    ap.add_argument("--sample", type=int, default=30)
    args = ap.parse_args()
    stack = support.load_stack_env(os.environ["STACK_ENV"])
    url = support.new_database(stack, "write_sustained")
    db = url.rsplit("/", 1)[1]
    subprocess.run(["psql", "-X", "-q", "-v", f"users={args.users}", "-f",
                    os.path.join(ROOT, "bench", "load.sql"), url], check=True, capture_output=True)
    api, api_port = start_api(stack, {"DATABASE_URL": support.role_url(url, "api")})
    relay_port = support.free_port()
    relay = support.spawn([support.bin_path("profile-relay")], {
        "DATABASE_URL": support.role_url(url, "relay"),
        "REDIS_URL": stack["REDIS_URL"], "KAFKA_BOOTSTRAP_SERVERS": stack["KAFKA_BOOTSTRAP_SERVERS"],
        "KAFKA_TOPIC": stack["KAFKA_TOPIC"],
        "RELAY_METRICS_PORT": relay_port, "OUTBOX_RETENTION_SECONDS": args.retention,
        "LOG_LEVEL": "warn"}, ready_url=f"http://127.0.0.1:{relay_port}/health/ready")
    result = {}
    try:
        t0 = support.psql(stack, SIZES, db=db)[0]
        print(f"before: outbox table {int(t0[0]) / 1e6:.1f} MB, indexes {int(t0[1]) / 1e6:.1f} MB, "
              f"{t0[2]} rows", flush=True)
        w0, p0, start = posts(api_port), published(relay_port), time.monotonic()

        def load():
            result["wrk"] = wrk(api_port, "post_watchlist", args.seconds, args.conns, 2,
                                args.users, token(["admin"]))
        th = threading.Thread(target=load)
        th.start()
        last = (w0, p0, start)
        while th.is_alive():
            th.join(args.sample)
            now, w, p = time.monotonic(), posts(api_port), published(relay_port)
            size = support.psql(stack, SIZES, db=db)[0]
            print(f"t={now - start:5.0f}s writes/s {(w - last[0]) / (now - last[2]):7.0f} "
                  f"published/s {(p - last[1]) / (now - last[2]):7.0f} backlog {size[3]:>8} "
                  f"outbox table {int(size[0]) / 1e6:7.1f} MB indexes {int(size[1]) / 1e6:7.1f} MB "
                  f"rows {size[2]}", flush=True)
            last = (w, p, now)
        elapsed = time.monotonic() - start
        w1, p1 = posts(api_port), published(relay_port)
        size = support.psql(stack, SIZES, db=db)[0]
        print(f"sustained: {(w1 - w0) / elapsed:.0f} writes/s through the API, "
              f"{(p1 - p0) / elapsed:.0f} events/s published, backlog {size[3]} at the end; "
              f"outbox after {elapsed:.0f} s: table {int(size[0]) / 1e6:.1f} MB, indexes "
              f"{int(size[1]) / 1e6:.1f} MB ({size[2]} rows); wrk p50 {result['wrk']['p50_ms']:.2f} "
              f"ms, p99 {result['wrk']['p99_ms']:.2f} ms, non-2xx {int(result['wrk']['non2xx'])}",
              flush=True)
    finally:
        api.stop()
        relay.stop()
        support.psql(stack, f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


if __name__ == "__main__":
    main()
