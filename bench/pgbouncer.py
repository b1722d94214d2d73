#!/usr/bin/env python3
"""The cost of unnamed statements and of a PgBouncer hop (docs/performance.md, "PgBouncer").

Starts a private stack with PgBouncer 1.18 in transaction mode (tools/stack.sh start DIR
--pgbouncer), loads bench/load.sql, and runs wrk for an uncached read (GET watchlist, Redis
unreachable so every read goes to PostgreSQL) and a write (POST watchlist) against:
  direct + prepared, direct + unnamed, PgBouncer + unnamed
(PgBouncer + prepared does not work below 1.21: tests/integration/test_pgbouncer.py). Prints a
Markdown table with the commands. Bounded: fixed durations, 127.0.0.1 only.

usage: bench/pgbouncer.py [--seconds 5] [--conns 32] [--users 10000] [--rounds 2]
"""
import argparse
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
import run as bench  # noqa: E402  (wrk, start_api, token, load_env, sh)

VARIANTS = [
    ("direct, prepared", "DATABASE_URL", "on"),
    ("direct, unnamed", "DATABASE_URL", "off"),
    ("PgBouncer (transaction), unnamed", "PGBOUNCER_URL", "off"),
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--conns", type=int, default=32)
    ap.add_argument("--users", type=int, default=10000)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    state = os.path.join(ROOT, ".local", "bench-pgbouncer")
    stack_sh = os.path.join(ROOT, "tools", "stack.sh")
    subprocess.run([stack_sh, "stop", state], capture_output=True)
    bench.sh([stack_sh, "start", state, "--pgbouncer"])
    try:
        stack = bench.load_env(os.path.join(state, "stack.env"))
        env = dict(os.environ, DATABASE_URL=stack["DATABASE_URL"],
                   MIGRATIONS_DIR=os.path.join(ROOT, "migrations"))
        bench.sh([bench.support.bin_path("profile-migrate")], env=env)
        bench.sh(["psql", "-q", "-v", f"users={args.users}", "-f",
                  os.path.join(ROOT, "bench", "load.sql"), stack["DATABASE_URL"]])
        tok = bench.token(["admin"])
        rows = {}
        for rnd in range(args.rounds):  # interleaved rounds: drift on a shared machine shows
            for name, url_key, prepared in VARIANTS:
                extra = {"DATABASE_URL": stack[url_key], "PG_PREPARED_STATEMENTS": prepared,
                         "REDIS_URL": "redis://127.0.0.1:1/0", "HTTP_THREADS": "2",
                         "PG_POOL_MAX": "8", "CACHE_LOCAL_MB": "0"}
                api, port = bench.start_api(stack, extra)
                try:
                    bench.wrk(port, "get_watchlist", 2, args.conns, 2, args.users, tok)  # warm
                    for op in ("get_watchlist", "post_watchlist"):
                        r = bench.wrk(port, op, args.seconds, args.conns, 2, args.users, tok)
                        rows.setdefault((name, op), []).append(r)
                finally:
                    api.stop()
        print("| variant | request | req/s (each round) | p50 ms | p99 ms | non-2xx |")
        print("|---|---|---|---|---|---|")
        for (name, op), runs in rows.items():
            rps = " / ".join(f"{r['rps']:.0f}" for r in runs)
            best = max(runs, key=lambda r: r["rps"])
            non2xx = sum(int(r["non2xx"]) for r in runs)
            print(f"| {name} | {op} | {rps} | {best['p50_ms']:.2f} | {best['p99_ms']:.2f} "
                  f"| {non2xx} |")
        print()
        for (name, op), runs in rows.items():
            print(f"- {name}, {op}: `{runs[0]['cmd']}`")
    finally:
        subprocess.run([stack_sh, "stop", state], capture_output=True)


if __name__ == "__main__":
    main()
