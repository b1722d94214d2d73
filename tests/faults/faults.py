"""Processes under test and the faults injected into them (docs/faults.md).

Services starts and restarts profile-api and profile-relay processes, each recorded in a pid
file under RUN_DIR/pids so that tools/test-faults.sh can stop them even if Python dies.
FaultInjector runs a schedule of faults (with random jitter and random extra faults) on a
thread: kill -9 of a relay or an API process and its restart, kafka-mock brokers down and up,
partition leader moves, injected retriable Produce errors, Redis stopped and started,
PostgreSQL restarted with fast and immediate shutdown (tools/stack.sh), an API process frozen
then killed right after its writes commit (their relay hints are never sent), and the relay
liveness faults: a relay frozen with SIGSTOP (relay_freeze) and a relay's PostgreSQL
connections black-holed through a loopback proxy (relay_netcut, tests/faults/netcut.py).
"""

import errno
import os
import re
import random
import signal
import subprocess
import threading
import time

import requests

from common import JWT_AUDIENCE, JWT_ISSUER, JWT_SECRET, free_port, log
from netcut import NetCutProxy

# Retriable Kafka errors a broker may answer a Produce request with.
RETRIABLE_PRODUCE_ERRORS = [
    "NOT_ENOUGH_REPLICAS",
    "REQUEST_TIMED_OUT",
    "NOT_LEADER_FOR_PARTITION",
    "LEADER_NOT_AVAILABLE",
    "NOT_ENOUGH_REPLICAS_AFTER_APPEND",
]
KAFKA_BROKERS = 3
KAFKA_PARTITIONS = 6
# Relay liveness faults (docs/faults.md): how long a relay stays frozen / cut off. Both exceed
# the relays' RELAY_TAKEOVER_SECONDS, so the other relay must take over before they end.
FREEZE_SECONDS = float(os.environ.get("FAULTS_FREEZE_SECONDS", "30"))
NETCUT_SECONDS = float(os.environ.get("FAULTS_NETCUT_SECONDS", "20"))
TAKEOVER_SECONDS = int(os.environ.get("FAULTS_TAKEOVER_SECONDS", "10"))
FREEZE_RELAY = 0
NETCUT_RELAY = 1
LIVENESS_FAULTS = ("relay_freeze", "relay_netcut")
# Shortest run that has room for the liveness faults (they block the schedule while they last).
LIVENESS_MIN_DURATION = 90


def kafka_ctl(path, line):
    """Writes one command line to kafka-mock's control FIFO `path`."""
    deadline = time.time() + 5
    while True:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
            break
        except OSError as e:
            if e.errno not in (errno.ENXIO, errno.ENOENT) or time.time() > deadline:
                raise
            time.sleep(0.05)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


class Proc:
    """One service process (profile-api or profile-relay) that can be killed and restarted."""

    def __init__(self, name, binary, env, run_dir, health_path, port_key):
        self.name = name
        self.binary = binary
        self.env = dict(env)
        self.run_dir = run_dir
        self.health_path = health_path
        self.port_key = port_key  # env variable holding the port health is served on
        self.proc = None
        self.starts = 0
        self.log_path = os.path.join(run_dir, "logs", name + ".log")
        self.pid_path = os.path.join(run_dir, "pids", name + ".pid")
        self.lock = threading.Lock()

    @property
    def port(self):
        return int(self.env[self.port_key])

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout=20.0, new_port=False):
        """Starts the process and waits for its health endpoint; retries a few times."""
        with self.lock:
            last = ""
            for attempt in range(4):
                if new_port or (attempt > 0 and self.port_key == "RELAY_METRICS_PORT"):
                    self.env[self.port_key] = str(free_port())
                logf = open(self.log_path, "ab")
                logf.write(("\n==== start %d (attempt %d) at %s ====\n" % (
                    self.starts + 1, attempt + 1, time.strftime("%H:%M:%S"))).encode())
                logf.flush()
                self.proc = subprocess.Popen([self.binary], env=self.env, stdin=subprocess.DEVNULL,
                                             stdout=logf, stderr=subprocess.STDOUT,
                                             start_new_session=True)
                logf.close()
                with open(self.pid_path, "w") as f:
                    f.write("%d\n" % self.proc.pid)
                self.starts += 1
                url = "http://127.0.0.1:%d%s" % (self.port, self.health_path)
                deadline = time.time() + timeout
                while time.time() < deadline:
                    if self.proc.poll() is not None:
                        last = "exited with status %d" % self.proc.returncode
                        break
                    try:
                        if requests.get(url, timeout=1).status_code == 200:
                            return
                    except requests.RequestException as e:
                        last = str(e)
                    time.sleep(0.1)
                else:
                    last = "%s not healthy within %.0fs" % (url, timeout)
                    self._kill(signal.SIGKILL)
                log("%s: start failed (%s), retrying" % (self.name, last))
                time.sleep(0.5)
            raise RuntimeError("%s did not start: %s (log %s)" % (self.name, last, self.log_path))

    def _kill(self, sig):
        if self.proc is None:
            return
        try:
            self.proc.send_signal(sig)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)

    def kill9(self):
        with self.lock:
            self._kill(signal.SIGKILL)

    def stop(self, timeout=15.0):
        """SIGTERM, then SIGKILL after `timeout`. Returns the exit status (None if not running)."""
        with self.lock:
            if self.proc is None:
                return None
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    log("%s: no exit %.0fs after SIGTERM, SIGKILL" % (self.name, timeout))
                    self.proc.kill()
                    self.proc.wait(timeout=5)
            return self.proc.returncode


def as_login(url, role_url):
    """url (postgresql://user@hosts/db?...) with the login user of role_url: the multi-host
    failover URL used by each program under its own role."""
    user = re.match(r"postgresql://([^@:/]+)", role_url).group(1)
    return re.sub(r"^postgresql://[^@/]*@", "postgresql://%s@" % user, url)


class Services:
    """Two API processes and two relays against one stack (stack.env values in `stack`)."""

    def __init__(self, stack, bin_dir, run_dir, apis=2, relays=2, database_url=None):
        os.makedirs(os.path.join(run_dir, "logs"), exist_ok=True)
        os.makedirs(os.path.join(run_dir, "pids"), exist_ok=True)
        self.netcut = None  # NetCutProxy of relay NETCUT_RELAY (attach_netcut_proxy)
        base = {k: v for k, v in os.environ.items()
                if k in ("PATH", "HOME", "LANG", "TZ", "ASAN_OPTIONS", "UBSAN_OPTIONS",
                         "LSAN_OPTIONS")}
        base.update({
            "REDIS_URL": stack["REDIS_URL"],
            "LOG_LEVEL": os.environ.get("FAULTS_LOG_LEVEL", "info"),
        })
        self.apis = []
        for i in range(apis):
            env = dict(base)
            env.update({
                "DATABASE_URL": (as_login(database_url, stack["API_DATABASE_URL"])
                                 if database_url else stack["API_DATABASE_URL"]),
                "HTTP_PORT": str(free_port()),
                "HTTP_THREADS": "2",
                "PG_POOL_MAX": "12",
                "JWT_HS256_SECRET": JWT_SECRET,
                "JWT_ISSUER": JWT_ISSUER,
                "JWT_AUDIENCE": JWT_AUDIENCE,
                "RATE_LIMIT_PER_MINUTE": "0",
                "AUTH_FAILURE_LIMIT_PER_MINUTE": "0",
                "ACCESS_LOG_SAMPLE": "0",
                "SHUTDOWN_DRAIN_SECONDS": "0",
                "OTEL_TRACES_SAMPLER_ARG": "0",
            })
            self.apis.append(Proc("api-%d" % i, os.path.join(bin_dir, "profile-api"), env,
                                  run_dir, "/health/live", "HTTP_PORT"))
        self.relays = []
        for i in range(relays):
            env = dict(base)
            env.update({
                "DATABASE_URL": (as_login(database_url, stack["RELAY_DATABASE_URL"])
                                 if database_url else stack["RELAY_DATABASE_URL"]),
                "KAFKA_BOOTSTRAP_SERVERS": stack["KAFKA_BOOTSTRAP_SERVERS"],
                "KAFKA_TOPIC": stack.get("KAFKA_TOPIC", "profile.events"),
                "RELAY_METRICS_PORT": str(free_port()),
                "RELAY_POLL_INTERVAL_MS": "250",
                "RELAY_TAKEOVER_SECONDS": str(TAKEOVER_SECONDS),
                # The checker matches every event with its outbox row: keep them all.
                "OUTBOX_RETENTION_SECONDS": "86400",
            })
            self.relays.append(Proc("relay-%d" % i, os.path.join(bin_dir, "profile-relay"), env,
                                    run_dir, "/health/live", "RELAY_METRICS_PORT"))

    def api_urls(self):
        return ["http://127.0.0.1:%d" % p.port for p in self.apis]

    def start_all(self):
        for p in self.apis + self.relays:
            p.start()
            log("%s started (pid %d, port %d)" % (p.name, p.proc.pid, p.port))

    def ensure_all(self):
        """Restarts whatever is not running (end of the fault phase). Returns the names of the
        processes found not running: the schedule restarts what it kills, so these exited on
        their own."""
        found = []
        for p in self.apis + self.relays:
            if not p.alive():
                log("%s was not running: starting it" % p.name)
                found.append("%s (status %s)" % (p.name, p.proc.returncode if p.proc else None))
                p.start()
        return found

    def attach_netcut_proxy(self, stack):
        """Puts a NetCutProxy between relay NETCUT_RELAY and PostgreSQL (before start_all).
        Kafka is not proxied: kafka-mock's metadata names its brokers' own addresses, which the
        relay then connects to directly (docs/faults.md)."""
        proxy = NetCutProxy(stack.get("PGHOST", "127.0.0.1"), int(stack["PGPORT"])).start()
        host = "%s:%s" % (stack.get("PGHOST", "127.0.0.1"), stack["PGPORT"])
        relay = self.relays[NETCUT_RELAY]
        if host not in relay.env["DATABASE_URL"]:
            proxy.stop()
            raise RuntimeError("relay_netcut: DATABASE_URL does not name %s" % host)
        relay.env["DATABASE_URL"] = relay.env["DATABASE_URL"].replace(
            host, "127.0.0.1:%d" % proxy.port, 1)
        self.netcut = proxy
        log("%s reaches PostgreSQL through the netcut proxy on port %d" % (relay.name, proxy.port))
        return proxy

    def stop_all(self):
        """Stops everything with SIGTERM; returns {name: exit status}."""
        out = {}
        for p in self.relays + self.apis:
            out[p.name] = p.stop()
        return out

    def total_starts(self):
        return {p.name: p.starts for p in self.apis + self.relays}


class FaultInjector(threading.Thread):
    """Runs the fault schedule over `duration` seconds from `t0`."""

    def __init__(self, services, stack, stack_sh, duration, seed, t0=None):
        super().__init__(name="faults", daemon=True)
        self.services = services
        self.stack = stack
        self.stack_dir = stack["STACK_DIR"]
        self.stack_sh = stack_sh
        self.duration = duration
        self.rng = random.Random(seed ^ 0x5EED)
        self.t0 = t0 if t0 is not None else time.time()
        self.stop_event = threading.Event()
        self.done = []  # (seconds since t0, action, detail, ok)
        self.errors = []
        self.windows = []  # (action, start, end): wall-clock span of each liveness fault
        self.exited_on_own = []
        self.schedule = self._build_schedule()

    # ------------------------------------------------------------------ schedule

    def _build_schedule(self):
        d = self.duration
        base = [
            (0.06, "relay_kill", 0),
            (0.12, "kafka_err", None),
            (0.18, "kafka_down", None),
            (0.24, "redis_restart", None),
            (0.30, "pg_restart", "fast"),
            (0.36, "api_kill", 0),
            (0.42, "kafka_leader", None),
            (0.48, "relay_kill", 1),
            (0.54, "pg_restart", "immediate"),
            (0.60, "kafka_down", None),
            (0.64, "api_kill", 1),
            (0.68, "redis_restart", None),
            (0.72, "kafka_err", None),
            (0.76, "relays_kill_both", None),
            (0.80, "kafka_leader", None),
            (0.45, "api_kill_after_commit", 0),
            (0.70, "api_kill_after_commit", 1),
        ]
        jitter = 0.025 * d
        sched = [(max(0.03 * d, f * d + self.rng.uniform(-jitter, jitter)), a, arg)
                 for f, a, arg in base]
        # Random extra faults, at random times, chosen among the cheap ones.
        extras = ["relay_kill", "kafka_err", "kafka_leader", "api_kill", "kafka_down",
                  "redis_restart", "kafka_rtt", "relay_term", "api_term"]
        for _ in range(max(1, int(d // 15))):
            a = self.rng.choice(extras)
            arg = self.rng.randrange(2) if a in ("relay_kill", "api_kill", "relay_term",
                                                 "api_term") else None
            sched.append((self.rng.uniform(0.05 * d, 0.82 * d), a, arg))
        if d >= LIVENESS_MIN_DURATION:
            # Alone in the schedule while they last (the actions block the fault thread), so the
            # waits they cause are theirs.
            sched.append((0.05 * d, "relay_freeze", FREEZE_RELAY))
            sched.append((0.45 * d, "relay_netcut", NETCUT_RELAY))
        else:
            log("relay_freeze and relay_netcut need --duration >= %d: not run"
                % LIVENESS_MIN_DURATION)
        only = [k for k in os.environ.get("FAULTS_ONLY", "").split(",") if k]
        if only:
            sched = [x for x in sched if x[1] in only]
        if os.environ.get("FAULTS_PRODUCE_ERRORS", "1") == "0":
            # See docs/faults.md, Findings: kafka-mock mishandles pipelined idempotent retries.
            sched = [x for x in sched if x[1] != "kafka_err"]
        sched.sort(key=lambda x: x[0])
        return sched

    def quiet_from(self):
        """Seconds after t0 from which no fault is injected (the recovery window)."""
        return 0.86 * self.duration

    # ------------------------------------------------------------------ actions

    def kafka_ctl(self, line):
        """Writes one command line to kafka-mock's control FIFO."""
        kafka_ctl(self.stack["KAFKA_CONTROL"], line)

    def stack_cmd(self, *args):
        r = subprocess.run([self.stack_sh, args[0], self.stack_dir] + list(args[1:]),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
        if r.returncode != 0:
            raise RuntimeError("stack.sh %s failed: %s" % (" ".join(args), r.stdout.decode()[-500:]))

    def _sleep(self, lo, hi):
        time.sleep(self.rng.uniform(lo, hi))

    def _partitions_held(self, p, want=16, timeout=15.0):
        """Waits (bounded) until relay `p` holds `want` partitions, so that the fault hits a
        relay with users to serve (one just restarted holds none yet). Returns what it holds."""
        deadline = time.time() + timeout
        held = 0
        while True:
            try:
                text = requests.get("http://127.0.0.1:%d/metrics" % p.port, timeout=2).text
                for line in text.splitlines():
                    if line.startswith("profile_relay_partitions_held "):
                        held = int(float(line.split()[1]))
            except requests.RequestException:
                pass
            if held >= want or time.time() > deadline:
                return held
            time.sleep(0.2)

    def relay_freeze(self, idx):
        """SIGSTOP for FREEZE_SECONDS, then SIGCONT: the process keeps its sockets (and so its
        session advisory locks) but stops making progress."""
        p = self.services.relays[idx]
        held = self._partitions_held(p)
        proc = p.proc
        t = time.time()
        proc.send_signal(signal.SIGSTOP)
        try:
            self.stop_event.wait(FREEZE_SECONDS)
        finally:
            proc.send_signal(signal.SIGCONT)
            self.windows.append(("relay_freeze", t, time.time()))
        return "%s (holding %d partitions) SIGSTOP %.0fs, SIGCONT" % (p.name, held, time.time() - t)

    def relay_netcut(self, idx):
        """Black-holes the relay's PostgreSQL connections for NETCUT_SECONDS (no FIN, no reset),
        then forwards again."""
        proxy = self.services.netcut
        if proxy is None:
            raise RuntimeError("no netcut proxy attached")
        p = self.services.relays[idx]
        held = self._partitions_held(p)
        t = time.time()
        proxy.cut()
        try:
            self.stop_event.wait(NETCUT_SECONDS)
        finally:
            proxy.restore()
            self.windows.append(("relay_netcut", t, time.time()))
        return "%s (holding %d partitions) cut from PostgreSQL %.0fs, restored" % (
            p.name, held, time.time() - t)

    def run_action(self, action, arg):
        s = self.services
        if action == "relay_freeze":
            return self.relay_freeze(arg)
        if action == "relay_netcut":
            return self.relay_netcut(arg)
        if action == "relay_kill":
            p = s.relays[arg if arg is not None else self.rng.randrange(len(s.relays))]
            p.kill9()
            self._sleep(0.5, 2.0)
            p.start(new_port=True)
            return "%s kill -9, restarted" % p.name
        if action in ("relay_term", "api_term"):
            procs = s.relays if action == "relay_term" else s.apis
            p = procs[arg if arg is not None else self.rng.randrange(len(procs))]
            st = p.stop()
            p.start(new_port=action == "relay_term")
            return "%s SIGTERM (exit %s), restarted" % (p.name, st)
        if action == "relays_kill_both":
            for p in s.relays:
                p.kill9()
            self._sleep(1.0, 2.5)
            for p in s.relays:
                p.start(new_port=True)
            return "all relays kill -9, restarted"
        if action == "api_kill":
            p = s.apis[arg if arg is not None else self.rng.randrange(len(s.apis))]
            p.kill9()
            self._sleep(0.5, 1.5)
            p.start()
            return "%s kill -9, restarted" % p.name
        if action == "api_kill_after_commit":
            return self.api_kill_after_commit(s.apis[arg])
        if action == "kafka_down":
            b = self.rng.randint(1, KAFKA_BROKERS)
            self.kafka_ctl("down %d" % b)
            self._sleep(2.0, 4.0)
            self.kafka_ctl("up %d" % b)
            return "broker %d down, up" % b
        if action == "kafka_rtt":
            b = self.rng.randint(1, KAFKA_BROKERS)
            ms = self.rng.choice([200, 500, 1500])
            self.kafka_ctl("rtt %d %d" % (b, ms))
            self._sleep(2.0, 4.0)
            self.kafka_ctl("rtt %d 0" % b)
            return "broker %d answers %d ms late, then normal" % (b, ms)
        if action == "kafka_leader":
            moves = []
            for part in range(KAFKA_PARTITIONS):
                b = self.rng.randint(1, KAFKA_BROKERS)
                self.kafka_ctl("leader %s %d %d" % (self.stack.get("KAFKA_TOPIC", "profile.events"),
                                                     part, b))
                moves.append("%d->%d" % (part, b))
            return "leaders " + ",".join(moves)
        if action == "kafka_err":
            n = self.rng.randint(8, 25)
            codes = [self.rng.choice(RETRIABLE_PRODUCE_ERRORS) for _ in range(n)]
            self.kafka_ctl("err %d %s" % (n, " ".join(codes)))
            return "next %d Produce requests fail (%s, ...)" % (n, codes[0])
        if action == "redis_restart":
            self.stack_cmd("redis-stop")
            self._sleep(1.5, 3.0)
            self.stack_cmd("redis-start")
            return "redis stopped, started"
        if action == "pg_restart":
            self.stack_cmd("pg-restart", arg)
            return "PostgreSQL restarted (%s)" % arg
        raise ValueError(action)

    def api_kill_after_commit(self, p):
        """SIGSTOP one API process while the workload writes through it: the statements it had
        sent commit in PostgreSQL, but the process never reads their results, so it never sends
        their relay hint (V007: the NOTIFY follows the commit). kill -9 after 0.3-0.8 s and
        restart. The relays must still publish those rows (their poll finds them)."""
        from common import pg_connect
        conn = pg_connect(self.stack["DATABASE_URL"])
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT clock_timestamp()")
                before = cur.fetchone()[0]
                with p.lock:
                    p.proc.send_signal(signal.SIGSTOP)
                    self._sleep(0.3, 0.8)
                    p.proc.send_signal(signal.SIGKILL)
                    p.proc.wait(timeout=15)
                cur.execute("SELECT count(*) FROM outbox WHERE emitted_at >= %s", [before])
                unhinted = cur.fetchone()[0]
        finally:
            conn.close()
        self._sleep(0.2, 0.5)
        p.start()
        return ("%s SIGSTOP, kill -9, restarted; %d event(s) committed since the stop (those of "
                "its writes got no hint)" % (p.name, unhinted))

    def heal(self):
        """Undoes every lasting fault: brokers up, no injected errors, Redis and all processes up."""
        try:
            self.kafka_ctl("clear")
        except OSError as e:
            self.errors.append("kafka clear: %s" % e)
        try:
            self.stack_cmd("redis-start")
        except Exception as e:  # noqa: BLE001 - reported, the checker then fails
            self.errors.append("redis-start: %s" % e)
        self.exited_on_own = self.services.ensure_all()

    def run(self):
        for at, action, arg in self.schedule:
            if max(at, time.time() - self.t0) >= self.quiet_from():
                continue  # planned in, or delayed into, the recovery window
            while not self.stop_event.is_set() and time.time() - self.t0 < at:
                self.stop_event.wait(min(0.2, at - (time.time() - self.t0)))
            if self.stop_event.is_set():
                break
            t = time.time() - self.t0
            try:
                detail = self.run_action(action, arg)
                self.done.append((round(t, 1), action, detail, True))
                log("fault t=%5.1fs %-16s %s" % (t, action, detail))
            except Exception as e:  # noqa: BLE001 - a failed fault is reported, not fatal
                self.done.append((round(t, 1), action, str(e), False))
                self.errors.append("%s: %s" % (action, e))
                log("fault t=%5.1fs %-16s FAILED: %s" % (t, action, e))
        try:
            self.heal()
        except Exception as e:  # noqa: BLE001
            self.errors.append("heal: %s" % e)
            log("heal FAILED: %s" % e)

    def counts(self):
        c = {}
        for _, action, _, ok in self.done:
            if ok:
                c[action] = c.get(action, 0) + 1
        return c
