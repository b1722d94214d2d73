#!/usr/bin/env python3
"""`make bench`: start a private local stack, load data, run wrk against every endpoint and
pgbench against the same write transaction, and write the figures into docs/performance.md.

Bounded: every load run has a fixed duration and targets only 127.0.0.1.
"""
import argparse
import contextlib
import datetime
import os
import platform
import re
import shlex
import subprocess
import sys
import time

import jwt

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
import support  # noqa: E402  (bin_path, free_port, spawn)

SECRET = "bench-secret-bench-secret-bench-secret-0123"
ISSUER, AUDIENCE = "profile-bench", "profile-api"


def shown(text):
    """text for docs/performance.md: paths inside the repository made relative to it, so that
    the page never carries this machine's absolute paths."""
    return text.replace(ROOT + os.sep, "")


def pg_settings():
    """PostgreSQL settings sized for this machine (docs/operations.md, "PostgreSQL memory"):
    a quarter of RAM for shared_buffers (at most 8 GB), half as the planner's cache estimate,
    checkpoints spread out so that a run does not meet a forced one; passed to tools/stack.sh."""
    with open("/proc/meminfo") as f:
        kb = next(int(l.split()[1]) for l in f if l.startswith("MemTotal:"))
    mb = kb // 1024
    return "; ".join([
        f"shared_buffers = {min(mb // 4, 8192)}MB",
        f"effective_cache_size = {mb // 2}MB",
        f"maintenance_work_mem = {min(mb // 16, 1024)}MB",
        "work_mem = 16MB",
        "wal_buffers = 64MB",
        "max_wal_size = 8GB",
        "checkpoint_timeout = 15min",
        "checkpoint_completion_target = 0.9",
        "random_page_cost = 1.1",
    ])


def start_stack(state):
    """tools/stack.sh start under `state` (a leftover stopped first), PostgreSQL sized for the
    machine; returns its stack.env as a dict."""
    script = os.path.join(ROOT, "tools", "stack.sh")
    subprocess.run([script, "stop", state], capture_output=True)
    sh([script, "start", state], env=dict(os.environ, STACK_PG_SETTINGS=pg_settings()))
    return load_env(os.path.join(state, "stack.env"))


@contextlib.contextmanager
def loaded_stack(name, users, migrations=os.path.join(ROOT, "migrations")):
    """A private stack under .local/<name> (start_stack), migrated from `migrations`, with
    `users` users of bench/load.sql; yields (stack env, list of processes to stop), then stops
    those processes and the stack."""
    state = os.path.join(ROOT, ".local", name)
    stack = start_stack(state)
    procs = []
    try:
        sh([support.bin_path("profile-migrate")],
           env=dict(os.environ, DATABASE_URL=stack["DATABASE_URL"], MIGRATIONS_DIR=migrations))
        sh(["psql", "-q", "-v", f"users={users}", "-f", os.path.join(ROOT, "bench", "load.sql"),
            stack["DATABASE_URL"]])
        yield stack, procs
    finally:
        for p in procs:
            p.stop()
        sh([os.path.join(ROOT, "tools", "stack.sh"), "stop", state])


def sh(cmd, **kw):
    return subprocess.run(cmd, check=True, text=True, capture_output=True, **kw).stdout


def load_env(path):
    env = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#") and "=" in line:
                k, v = line.split("=", 1)
                env[k] = v.strip("'\"")
    return env


def token(roles):
    now = int(time.time())
    return jwt.encode({"sub": "bench-admin", "roles": roles, "iss": ISSUER, "aud": AUDIENCE,
                       "iat": now, "exp": now + 3600}, SECRET, algorithm="HS256")


ROUTES = {"get_profile": "/profiles/{userId}", "get_watchlist": "/profiles/{userId}/watchlist",
          "get_history": "/profiles/{userId}/history", "get_continue": "/profiles/{userId}/history",
          "get_ratings": "/profiles/{userId}/ratings"}


def server_latency(port):
    """GET request latency histogram of the server (/metrics): {route: {le: count}}."""
    import requests
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    out = {}
    for m in re.finditer(r'profile_api_request_duration_seconds_bucket\{route="([^"]+)",'
                         r'method="GET",le="([^"]+)"\} (\d+)', text):
        out.setdefault(m.group(1), {})[m.group(2)] = int(m.group(3))
    return out


def cache_counts(port):
    """(hits, misses) of the list cache so far (/metrics)."""
    import requests
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    def total(name):
        return sum(float(m.group(1)) for m in
                   re.finditer(rf"^{name}(?:{{[^}}]*}})? ([0-9.e+]+)$", text, re.M))
    return total("profile_api_cache_hits_total"), total("profile_api_cache_misses_total")


def server_share_under(after, before, route, le="0.01"):
    """Share of the run's requests of `route` that the server answered within `le` seconds."""
    a, b = after.get(route, {}), before.get(route, {})
    total = a.get("+Inf", 0) - b.get("+Inf", 0)
    under = a.get(le, 0) - b.get(le, 0)
    return 100.0 * under / total if total else 0.0


def server_quantile(after, before, route, q=0.99):
    """The q-quantile in ms of the run's requests of `route` by the server's own histogram,
    interpolated linearly within its bucket (None when the run has none; inf past the last)."""
    a, b = after.get(route, {}), before.get(route, {})
    edges = sorted((float(le), a.get(le, 0) - b.get(le, 0)) for le in a if le != "+Inf")
    total = a.get("+Inf", 0) - b.get("+Inf", 0)
    if total <= 0:
        return None
    want, lo, below = q * total, 0.0, 0
    for le, count in edges:
        if count >= want:
            return 1e3 * (lo + (le - lo) * (want - below) / max(1, count - below))
        lo, below = le, count
    return float("inf")


def user_token(sub):
    now = int(time.time())
    return jwt.encode({"sub": sub, "roles": ["user"], "iss": ISSUER, "aud": AUDIENCE,
                       "iat": now, "exp": now + 3600}, SECRET, algorithm="HS256")


def reset_limiter(stack):
    """Drops every limiter bucket, so a run starts with full budgets."""
    import redis
    r = redis.Redis.from_url(stack["REDIS_URL"])
    keys = list(r.scan_iter(match="rl:*", count=1000))
    if keys:
        r.delete(*keys)
    r.close()


def wrk(port, op, seconds, conns, threads, users, tok, extra_env=None):
    env = dict(os.environ, BENCH_OP=op, BENCH_USERS=str(users), BENCH_TOKEN=tok)
    env.update(extra_env or {})
    cmd = ["wrk", f"-t{threads}", f"-c{conns}", f"-d{seconds}s", "--latency", "--timeout", "5s",
           "-s", os.path.join(ROOT, "bench", "wrk", "bench.lua"), f"http://127.0.0.1:{port}"]
    out = subprocess.run(cmd, env=env, text=True, capture_output=True, timeout=seconds + 60).stdout
    m = re.search(r"BENCH_RESULT (.*)", out)
    if not m:
        raise RuntimeError(f"wrk gave no result for {op}:\n{out}")
    res = dict(kv.split("=") for kv in m.group(1).split())
    res = {k: float(v) for k, v in res.items()}
    prefix = "".join(f"{k}={v} " for k, v in sorted((extra_env or {}).items()))
    res["cmd"] = shown(f"{prefix}BENCH_OP={op} " + " ".join(shlex.quote(c) for c in cmd))
    return res


def pgbench(stack, seconds, clients, script="pgbench_watchlist", user=None):
    """pgbench of bench/<script>.sql; as the API's role unless `user` (the minimal outbox
    transaction writes the tables directly: the owner)."""
    script = os.path.join(ROOT, "bench", script + ".sql")
    cmd = ["pgbench", "-n", "-M", "prepared", "-c", str(clients), "-j", "2", "-T", str(seconds),
           "-r", "-f", script, "-h", stack["PGHOST"], "-p", stack["PGPORT"],
           "-U", user or support.ROLE_USERS["api"], stack["PGDATABASE"]]
    out = subprocess.run(cmd, text=True, capture_output=True, timeout=seconds + 60)
    m = re.search(r"tps = ([0-9.]+)", out.stdout)
    lat = re.search(r"latency average = ([0-9.]+) ms", out.stdout)
    if not m:
        raise RuntimeError(f"pgbench failed:\n{out.stdout}\n{out.stderr}")
    return {"tps": float(m.group(1)), "avg_ms": float(lat.group(1)) if lat else 0.0,
            "cmd": shown(" ".join(shlex.quote(c) for c in cmd))}


def start_api(stack, extra=None):
    port = support.free_port()
    env = dict(os.environ)
    env.update(DATABASE_URL=stack["API_DATABASE_URL"], REDIS_URL=stack["REDIS_URL"],
               HTTP_PORT=str(port), JWT_HS256_SECRET=SECRET, JWT_ISSUER=ISSUER,
               JWT_AUDIENCE=AUDIENCE, RATE_LIMIT_PER_MINUTE="0", LOG_LEVEL="warn",
               ACCESS_LOG_SAMPLE="0", AUTH_FAILURE_LIMIT_PER_MINUTE="0")
    env.update(extra or {})
    proc = support.spawn([support.bin_path("profile-api")], env,
                         ready_url=f"http://127.0.0.1:{port}/health/ready", ready_timeout=30)
    return proc, port


SCALE_OPS = ["get_profile", "get_watchlist", "get_history", "post_watchlist", "post_history"]


def scale_main(args):
    """How cost grows with the data: the same runs at 1k, 100k and 1M users, loaded in steps
    by bench/load_scale.sql; uncached reads (Redis unreachable), then cached reads and writes."""
    state = os.path.join(ROOT, ".local", "bench-scale")
    stack = start_stack(state)
    procs, results = [], []
    try:
        env = dict(os.environ, DATABASE_URL=stack["DATABASE_URL"],
                   MIGRATIONS_DIR=os.path.join(ROOT, "migrations"))
        sh([support.bin_path("profile-migrate")], env=env)
        tok = token(["admin"])
        loaded = 0
        for users in (1000, 100000, 1000000):
            t0 = time.time()
            sh(["psql", "-q", "-v", f"from={loaded + 1}", "-v", f"to={users}", "-f",
                os.path.join(ROOT, "bench", "load_scale.sql"), stack["DATABASE_URL"]])
            load_s, loaded = time.time() - t0, users
            row = {"users": users, "load_s": load_s}
            api, port = start_api(stack, {"REDIS_URL": f"redis://127.0.0.1:{support.free_port()}/0"})
            procs.append(api)
            skew = {"BENCH_SKEW": str(args.skew)}
            for op in ("get_profile", "get_watchlist", "get_history"):
                row[op + " uncached"] = wrk(port, op, args.seconds, args.conns, 2, users, tok,
                                            skew)
            api.stop()
            procs.remove(api)
            api, port = start_api(stack)
            procs.append(api)
            wrk(port, "get_watchlist", 3, args.conns, 2, users, tok, skew)
            h0, m0 = cache_counts(port)
            row["get_watchlist cached"] = wrk(port, "get_watchlist", args.seconds, args.conns, 2,
                                              users, tok, skew)
            h1, m1 = cache_counts(port)
            row["hit_pct"] = 100.0 * (h1 - h0) / max(1.0, (h1 - h0) + (m1 - m0))
            for op in ("post_watchlist", "post_history"):
                row[op] = wrk(port, op, args.seconds, args.conns, 2, users, tok, skew)
            api.stop()
            procs.remove(api)
            row["db_mb"] = int(support.psql(stack, "SELECT pg_database_size(current_database()) / 1048576")[0][0])
            row["outbox_rows"] = int(support.psql(stack, "SELECT count(*) FROM outbox")[0][0])
            results.append(row)
            print(f"scale: {users} users done", file=sys.stderr)
    finally:
        for p in procs:
            p.stop()
        subprocess.run([os.path.join(ROOT, "tools", "stack.sh"), "stop", state], capture_output=True)
    cols = ["get_profile uncached", "get_watchlist uncached", "get_history uncached",
            "get_watchlist cached", "post_watchlist", "post_history"]
    lines = ["## How cost grows with the data (`make bench-scale`)", "",
             f"Measured {datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC, same machine and settings as "
             f"above; each user has a profile, 5 watchlist items, 10 history entries and 2 ratings "
             f"(bench/load_scale.sql); users added in steps; each run {args.seconds} s at "
             f"{args.conns} connections over all users, drawn "
             + (f"Zipf-skewed (s = {args.skew}, bench/wrk/bench.lua BENCH_SKEW)" if args.skew > 0
                else "uniformly")
             + f"; PostgreSQL settings: {pg_settings()}"
             + "; uncached = Redis unreachable; hit % = list cache hits during the cached "
             "watchlist run (warmed 3 s). "
             "Cells: req/s and p99 ms. Outbox rows accumulate (no relay runs here).", "",
             "| users | load s | DB MB | outbox rows | hit % | " + " | ".join(cols) + " |",
             "|---:|---:|---:|---:|---:|" + "---:|" * len(cols)]
    for r in results:
        cells = [f"{r[c]['rps']:.0f} / {r[c]['p99_ms']:.1f}" for c in cols]
        lines.append(f"| {r['users']} | {r['load_s']:.0f} | {r['db_mb']} | {r['outbox_rows']} | "
                     f"{r['hit_pct']:.1f} | " + " | ".join(cells) + " |")
    lines += ["", "Command: `make bench-scale` (`tools/bench.sh build --scale`).", ""]
    text = "\n".join(lines)
    old = open(args.out).read() if os.path.exists(args.out) else "# Performance\n"
    start = old.find("## How cost grows with the data")
    if start >= 0:
        end = old.find("\n## ", start + 5)
        old = old[:start] + (old[end + 1:] if end >= 0 else "")
    with open(args.out, "w") as f:
        f.write(old.rstrip() + "\n\n" + text)
    print(text)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", action="store_true", help="run the 1k/100k/1M users series")
    ap.add_argument("--seconds", type=int, default=int(os.environ.get("BENCH_SECONDS", "10")))
    ap.add_argument("--users", type=int, default=10000)
    ap.add_argument("--conns", type=int, default=64)
    ap.add_argument("--skew", type=float, default=float(os.environ.get("BENCH_SKEW", "1.1")),
                    help="Zipf exponent of the users drawn in --scale runs (0: uniform)")
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "performance.md"))
    args = ap.parse_args()
    if args.scale:
        scale_main(args)
        return

    state = os.path.join(ROOT, ".local", "bench")
    stack = start_stack(state)
    procs = []
    try:
        env = dict(os.environ, DATABASE_URL=stack["DATABASE_URL"],
                   MIGRATIONS_DIR=os.path.join(ROOT, "migrations"))
        sh([support.bin_path("profile-migrate")], env=env)
        t0 = time.time()
        sh(["psql", "-q", "-v", f"users={args.users}", "-f", os.path.join(ROOT, "bench", "load.sql"),
            stack["DATABASE_URL"]])
        load_s = time.time() - t0

        tok = token(["admin"])
        rows = []
        api, port = start_api(stack)
        procs.append(api)
        ops = ["health", "get_profile", "get_watchlist", "get_history", "get_continue",
               "get_ratings", "post_watchlist", "post_history", "post_rating", "put_profile"]
        # warm the cache and the connection pool
        wrk(port, "get_watchlist", 3, args.conns, 2, args.users, tok)
        for op in ops:
            rows.append((op + (" (cached)" if op in ("get_watchlist", "get_history", "get_continue") else ""),
                         wrk(port, op, args.seconds, args.conns, 2, args.users, tok)))
        api.stop()
        procs.remove(api)

        # uncached reads: a server with Redis unreachable (reads go to PostgreSQL), its pool
        # sized for a database sharing these cores (2 per core, the PostgreSQL wiki's rule)
        # (and, for comparison, with the default pool of 30)
        read_pool = 2 * (os.cpu_count() or 1)
        uncached = []
        for pool in (read_pool, 30):
            api, port = start_api(stack, {"REDIS_URL": f"redis://127.0.0.1:{support.free_port()}/0",
                                          "PG_POOL_MAX": str(pool)})
            procs.append(api)
            wrk(port, "get_profile", 3, args.conns, 2, args.users, tok)
            for op in ("get_profile", "get_watchlist", "get_history", "get_continue",
                       "get_ratings"):
                before = server_latency(port)
                r = wrk(port, op, args.seconds, args.conns, 2, args.users, tok)
                r["server_under_10ms"] = server_share_under(server_latency(port), before,
                                                            ROUTES[op])
                r["pool"] = pool
                uncached.append((op, r))
            api.stop()
            procs.remove(api)

        pg = pgbench(stack, args.seconds, 30)
        # the floor a write can reach on this database: one domain row and one outbox row in
        # one transaction, nothing else (bench/pgbench_minimal_outbox.sql)
        pg_min = pgbench(stack, args.seconds, 30, "pgbench_minimal_outbox", stack["PGUSER"])

        # The limiter's cost on a cache hit: the same cache-hit run against a server with the
        # limiter off and one with it on (a budget high enough that no request is refused: this
        # measures cost, not refusals; the limiter keys are dropped before each run), with one
        # caller (the admin token) and with 500 callers (each its own token and watchlist).
        off_api, off_port = start_api(stack)
        procs.append(off_api)
        api, port = start_api(stack, {"RATE_LIMIT_PER_MINUTE": "1000000"})
        procs.append(api)
        tokens = os.path.join(state, "tokens500.txt")
        with open(tokens, "w") as f:
            for i in range(1, 501):
                f.write(f"u{i} {user_token(f'u{i}')}\n")
        wrk(port, "get_watchlist", 3, args.conns, 2, args.users, tok)
        # three rounds, off and on alternating; each row is the median round (by req/s)
        limiter = []
        for label, extra in (("1 caller", {}), ("500 callers", {"BENCH_TOKENS": tokens})):
            runs = {"off": [], "on": []}
            for _ in range(3):
                for name, p in (("off", off_port), ("on", port)):
                    reset_limiter(stack)
                    runs[name].append(wrk(p, "get_watchlist", args.seconds, args.conns, 2,
                                          args.users, tok, extra))
            for name in ("off", "on"):
                ordered = sorted(runs[name], key=lambda r: r["rps"])
                med = dict(ordered[1])
                med["rounds"] = " / ".join(f"{r['rps']:.0f}" for r in runs[name])
                limiter.append((f"get_watchlist (cached), {label}, limiter {name}", med))
        off_api.stop()
        procs.remove(off_api)
        # reads beside saturating writes (70 % GET watchlist, 20 % POST watchlist, 10 % POST
        # history, limiter on with a budget no run reaches): read latency by the server's own
        # histogram, so that the load generator's scheduling is not in it
        mixed_rw = []
        for conns in (64, 256):
            reset_limiter(stack)
            before = server_latency(port)
            r = wrk(port, "mixed_rw", args.seconds, conns, 2, args.users, tok)
            after = server_latency(port)
            r["read_p99_ms"] = server_quantile(after, before, ROUTES["get_watchlist"])
            r["read_under_10ms"] = server_share_under(after, before, ROUTES["get_watchlist"])
            mixed_rw.append((conns, r))
        mixed = []
        for conns in (4, 8, 16, 32, 64):
            mixed.append((conns, wrk(port, "mixed", args.seconds, conns, 2, args.users, tok)))
        api.stop()
        procs.remove(api)

        relay = relay_figures(state)
        write_report(args, rows, pg, pg_min, load_s, limiter, mixed, mixed_rw, relay, uncached,
                     read_pool)
    finally:
        for p in procs:
            p.stop()
        subprocess.run([os.path.join(ROOT, "tools", "stack.sh"), "stop", state], capture_output=True)


def relay_figures(state):
    """The relay's drain rate and steady-state commit-to-delivery latency (bench/relay_*)."""
    env = dict(os.environ, PROFILE_BIN_DIR=support.bin_path("").rstrip("/"))
    stack_env = os.path.join(state, "stack.env")
    out = {}
    drain_cmd = ["bench/relay_drain.sh", stack_env]
    r = subprocess.run(drain_cmd, cwd=ROOT, env=dict(env, ROWS=os.environ.get("BENCH_RELAY_ROWS", "1000000")),
                       capture_output=True, text=True, timeout=1200)
    m = re.search(r"drained (\d+) rows in ([0-9.]+) s: (\d+) events/s", r.stdout + r.stderr)
    out["drain"] = m.groups() if m else None
    out["drain_cmd"] = shown("ROWS=%s %s" % (os.environ.get("BENCH_RELAY_ROWS", "1000000"),
                                            " ".join(drain_cmd)))
    lat_cmd = ["/usr/bin/python3", "bench/relay_latency.py", "--rate", "1000", "--seconds", "10"]
    r = subprocess.run(lat_cmd, cwd=ROOT, env=dict(env, STACK_ENV=stack_env), capture_output=True,
                       text=True, timeout=600)
    m = re.search(r"(\d+) events at (\d+)/s written: commit-to-delivery p50 ([0-9.]+) ms, p99 ([0-9.]+) ms",
                  r.stdout + r.stderr)
    out["latency"] = m.groups() if m else None
    out["latency_cmd"] = "STACK_ENV=<stack> " + " ".join(lat_cmd)
    if not m:
        out["latency_err"] = (r.stdout + r.stderr)[-500:]
    secs = os.environ.get("BENCH_SUSTAINED_SECONDS", "600")
    sus_cmd = ["/usr/bin/python3", "bench/write_sustained.py", "--seconds", secs]
    r = subprocess.run(sus_cmd, cwd=ROOT, env=dict(env, STACK_ENV=stack_env), capture_output=True,
                       text=True, timeout=int(secs) + 600)
    m = re.search(r"^sustained: .*$", r.stdout, re.M)
    out["sustained"] = m.group(0) if m else None
    out["sustained_cmd"] = "STACK_ENV=<stack> " + " ".join(sus_cmd)
    if not m:
        out["sustained_err"] = (r.stdout + r.stderr)[-500:]
    return out


def write_report(args, rows, pg, pg_min, load_s, limiter, mixed, mixed_rw, relay, uncached,
                 read_pool):
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    lines = [
        "## Service benchmark (`make bench`)",
        "",
        f"Measured {datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC on {os.cpu_count()} cores "
        f"({cpu}), {platform.system()} {platform.release()}; API with HTTP_THREADS = cores, "
        f"PG_POOL_MAX=30, rate limiter off; wrk and the servers share the machine; "
        f"PostgreSQL (fsync and synchronous_commit on) with {pg_settings()}. "
        f"{args.users} users loaded in {load_s:.1f} s; each run {args.seconds} s at "
        f"{args.conns} connections, random users.",
        "",
        "| endpoint | req/s | p50 ms | p99 ms | non-2xx |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, r in rows:
        lines.append(f"| {name} | {r['rps']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
                     f"{int(r['non2xx'])} |")
    post = next(r for n, r in rows if n.startswith("post_watchlist"))
    lines += [
        "",
        f"pgbench, same SQL call as POST watchlist, 30 connections (= PG_POOL_MAX): "
        f"**{pg['tps']:.0f} tps** (avg {pg['avg_ms']:.2f} ms). POST watchlist through the API "
        f"reaches **{100 * post['rps'] / pg['tps']:.0f} %** of it.",
        "",
        f"pgbench of the minimal transactional outbox (one domain row and one outbox row in one "
        f"transaction, nothing else; bench/pgbench_minimal_outbox.sql), same database, 30 "
        f"connections: **{pg_min['tps']:.0f} tps**. Each write through the API against it:",
        "",
        "| write | req/s | share of the minimal outbox transaction |",
        "|---|---:|---:|",
    ]
    for name, r in rows:
        if name.startswith(("post_", "put_")):
            lines.append(f"| {name} | {r['rps']:.0f} | **{100 * r['rps'] / pg_min['tps']:.0f} %** |")
    lines += [
        "",
        "Commands:",
        "",
        "```",
    ]
    lines += [r["cmd"] for _, r in rows] + [pg["cmd"], pg_min["cmd"], "```", ""]
    lines += [
        "### Uncached reads",
        "",
        f"A server with Redis unreachable (every read goes to PostgreSQL), first with "
        f"PG_POOL_MAX={read_pool} (2 per core: the database shares these cores with the load "
        "generator and the API), then with the default 30 for comparison. Client side: wrk. "
        "Server side: the share of the run's requests that profile-api's own latency histogram "
        "(`profile_api_request_duration_seconds`, from the parsed request to the response) "
        "counts under 10 ms.",
        "",
        "| endpoint | PG_POOL_MAX | req/s | p50 ms | p99 ms | server: under 10 ms | non-2xx |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in uncached:
        lines.append(f"| {name} (uncached) | {r['pool']} | {r['rps']:.0f} | {r['p50_ms']:.2f} | "
                     f"{r['p99_ms']:.2f} | {r['server_under_10ms']:.2f} % | {int(r['non2xx'])} |")
    lines += ["", "```"] + [r["cmd"] for _, r in uncached] + ["```", ""]
    health = next(r for n, r in rows if n == "health")
    hit = next(r for n, r in rows if n == "get_watchlist (cached)")
    lines += [
        "### Cache hit against /health/live, and the limiter's cost",
        "",
        f"Cache-hit GET watchlist reaches **{100 * hit['rps'] / health['rps']:.0f} %** of "
        f"`/health/live` in the same run (the median of the three limiter-off rounds below: "
        f"{100 * limiter[0][1]['rps'] / health['rps']:.0f} %).",
        "",
        "Limiter off and on: two servers, three rounds alternating off/on (limiter budgets reset "
        "before each); each row is the median round, the last column lists all three.",
        "",
        "| run | req/s (median) | p50 ms | p99 ms | non-2xx | rounds req/s |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for name, r in limiter:
        lines.append(f"| {name} | {r['rps']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
                     f"{int(r['non2xx'])} | {r['rounds']} |")
    cost = {}
    for label in ("1 caller", "500 callers"):
        off = next(r for n, r in limiter if n.endswith(f"{label}, limiter off"))["rps"]
        on = next(r for n, r in limiter if n.endswith(f"{label}, limiter on"))["rps"]
        cost[label] = 100 * (off - on) / off
    lines += ["", f"The limiter costs **{cost['1 caller']:.0f} %** of cache-hit throughput with "
              f"one caller and **{cost['500 callers']:.0f} %** with 500 callers (one script "
              "call per caller per event-loop iteration, sent in the same write as the cache "
              "read).", "", "```"] + [r["cmd"] for _, r in limiter] + ["```", "",
              "### Mixed workload (80 % reads, 20 % writes, limiter on)", "",
              "| connections | req/s | p50 ms | p99 ms | non-2xx |", "|---:|---:|---:|---:|---:|"]
    best = None
    for conns, r in mixed:
        lines.append(f"| {conns} | {r['rps']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {int(r['non2xx'])} |")
        if r["p99_ms"] < 50 and (best is None or r["rps"] > best[1]["rps"]):
            best = (conns, r)
    if best:
        lines += ["", f"Highest rate with p99 under 50 ms: **{best[1]['rps']:.0f} req/s** "
                  f"({best[0]} connections)."]
    lines += ["", "### Reads beside saturating writes (70 % GET watchlist, 20 % POST watchlist, "
              "10 % POST history)", "",
              "GET watchlist latency by the server's own histogram "
              "(`profile_api_request_duration_seconds`, p99 interpolated within its bucket), the "
              "whole mix by wrk.", "",
              "| connections | req/s (all) | wrk p50 ms | wrk p99 ms | GET watchlist server p99 ms "
              "| GET watchlist server: under 10 ms | non-2xx |",
              "|---:|---:|---:|---:|---:|---:|---:|"]
    for conns, r in mixed_rw:
        p99 = r["read_p99_ms"]
        lines.append(f"| {conns} | {r['rps']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
                     f"{'n/a' if p99 is None else f'{p99:.2f}'} | {r['read_under_10ms']:.2f} % | "
                     f"{int(r['non2xx'])} |")
    lines += ["", "```"] + [r["cmd"] for _, r in mixed_rw] + ["```"]
    lines += ["", "### Relay", ""]
    if relay.get("drain"):
        n, secs, rate = relay["drain"]
        lines.append(f"- Drain of a {n}-row backlog (200-byte payloads, 10k users) into kafka-mock: "
                     f"**{rate} events/s** ({secs} s). `{relay['drain_cmd']}`")
    else:
        lines.append(f"- Drain: no result (`{relay['drain_cmd']}` failed).")
    if relay.get("latency"):
        n, rate, p50, p99 = relay["latency"]
        lines.append(f"- Steady state, {rate} events/s written through SQL ({n} events): "
                     f"commit-to-delivery **p50 {p50} ms, p99 {p99} ms**. `{relay['latency_cmd']}`")
    else:
        lines.append(f"- Latency: no result (`{relay['latency_cmd']}`): {relay.get('latency_err', '')!r}")
    if relay.get("sustained"):
        lines.append(f"- Writes sustained while one relay drains them (POST watchlist, 64 "
                     f"connections, OUTBOX_RETENTION_SECONDS=60 so that the retention DELETE runs "
                     f"too): {relay['sustained'].split(': ', 1)[1]}. `{relay['sustained_cmd']}`")
    else:
        lines.append(f"- Sustained writes: no result (`{relay['sustained_cmd']}`): "
                     f"{relay.get('sustained_err', '')!r}")
    lines.append("")
    text = "\n".join(lines)
    out = args.out
    head = "# Performance\n\nEvery figure here was measured by the command shown with it.\n\n"
    old = open(out).read() if os.path.exists(out) else head
    start = old.find("## Service benchmark (`make bench`)")
    if start >= 0:
        end = old.find("\n## ", start + 5)
        old = old[:start] + (old[end + 1:] if end >= 0 else "")
    if not old.startswith("# Performance"):
        old = head + old
    with open(out, "w") as f:
        f.write(old.rstrip() + "\n\n" + text)
    print(text)


if __name__ == "__main__":
    main()
