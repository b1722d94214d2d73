#!/usr/bin/python3
"""Kafka away for a long time (`make soak`, tools/soak.sh; docs/faults.md, Kafka away).

One profile-api and two profile-relay processes on a migrated stack; history writes through the
API at a steady --rate; after --before seconds every kafka-mock broker goes down for --outage
seconds while writes go on; then the brokers come back and the relays drain while writes go on.
Measured and printed: API answers during the outage, the relay lag gauge against the
ProfileRelayLag alert threshold, outbox rows and bytes per hour of outage, the drain rate, and
the outbox's table and index sizes before the outage and after the drain plus the retention.

Exit status: 0 when the API answered every write, the lag crossed the alert threshold (for an
outage longer than it), the backlog drained and no outbox row is left pending at the end, and
every service exits 0 on SIGTERM; 1 otherwise; 2 on a set-up error.
"""

import argparse
import os
import sys
import threading
import time

import requests

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import load_env_file, log, make_token, pg_query  # noqa: E402
from faults import KAFKA_BROKERS, Services, kafka_ctl  # noqa: E402

LAG_ALERT_SECONDS = 60  # deploy/prometheus/profile-alerts.yaml, ProfileRelayLag


class Writer(threading.Thread):
    """History posts at `rate` per second over `users`, spread over a few threads."""

    def __init__(self, api_url, users, rate, threads=4):
        super().__init__(daemon=True)
        self.api_url, self.users, self.rate, self.nthreads = api_url, users, rate, threads
        self.tokens = {u: make_token(u) for u in users}
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.ok = self.failed = 0
        self.errors = []

    def _one(self, idx):
        s = requests.Session()
        period = self.nthreads / float(self.rate)
        nxt = time.time()
        i = idx
        while not self.stop_event.is_set():
            u = self.users[i % len(self.users)]
            i += self.nthreads
            body = {"videoId": "soak%d" % (i % 50), "positionSeconds": i % 7200}
            try:
                r = s.post("%s/profiles/%s/history" % (self.api_url, u), json=body, timeout=10,
                           headers={"Authorization": "Bearer " + self.tokens[u],
                                    "Idempotency-Key": "soak-%d-%d-%f" % (idx, i, time.time())})
                good = r.status_code == 201
                err = None if good else "status %d" % r.status_code
            except requests.RequestException as e:
                good, err = False, str(e)
            with self.lock:
                if good:
                    self.ok += 1
                else:
                    self.failed += 1
                    if len(self.errors) < 5:
                        self.errors.append(err)
            nxt += period
            time.sleep(max(0.0, nxt - time.time()))

    def run(self):
        ts = [threading.Thread(target=self._one, args=(k,), daemon=True)
              for k in range(self.nthreads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()


def sizes(dburl):
    row = pg_query(dburl, "SELECT pg_table_size('outbox'), pg_indexes_size('outbox'),"
                          " (SELECT count(*) FROM outbox WHERE published_at IS NULL),"
                          " (SELECT count(*) FROM outbox)", timeout=30)[0]
    return {"table": row[0], "indexes": row[1], "pending": row[2], "rows": row[3]}


def lag(relays):
    worst = 0.0
    for p in relays:
        try:
            text = requests.get("http://127.0.0.1:%d/metrics" % p.port, timeout=2).text
        except requests.RequestException:
            continue
        for line in text.splitlines():
            if line.startswith("profile_relay_oldest_pending_age_seconds "):
                worst = max(worst, float(line.split()[1]))
    return worst


def mb(n):
    return "%.1f MB" % (n / 1048576.0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--stack-env", required=True)
    ap.add_argument("--stack-sh", required=True)
    ap.add_argument("--bin-dir", required=True)
    ap.add_argument("--run-dir", required=True)
    ap.add_argument("--rate", type=float, default=200)
    ap.add_argument("--before", type=float, default=None,
                    help="seconds of writes before the outage (default: two retention rounds, "
                         "so that the outbox is at its steady size)")
    ap.add_argument("--outage", type=float, default=3600)
    ap.add_argument("--retention", type=int, default=30)
    ap.add_argument("--users", type=int, default=500)
    args = ap.parse_args()
    if args.before is None:
        args.before = 2 * args.retention + 15

    stack = load_env_file(args.stack_env)
    dburl = stack["DATABASE_URL"]
    services = Services(stack, args.bin_dir, args.run_dir, apis=1, relays=2)
    for p in services.relays:
        p.env["OUTBOX_RETENTION_SECONDS"] = str(args.retention)
    ctl = stack["KAFKA_CONTROL"]
    problems = []
    writer = None
    try:
        try:
            services.start_all()
        except Exception as e:  # noqa: BLE001
            log("set-up failed: %s" % e)
            return 2
        users = ["soak-%d-u%04d" % (os.getpid(), i) for i in range(args.users)]
        writer = Writer(services.api_urls()[0], users, args.rate)
        writer.start()
        time.sleep(args.before)
        before = sizes(dburl)
        log("before: table %s, indexes %s, %d rows, %d pending" % (
            mb(before["table"]), mb(before["indexes"]), before["rows"], before["pending"]))

        ok0 = writer.ok
        t_down = time.time()
        for b in range(1, KAFKA_BROKERS + 1):
            kafka_ctl(ctl, "down %d" % b)
        log("all %d brokers down for %.0fs, writes go on at %.0f/s" % (
            KAFKA_BROKERS, args.outage, args.rate))
        max_lag = 0.0
        lag_alert_at = None
        while time.time() - t_down < args.outage:
            time.sleep(min(5.0, max(0.1, args.outage - (time.time() - t_down))))
            max_lag = max(max_lag, lag(services.relays))
            if lag_alert_at is None and max_lag > LAG_ALERT_SECONDS:
                lag_alert_at = time.time() - t_down
        during = sizes(dburl)
        acked_during = writer.ok - ok0
        failed_during = writer.failed
        outage = time.time() - t_down
        for b in range(1, KAFKA_BROKERS + 1):
            kafka_ctl(ctl, "up %d" % b)
        t_up = time.time()
        ok_up = writer.ok
        log("brokers up after %.0fs: %d writes acked during the outage, %d failed; backlog %d "
            "rows; table %s, indexes %s; max lag %.0fs" % (
                outage, acked_during, failed_during, during["pending"], mb(during["table"]),
                mb(during["indexes"]), max_lag))
        per_hour = 3600.0 / outage
        print("soak: outage %.0fs at %.0f writes/s: %d rows pending (%.0f rows/hour), outbox "
              "table +%s, indexes +%s (%s per hour)" % (
                  outage, args.rate, during["pending"], during["pending"] * per_hour,
                  mb(during["table"] - before["table"]), mb(during["indexes"] - before["indexes"]),
                  mb((during["table"] + during["indexes"] - before["table"] - before["indexes"])
                     * per_hour)))
        drained_at = None
        while time.time() - t_up < max(120.0, outage):
            if sizes(dburl)["pending"] == 0:
                drained_at = time.time() - t_up
                break
            time.sleep(0.5)
        if drained_at is None:
            problems.append("the backlog did not drain")
        else:
            published = during["pending"] + (writer.ok - ok_up)
            print("soak: drained %d backlog rows (+%d live writes meanwhile) in %.1fs: %.0f "
                  "events/s" % (during["pending"], writer.ok - ok_up, drained_at,
                                published / max(drained_at, 0.001)))
        # Retention deletes published rows older than --retention; give it two rounds.
        time.sleep(2 * args.retention + 15)
        writer.stop_event.set()
        writer.join(15)
        after = sizes(dburl)
        print("soak: outbox before the outage table %s indexes %s (%d rows); after the drain and "
              "retention table %s (%+.0f %%) indexes %s (%+.0f %%) (%d rows)" % (
                  mb(before["table"]), mb(before["indexes"]), before["rows"], mb(after["table"]),
                  100.0 * (after["table"] - before["table"]) / max(before["table"], 1),
                  mb(after["indexes"]),
                  100.0 * (after["indexes"] - before["indexes"]) / max(before["indexes"], 1),
                  after["rows"]))
        print("soak: API during the outage: %d writes acked, %d failed; relay lag max %.0fs, "
              "ProfileRelayLag (> %d s) %s" % (
                  acked_during, failed_during, max_lag, LAG_ALERT_SECONDS,
                  "crossed after %.0fs" % lag_alert_at if lag_alert_at is not None
                  else "not crossed"))
        if writer.failed:
            problems.append("%d writes failed: %s" % (writer.failed, writer.errors))
        if outage > LAG_ALERT_SECONDS + 10 and lag_alert_at is None:
            problems.append("the lag gauge never crossed the alert threshold")
        if after["pending"] != 0:
            problems.append("%d rows still pending" % after["pending"])
    finally:
        if writer is not None:
            writer.stop_event.set()
        try:
            kafka_ctl(ctl, "clear")
        except OSError:
            pass
        exits = services.stop_all()
    bad = {k: v for k, v in exits.items() if v != 0}
    if bad:
        problems.append("a service did not exit 0 on SIGTERM: %s" % bad)
    for p in problems:
        print("soak: FAIL: %s" % p)
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
