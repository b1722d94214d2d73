#!/usr/bin/python3
"""Orchestrates one fault-injection run (tools/test-faults.sh calls it; docs/faults.md):
services up, consumer, workload + faults for --duration seconds, recovery, drain, checker,
then the planted fault, which the checker must catch. With --kind pg-failover: the services
on the stack's multi-host DATABASE_URL_HA, one failover of PostgreSQL to its synchronous standby
(tests/faults/failover.py) instead of the mixed schedule, no process restarted by the harness,
and the failover's figures (5xx window, waits for events); no planted fault.

Exit status: 0 when the main run has no violation AND the checker fails the planted fault as
expected; 1 otherwise; 2 on a set-up error.
"""

import argparse
import calendar
import os
import random
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import checker  # noqa: E402
from common import load_env_file, log, make_token, pg_query, write_json, write_jsonl  # noqa: E402
from failover import FailoverInjector, measure, summary_line  # noqa: E402
from faults import LIVENESS_FAULTS, TAKEOVER_SECONDS, FaultInjector, Services  # noqa: E402
from planted import plant  # noqa: E402
from workload import READ_PATHS, EventConsumer, Workload  # noqa: E402


def drain(database_url, consumer, timeout):
    """Waits until no outbox row is pending and the consumer has read up to the high
    watermarks. Returns (drained, seconds, pending)."""
    t0 = time.time()
    pending = None
    while time.time() - t0 < timeout:
        try:
            pending = pg_query(database_url,
                               "SELECT count(*) FROM outbox WHERE published_at IS NULL",
                               timeout=10)[0][0]
        except Exception as e:  # noqa: BLE001 - retried until the deadline
            log("drain: %s" % e)
            pending = None
        if pending == 0:
            try:
                highs = consumer.high_watermarks()
            except Exception as e:  # noqa: BLE001
                log("drain: watermarks: %s" % e)
                highs = None
            while highs is not None and time.time() - t0 < timeout:
                if consumer.caught_up(highs):
                    return True, time.time() - t0, 0
                time.sleep(0.2)
        time.sleep(0.3)
    return False, time.time() - t0, pending


# A liveness fault passes when every event committed during it reached the topic within the
# takeover time plus this margin (a lease tick, a claim, a produce, CPU shared with the suite);
# without a takeover the wait is the whole fault (30 s frozen, 20 s cut).
LIVENESS_MARGIN_S = 6.0


def _ce_time(s):
    """ce_time (2026-01-02T03:04:05.678Z) as seconds since the epoch."""
    return calendar.timegm(time.strptime(s[:19], "%Y-%m-%dT%H:%M:%S")) + int(s[20:23]) / 1000.0


def liveness_waits(windows, events):
    """For each liveness fault window: how long the events committed during it waited between
    their commit (ce_time) and the consumer reading their first copy. Returns report lines and
    problems."""
    first = {}  # ce_id -> (user, commit time, first consumed); the checker validates records
    for ev in sorted(events, key=lambda e: e["ts"]):
        h = {k: v for k, v in ev.get("h") or []}
        ce_id, ce_time = h.get("ce_id"), h.get("ce_time")
        if ce_id and ce_id not in first and checker.TIME_RE.match(ce_time or ""):
            first[ce_id] = (ev.get("k"), _ce_time(ce_time), ev["ts"])
    lines, problems = [], []
    for kind, start, end in windows:
        waits = sorted((ts - made, user) for user, made, ts in first.values()
                       if start <= made <= end)
        if not waits:
            problems.append("%s: no event was committed during the fault" % kind)
            continue
        slow = {u for w, u in waits if w > 2.0}
        worst = waits[-1][0]
        lines.append("faults: %s %.0fs: %d events committed during it, waited p50 %.2fs p99 %.2fs "
                     "max %.2fs; %d user(s) waited over 2 s (takeover after %d s)" % (
                         kind, end - start, len(waits), waits[len(waits) // 2][0],
                         waits[min(len(waits) - 1, int(len(waits) * 0.99))][0], worst, len(slow),
                         TAKEOVER_SECONDS))
        if worst > TAKEOVER_SECONDS + LIVENESS_MARGIN_S:
            problems.append("%s: an event waited %.1fs, over the takeover time %d s + %.0f s"
                            % (kind, worst, TAKEOVER_SECONDS, LIVENESS_MARGIN_S))
    return lines, problems


def progress(wl, consumer, t0, stop):
    while not stop.wait(10):
        s = wl.stats()
        log("t=%3.0fs acked=%d uncertain=%d rejected=%d retries=%d events=%d" % (
            time.time() - t0, s.get("writes_acked", 0), s.get("writes_uncertain", 0),
            s.get("writes_rejected", 0), s.get("retries", 0), len(consumer.events)))


def run_planted(wl, services, consumer, dburl, run_id, ops, problems):
    """The planted fault: an outbox row deleted behind the relays' back must fail the check."""
    planted_ok = False
    puser = "f%s-planted" % run_id
    wl.tokens[puser] = make_token(puser)
    try:
        pops = plant(wl, services, dburl, puser)
        pdrained, psecs, _ = drain(dburl, consumer, 30)
        pdb = checker.collect_db(dburl)
        pevents = consumer.snapshot()
        prep = checker.check(ops + pops, pevents, pdb, None)
        planted_ok = (not prep.ok()) and prep.c["lost"] >= 1 and prep.c["gaps"] >= 1
        print("faults: planted fault (outbox row of %s seq 2 deleted): checker %s: %s" % (
            puser, "FAILED as expected" if planted_ok else "did NOT catch it",
            prep.summary()[len("faults: "):]))
        for d in prep.details.get("lost", [])[:3] + prep.details.get("gaps", [])[:3]:
            print("faults: planted: %s" % d)
    except Exception as e:  # noqa: BLE001
        print("faults: planted fault could not be run: %s" % e)
    if not planted_ok:
        problems.append("the planted fault was not caught")


def main():
    # SIGTERM (tools/test-faults.sh interrupted, or its timeout): unwind so that the services
    # are stopped by the finally below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    ap = argparse.ArgumentParser()
    ap.add_argument("--stack-env", required=True)
    ap.add_argument("--stack-sh", required=True)
    ap.add_argument("--bin-dir", required=True)
    ap.add_argument("--run-dir", required=True)
    ap.add_argument("--duration", type=float, default=60)
    ap.add_argument("--users", type=int, default=300)
    ap.add_argument("--threads", type=int, default=16)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--drain-timeout", type=float, default=60)
    ap.add_argument("--kind", choices=("mixed", "pg-failover"), default="mixed")
    args = ap.parse_args()
    failover = args.kind == "pg-failover"

    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    run_id = "%06x" % (seed % (1 << 24))
    stack = load_env_file(args.stack_env)
    dburl = stack["DATABASE_URL"]  # the checker's (owner) connection
    services_url = None  # None: each program's own URL from stack.env
    if failover:
        if not stack.get("DATABASE_URL_HA"):
            log("--kind pg-failover needs a standby (tools/stack.sh standby-start)")
            return 2
        dburl = services_url = stack["DATABASE_URL_HA"]  # Services: under each program's role
    for b in ("profile-api", "profile-relay"):
        if not os.access(os.path.join(args.bin_dir, b), os.X_OK):
            log("missing %s in %s" % (b, args.bin_dir))
            return 2
    log("run %s (%s): seed=%d duration=%.0fs users=%d threads=%d run dir %s" % (
        run_id, args.kind, seed, args.duration, args.users, args.threads, args.run_dir))

    services = Services(stack, args.bin_dir, args.run_dir, database_url=services_url)
    consumer = None
    try:
        try:
            services.attach_netcut_proxy(stack)
            services.start_all()
            consumer = EventConsumer(stack["KAFKA_BOOTSTRAP_SERVERS"],
                                     stack.get("KAFKA_TOPIC", "profile.events"), run_id)
            consumer.start()
        except Exception as e:  # noqa: BLE001
            log("set-up failed: %s" % e)
            return 2

        users = ["f%s-u%03d" % (run_id, i) for i in range(args.users)]
        t0 = time.time()
        wl = Workload(services.api_urls(), users, args.threads, seed, t0)
        if failover:
            inj = FailoverInjector(stack, args.stack_sh, args.duration, t0)
        else:
            inj = FaultInjector(services, stack, args.stack_sh, args.duration, seed, t0)
        stop_progress = threading.Event()
        threading.Thread(target=progress, args=(wl, consumer, t0, stop_progress),
                         daemon=True).start()
        wl.start()
        inj.start()
        time.sleep(max(0.0, t0 + args.duration - time.time()))
        inj.stop_event.set()
        inj.join(60)
        finished = wl.stop()
        stop_progress.set()
        # No process may exit on its own (the failover run restarts nothing).
        exited = [p.name for p in services.apis + services.relays
                  if failover and (not p.alive() or p.starts != 1)]
        if not finished:
            log("some clients did not finish their last write in time")
        # Recovery: writes started in the quiet window after the last fault must be acked.
        quiet = inj.quiet_from()
        recovered = sum(1 for o in wl.ops if o["t_start"] >= quiet and o["outcome"] == "acked")
        stats = wl.stats()
        log("workload done: %s" % " ".join("%s=%d" % kv for kv in sorted(stats.items())))
        log("faults injected: %s%s" % (
            " ".join("%s=%d" % kv for kv in sorted(inj.counts().items())),
            (" (failed: %s)" % "; ".join(inj.errors)) if inj.errors else ""))

        drained, secs, pending = drain(dburl, consumer, args.drain_timeout)
        log("drain: %s in %.1fs (pending %s, consumed %d records)" % (
            "done" if drained else "NOT done", secs, pending, len(consumer.events)))
        time.sleep(1.0)  # let the relays' cache invalidations land
        db = checker.collect_db(dburl)
        cache = checker.collect_cache(services.api_urls(), wl.tokens, dburl, stack["REDIS_URL"],
                                      users, READ_PATHS)
        events = consumer.snapshot()
        ops = list(wl.ops)
        write_jsonl(os.path.join(args.run_dir, "ops.jsonl"), ops)
        write_jsonl(os.path.join(args.run_dir, "events.jsonl"), events)
        write_json(os.path.join(args.run_dir, "db.json"), db)
        write_json(os.path.join(args.run_dir, "cache.json"), cache)
        rep = checker.check(ops, events, db, cache)
        if consumer.offset_jumps:
            log("consumer saw %d offset jumps (records gone before they were read)"
                % consumer.offset_jumps)
        checker.print_report(rep)
        main_ok = rep.ok()
        problems = []
        if not main_ok:
            problems.append("violations %s" % rep.violations())
        if recovered == 0:
            problems.append("no write was acknowledged after the faults stopped")
        if stats.get("writes_acked", 0) < 100:
            problems.append("only %d acknowledged writes" % stats.get("writes_acked", 0))
        if inj.errors:
            problems.append("faults that could not be injected: %s" % inj.errors)
        if not drained:
            problems.append("the drain did not finish in %.0fs" % args.drain_timeout)
        if exited:
            problems.append("processes exited on their own: %s" % exited)
        if failover:
            if inj.t_promoted is None:
                problems.append("the failover did not happen")
            else:
                fig = measure(ops, events, list(wl.err_times), t0, inj.t_kill, inj.t_promoted)
                write_json(os.path.join(args.run_dir, "failover.json"), fig)
                print(summary_line(fig))
                if fig["unmatched"]:
                    problems.append("%d acknowledged writes without an event" % fig["unmatched"])
        if not failover:
            if inj.exited_on_own:
                problems.append("process(es) exited on their own: %s" % inj.exited_on_own)
            lv_lines, lv_problems = liveness_waits(inj.windows, events)
            for line in lv_lines:
                print(line)
            problems.extend(lv_problems)
            ran = {w[0] for w in inj.windows}
            for kind in LIVENESS_FAULTS:
                if kind not in ran and any(a == kind for _, a, _ in inj.schedule):
                    problems.append("%s was scheduled but did not run" % kind)
        if consumer.offset_jumps:
            problems.append("the consumer skipped offsets %d time(s): records expired before it "
                            "read them, so the check is incomplete" % consumer.offset_jumps)

        # ---------------------------------------------------------------- planted fault
        # The failover run plants nothing: the mixed run proves that the checker catches a loss.
        if not failover:
            run_planted(wl, services, consumer, dburl, run_id, ops, problems)

        # only processes still running get the SIGTERM; one the schedule killed keeps its -9
        running = {p.name for p in services.apis + services.relays if p.alive()}
        exits = services.stop_all()
        bad_exits = {k: v for k, v in exits.items() if k in running and v != 0}
        if bad_exits:
            problems.append("a service did not exit 0 on SIGTERM: %s" % bad_exits)
        for p in problems:
            print("faults: FAIL: %s" % p)
        print(rep.summary())
        sys.stdout.flush()
        return 0 if not problems else 1
    finally:
        if consumer is not None:
            consumer.stop_event.set()
            consumer.join(10)
        services.stop_all()
        if services.netcut is not None:
            services.netcut.stop()


if __name__ == "__main__":
    sys.exit(main())
