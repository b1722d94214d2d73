"""Helpers for the integration tests (run them with /usr/bin/python3).

Everything here talks to the local stack described by a `stack` dict (the KEY=VALUE lines of
tools/stack.sh's stack.env, see conftest.py) and to the real binaries in PROFILE_BIN_DIR.
"""
import atexit
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import psycopg2
import requests

REPO = Path(__file__).resolve().parents[2]
MIGRATIONS_DIR = REPO / "migrations"

_handed_out_ports = set()
# Output files of spawned programs; removed when the test session's interpreter exits.
_OUT_DIR = tempfile.mkdtemp(prefix="profile-it-")
atexit.register(shutil.rmtree, _OUT_DIR, True)


def load_stack_env(path):
    """Parses a stack.env file (KEY=VALUE lines; blank and # lines ignored) into a dict."""
    env = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#") or "=" not in line:
                continue
            key, value = line.split("=", 1)
            env[key] = value
    return env


def bin_path(name):
    """Path of a built program: $PROFILE_BIN_DIR/name (default <repo>/build/bin/name)."""
    return os.path.join(os.environ.get("PROFILE_BIN_DIR", str(REPO / "build" / "bin")), name)


def free_port():
    """A port below 32768 (outside the ephemeral range) that is free on 127.0.0.1 now and was
    not returned before in this session."""
    for _ in range(1000):
        port = random.randint(20000, 32767)
        if port in _handed_out_ports:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out_ports.add(port)
        return port
    raise RuntimeError("no free port below 32768")


def wait_http(url, timeout=15, proc=None):
    """Polls url until it answers with a status below 500 and returns that response.

    A 5xx (e.g. 503 from /health/ready while starting) counts as not ready. Raises TimeoutError
    after `timeout` seconds, or RuntimeError at once if `proc` (a Popen) has exited meanwhile.
    """
    deadline = time.monotonic() + timeout
    last = None
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} was ready")
        try:
            resp = requests.get(url, timeout=1)
            if resp.status_code < 500:
                return resp
            last = f"HTTP {resp.status_code}"
        except requests.RequestException as e:
            last = repr(e)
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{url} not ready after {timeout}s (last: {last})")
        time.sleep(0.05)


class Proc:
    """A spawned program whose stdout and stderr go to one temporary file."""

    def __init__(self, args, env):
        self.args = [str(a) for a in args]
        fd, self.log_path = tempfile.mkstemp(
            prefix=os.path.basename(self.args[0]) + "-", suffix=".log", dir=_OUT_DIR)
        # A session of its own: a signal meant for the test run does not reach it directly.
        with os.fdopen(fd, "wb") as out:
            self.proc = subprocess.Popen(self.args, env=env, stdin=subprocess.DEVNULL,
                                         stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)

    @property
    def pid(self):
        return self.proc.pid

    def stop(self, sig=signal.SIGTERM, timeout=10):
        """Sends sig (unless already exited), waits up to timeout seconds, then SIGKILL.
        Returns the exit status (negative signal number if killed by a signal)."""
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(sig)
                return self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill9()
            except ProcessLookupError:
                pass
        return self.proc.wait()

    def kill9(self):
        """SIGKILL without waiting for a clean shutdown (crash tests); reaps the process."""
        if self.proc.poll() is None:
            try:
                self.proc.kill()
            except ProcessLookupError:
                pass
        self.proc.wait()

    def output(self):
        """Everything the program wrote to stdout and stderr so far."""
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def __repr__(self):
        return f"<Proc pid={self.proc.pid} {' '.join(self.args)}>"


def spawn(args, env, ready_url=None, ready_timeout=15):
    """Starts args with os.environ updated by env (a None value removes a variable).

    With ready_url, waits until it answers (see wait_http); if that fails, the process is
    stopped and RuntimeError carries its output. Call .stop() in teardown.
    """
    full_env = dict(os.environ)
    for key, value in (env or {}).items():
        if value is None:
            full_env.pop(key, None)
        else:
            full_env[key] = str(value)
    p = Proc(args, full_env)
    if ready_url is not None:
        try:
            wait_http(ready_url, ready_timeout, proc=p.proc)
        except (TimeoutError, RuntimeError) as e:
            p.stop(timeout=5)
            raise RuntimeError(f"{p}: {e}\n--- output ---\n{p.output()}") from None
    return p


# The database roles of migrations/V004__roles.sql as tools/stack.sh creates them (trust
# authentication, no passwords): "owner" migrates and owns everything, "api" and "relay" are what
# the programs connect as, "admin" is the local superuser (CREATE DATABASE, test set-up).
ROLE_USERS = {"owner": "profile_owner", "api": "profile_app", "relay": "profile_relay",
              "admin": "profile"}


def role_url(url, role):
    """url with its user replaced by the login of role: a URI postgresql://user[:pw]@host/db
    (a password is kept) or a key/value string with user=..."""
    m = re.fullmatch(r"postgresql://[^@/:]*(:[^@/]*)?@(.+)", url)
    if m is not None:
        return f"postgresql://{ROLE_USERS[role]}{m.group(1) or ''}@{m.group(2)}"
    if re.search(r"(^|\s)user=\S+", url):
        return re.sub(r"(^|\s)user=\S+", rf"\1user={ROLE_USERS[role]}", url)
    raise ValueError(f"unexpected database URL {url!r}")


def database_url(stack, db=None, role="owner"):
    """The stack's DATABASE_URL (the owner's), or the same server with database db, as role
    (see ROLE_USERS)."""
    if db is None:
        return role_url(stack["DATABASE_URL"], role)
    return f"postgresql://{ROLE_USERS[role]}@{stack['PGHOST']}:{stack['PGPORT']}/{db}"


def psql(stack, sql, db=None, params=None):
    """Runs sql as the local superuser on the stack's database (or database db of its server);
    see run_sql. Tests use it to set up and inspect, never to stand in for a program."""
    return run_sql(database_url(stack, db, role="admin"), sql, params)


def run_sql(url, sql, params=None):
    """Runs sql (autocommit, one new connection to url) and returns the rows as a list of
    tuples ([] for statements that return none)."""
    conn = psycopg2.connect(url)
    try:
        conn.set_session(autocommit=True)
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall() if cur.description is not None else []
    finally:
        conn.close()


def _migration_version(path):
    m = re.match(r"V(\d+)__", path.name)
    return int(m.group(1)) if m else -1


def apply_migrations(url):
    """Applies migrations/ to url: bin/profile-migrate when built, else each V*.sql in version
    order with psql (a fallback that records no history). Raises RuntimeError on failure."""
    migrate_bin = bin_path("profile-migrate")
    env = dict(os.environ, DATABASE_URL=url, MIGRATIONS_DIR=str(MIGRATIONS_DIR))
    if os.access(migrate_bin, os.X_OK):
        steps = [[migrate_bin]]
    else:
        files = sorted((p for p in MIGRATIONS_DIR.glob("V*.sql") if _migration_version(p) >= 0),
                       key=_migration_version)
        steps = [["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url, "-f", str(f)]
                 for f in files]
    for cmd in steps:
        r = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                           text=True, timeout=300)
        if r.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} exited {r.returncode}:\n{r.stdout}{r.stderr}")


def new_database(stack, name, migrate=True):
    """Creates database name on the stack, owned by profile_owner (dropping a leftover of the
    same name first), and returns the owner's URL of it; with migrate=True applies migrations/ to
    it (apply_migrations). role_url(url, "api"/"relay") gives the programs' URLs."""
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
        raise ValueError(f"bad database name {name!r}")
    psql(stack, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    psql(stack, f'CREATE DATABASE "{name}" OWNER "{ROLE_USERS["owner"]}"')
    url = database_url(stack, name)
    if migrate:
        apply_migrations(url)
    return url


def kafka_consumer(stack, topic, group=None):
    """A confluent_kafka.Consumer reading topic from the beginning. Close it when done.

    group=None: a fresh group id and assign() of every partition at the earliest offset (no
    group join, so the first message arrives in well under a second instead of ~3 s).
    group given: subscribe() with that group id (group semantics, committed offsets win;
    auto.offset.reset=earliest). A topic that does not exist yet is auto-created on the mock.
    """
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    c = Consumer({
        "bootstrap.servers": stack["KAFKA_BOOTSTRAP_SERVERS"],
        "group.id": group or f"test-{uuid.uuid4()}",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "allow.auto.create.topics": True,
        "topic.metadata.refresh.interval.ms": 1000,
        "session.timeout.ms": 6000,
    })
    if group is not None:
        c.subscribe([topic])
        return c
    deadline = time.monotonic() + 15
    while True:
        md = c.list_topics(topic, timeout=10).topics.get(topic)
        if md is not None and md.error is None and md.partitions:
            break
        if time.monotonic() >= deadline:
            c.close()
            raise RuntimeError(f"topic {topic} has no partitions: {md and md.error}")
        time.sleep(0.1)
    c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in sorted(md.partitions)])
    return c


def kafka_control(stack, command, timeout=5):
    """Writes one command line to kafka-mock's control FIFO and waits until the mock has run it
    (read from STACK_DIR/kafka-mock.log). Raises RuntimeError if the mock rejected it."""
    log = Path(stack.get("STACK_DIR", "")) / "kafka-mock.log"
    start = log.stat().st_size if log.is_file() else None
    line = " ".join(command.split())
    with open(stack["KAFKA_CONTROL"], "w", encoding="utf-8") as f:
        f.write(line + "\n")
    if start is None:
        time.sleep(0.2)  # a stack without our log layout: give the mock a moment
        return
    want = "control: " + line
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(log, encoding="utf-8", errors="replace") as f:
            f.seek(start)
            msgs = []
            for line in f:
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                msgs.append((rec.get("level"), rec.get("msg", "")))
        seen = False
        for level, msg in msgs:
            if not seen:
                seen = msg == want
            elif msg == "control: ok":
                return
            elif level in ("warn", "error"):
                raise RuntimeError(f"kafka-mock rejected {command!r}: {msg}")
        time.sleep(0.02)
    raise TimeoutError(f"kafka-mock did not confirm {command!r} within {timeout}s")


# ---------------------------------------------------------------- Redis modes

REDIS_MODES = ("standalone", "cluster")


def stack_for_redis_mode(stack, mode):
    """The stack's values for one Redis mode: in "cluster" mode REDIS_URL is the stack's Redis
    Cluster (a comma list of seed nodes, started by tools/stack.sh with STACK_REDIS_CLUSTER=1)
    and REDIS_MODE is "cluster". Skips the test when the stack has no cluster."""
    import pytest
    values = dict(stack)
    if mode == "cluster":
        if not stack.get("REDIS_CLUSTER_URL"):
            pytest.skip("the stack has no Redis Cluster (start it with STACK_REDIS_CLUSTER=1)")
        values["REDIS_URL"] = stack["REDIS_CLUSTER_URL"]
        values["REDIS_MODE"] = "cluster"
    else:
        values["REDIS_MODE"] = "standalone"
    return values


def redis_client(stack, **kw):
    """A redis-py client for the stack's Redis in its mode (RedisCluster in cluster mode)."""
    import redis
    from urllib.parse import urlparse
    from redis.cluster import ClusterNode, RedisCluster
    if stack.get("REDIS_MODE") == "cluster":
        seeds = [urlparse(u) for u in stack["REDIS_URL"].split(",")]  # any of them may be down
        return RedisCluster(startup_nodes=[ClusterNode(u.hostname, u.port) for u in seeds], **kw)
    return redis.Redis.from_url(stack["REDIS_URL"], **kw)
