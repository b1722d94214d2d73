"""Shared helpers of the fault-injection suite (tests/faults): stack environment, tokens,
ports, JSON lines files, PostgreSQL connections that survive a restart.

Only the Python standard library and Debian packages (psycopg2, jwt, requests) are used.
"""

import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
import support  # noqa: E402

JWT_SECRET = "faults-suite-hs256-secret-0123456789abcdef"
JWT_ISSUER = "https://auth.faults.test/"
JWT_AUDIENCE = "profile-service"

_print_lock = threading.Lock()


def log(msg):
    """One line on stderr with a wall-clock stamp (the summary goes to stdout)."""
    stamp = time.strftime("%H:%M:%S", time.gmtime()) + ".%03d" % (int(time.time() * 1000) % 1000)
    with _print_lock:
        sys.stderr.write("faults %s %s\n" % (stamp, msg))
        sys.stderr.flush()


# The stack.env parser and the port finder are the integration tests' (one definition each).
load_env_file = support.load_stack_env
free_port = support.free_port


def make_token(sub, roles=("user",), ttl=3600):
    import jwt  # PyJWT (python3-jwt)

    now = int(time.time())
    claims = {
        "sub": sub,
        "roles": list(roles),
        "iss": JWT_ISSUER,
        "aud": JWT_AUDIENCE,
        "iat": now,
        "nbf": now - 5,
        "exp": now + ttl,
    }
    tok = jwt.encode(claims, JWT_SECRET, algorithm="HS256")
    return tok.decode() if isinstance(tok, bytes) else tok


def pg_connect(database_url, timeout=30.0):
    """Connects, retrying while PostgreSQL restarts. Autocommit."""
    import psycopg2

    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            conn = psycopg2.connect(database_url, connect_timeout=3)
            conn.autocommit = True
            return conn
        except psycopg2.Error as e:
            last = e
            time.sleep(0.3)
    raise RuntimeError("PostgreSQL unreachable for %.0fs: %s" % (timeout, last))


def pg_query(database_url, sql, args=None, timeout=30.0):
    """Runs one statement on a fresh connection (retried while PostgreSQL restarts)."""
    import psycopg2

    deadline = time.time() + timeout
    while True:
        conn = None
        try:
            conn = pg_connect(database_url, max(1.0, deadline - time.time()))
            with conn.cursor() as cur:
                cur.execute(sql, args)
                return cur.fetchall() if cur.description else []
        except psycopg2.OperationalError:
            if time.time() >= deadline:
                raise
            time.sleep(0.3)
        finally:
            if conn is not None:
                conn.close()


def write_jsonl(path, rows):
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, sort_keys=True, separators=(",", ":")) + "\n")


def read_jsonl(path):
    rows = []
    if not os.path.exists(path):
        return rows
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line:
                rows.append(json.loads(line))
    return rows


def write_json(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, sort_keys=True, indent=1)


def read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)
