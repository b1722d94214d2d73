"""The pg-failover fault kind (docs/faults.md): a synchronous streaming standby
(tools/stack.sh standby-start), the services on the multi-host DATABASE_URL_HA
(target_session_attrs=read-write), the primary's postmaster killed with kill -9 under load, the
standby promoted; then the figures of the failover: the 5xx window the clients saw and how long
the writes around it waited for their events.
"""

import collections
import subprocess
import threading
import time

import checker
from common import log

# Seconds between the kill and the promotion: what an HA manager needs to notice the loss
# (Patroni's loop_wait and ttl make it longer in production, see docs/operations.md).
PROMOTE_DELAY_S = 2.0


class FailoverInjector(threading.Thread):
    """Kills the primary at `at` seconds after t0, promotes the standby PROMOTE_DELAY_S later.
    Same interface as faults.FaultInjector for run.py (stop_event, quiet_from, counts, errors)."""

    def __init__(self, stack, stack_sh, duration, t0):
        super().__init__(name="failover", daemon=True)
        self.stack_dir = stack["STACK_DIR"]
        self.stack_sh = stack_sh
        self.duration = duration
        self.t0 = t0
        self.at = 0.35 * duration
        self.stop_event = threading.Event()
        self.errors = []
        self.t_kill = None
        self.t_promoted = None

    def _stack(self, *args):
        r = subprocess.run([self.stack_sh, args[0], self.stack_dir] + list(args[1:]),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
        if r.returncode != 0:
            raise RuntimeError("stack.sh %s failed: %s" % (args[0], r.stdout.decode()[-500:]))

    def run(self):
        if self.stop_event.wait(max(0.0, self.t0 + self.at - time.time())):
            return
        try:
            self._stack("pg-kill")  # returns right after the kill
            self.t_kill = time.time() - self.t0
            log("fault t=%5.1fs pg_failover      primary postmaster kill -9" % self.t_kill)
            time.sleep(PROMOTE_DELAY_S)
            self._stack("standby-promote")
            self.t_promoted = time.time() - self.t0
            log("fault t=%5.1fs pg_failover      standby promoted" % self.t_promoted)
        except Exception as e:  # noqa: BLE001 - reported, the run then fails
            self.errors.append("pg_failover: %s" % e)
            log("fault pg_failover FAILED: %s" % e)

    def quiet_from(self):
        # Writes started from 15 s after the kill must be acknowledged (recovery).
        return min(self.at + 15.0, 0.9 * self.duration)

    def counts(self):
        return {"pg_failover": 1} if self.t_promoted is not None else {}


def _pct(xs, q):
    if not xs:
        return 0.0
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def measure(ops, events, err_times, t0, t_kill, t_promoted):
    """Figures of one failover run (times in seconds):
    window   first and last 5xx (or connection error) the clients saw from the kill on, and
             its length;
    waits    for the acknowledged writes that started between 1 s before the kill and the end
             of the window (+1 s): time from the write's first attempt, and from its ack, to
             its event on the topic (max, p50); the baseline is the same for writes started
             before the kill."""
    errs = sorted(t for t, _ in err_times if t >= t_kill)
    first = errs[0] if errs else None
    last = errs[-1] if errs else None
    end = (last if last is not None else t_promoted) + 1.0
    # event arrival per (user, key), in consumption order
    arrivals = collections.defaultdict(list)
    rep = checker.Report()
    for ev in events:
        e = checker.parse_event(ev, rep)
        if e is not None:
            arrivals[(e["user"], checker.event_key(e))].append(ev["ts"])
    by_user = collections.defaultdict(list)
    for op in ops:
        by_user[op["user"]].append(op)
    affected, base = [], []
    missing = 0
    for user, uops in by_user.items():
        must, _, _ = checker.expectations(uops, checker.Report())
        for key, op in must:
            start = t0 + op["t_start"]
            ts = [t for t in arrivals.get((user, key), []) if t >= start - 0.05]
            if not ts:
                missing += 1
                continue
            row = (ts[0] - start, ts[0] - (t0 + op["t_end"]), user)
            if t_kill - 1.0 <= op["t_start"] <= end:
                affected.append(row)
            elif op["t_start"] < t_kill - 1.0:
                base.append(row)
    return {
        "kill_s": round(t_kill, 2),
        "promoted_s": round(t_promoted, 2) if t_promoted is not None else None,
        "first_5xx_s": round(first, 2) if first is not None else None,
        "last_5xx_s": round(last, 2) if last is not None else None,
        "window_s": round(last - first, 2) if errs else 0.0,
        "errors_5xx": len(errs),
        "affected_writes": len(affected),
        "affected_users": len({u for _, _, u in affected}),
        "wait_from_start_max_s": round(max((a for a, _, _ in affected), default=0.0), 2),
        "wait_from_start_p50_s": round(_pct([a for a, _, _ in affected], 0.5), 2),
        "wait_from_ack_max_s": round(max((b for _, b, _ in affected), default=0.0), 2),
        "wait_from_ack_p50_s": round(_pct([b for _, b, _ in affected], 0.5), 2),
        "baseline_from_ack_p50_s": round(_pct([b for _, b, _ in base], 0.5), 3),
        "baseline_from_ack_max_s": round(max((b for _, b, _ in base), default=0.0), 3),
        "unmatched": missing,
    }


def summary_line(m):
    return ("faults: pg-failover: kill at %.1fs, promoted at %.1fs; 5xx window %.1fs "
            "(%s errors, first %s last %s); %d writes of %d users around it waited for their "
            "events max %.1fs p50 %.1fs from first attempt, max %.1fs p50 %.2fs from ack "
            "(before the kill: p50 %.3fs max %.2fs from ack)" % (
                m["kill_s"], m["promoted_s"] or -1, m["window_s"], m["errors_5xx"],
                m["first_5xx_s"], m["last_5xx_s"], m["affected_writes"], m["affected_users"],
                m["wait_from_start_max_s"], m["wait_from_start_p50_s"], m["wait_from_ack_max_s"],
                m["wait_from_ack_p50_s"], m["baseline_from_ack_p50_s"],
                m["baseline_from_ack_max_s"]))
