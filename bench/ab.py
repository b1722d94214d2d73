#!/usr/bin/python3
"""A/B of two profile-api builds on one stack: is a change within noise of before?

Starts a private stack (tools/stack.sh, PostgreSQL sized as in make bench), migrates it with
MIGRATIONS (default: this repository's migrations/, with this repository's profile-migrate),
loads USERS users (bench/load.sql), starts one profile-api from each of the two bin
directories against the same database and Redis (limiter off), and runs wrk on each OP
(bench/wrk/bench.lua) ROUNDS times, alternating A and B within every round so that the
machine's drift hits both alike. Prints every round and the median per build, and the
median's change from A to B.

  bench/ab.py --a OLD/build/bin --b build/bin [--ops health,get_watchlist,get_profile,post_watchlist]
              [--rounds 3] [--seconds 8] [--conns 64] [--users 10000] [--database-url-key DATABASE_URL]

Both builds must accept the same schema (a change that moves no SQL). --database-url-key picks
the stack.env URL the APIs use (an older build that predates the database roles needs the
owner's DATABASE_URL).
"""
import argparse
import os
import statistics
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
import support  # noqa: E402
from run import loaded_stack, token, wrk  # noqa: E402


def start_api(bin_dir, stack, url_key):
    port = support.free_port()
    env = {"DATABASE_URL": stack[url_key], "REDIS_URL": stack["REDIS_URL"], "HTTP_PORT": port,
           "JWT_HS256_SECRET": "bench-secret-bench-secret-bench-secret-0123",
           "JWT_ISSUER": "profile-bench", "JWT_AUDIENCE": "profile-api",
           "RATE_LIMIT_PER_MINUTE": 0, "LOG_LEVEL": "warn", "ACCESS_LOG_SAMPLE": 0,
           "AUTH_FAILURE_LIMIT_PER_MINUTE": 0}
    proc = support.spawn([os.path.join(bin_dir, "profile-api")], env,
                         ready_url=f"http://127.0.0.1:{port}/health/ready", ready_timeout=30)
    return proc, port


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--a", required=True, help="bin directory of build A (before)")
    ap.add_argument("--b", required=True, help="bin directory of build B (after)")
    ap.add_argument("--ops", default="health,get_watchlist,get_profile,post_watchlist")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--conns", type=int, default=64)
    ap.add_argument("--users", type=int, default=10000)
    ap.add_argument("--migrations", default=os.path.join(ROOT, "migrations"))
    ap.add_argument("--database-url-key", default="API_DATABASE_URL")
    args = ap.parse_args()
    with loaded_stack("bench-ab", args.users, args.migrations) as (stack, procs):
        apis = {}
        for name, bin_dir in (("A", args.a), ("B", args.b)):
            proc, port = start_api(os.path.abspath(bin_dir), stack, args.database_url_key)
            procs.append(proc)
            apis[name] = port
        tok = token(["admin"])
        for port in apis.values():  # warm the pools and the cache
            wrk(port, "get_watchlist", 3, args.conns, 2, args.users, tok)
        print(f"A = {args.a}, B = {args.b}; {args.rounds} rounds of {args.seconds} s at "
              f"{args.conns} connections, {args.users} users; req/s (p99 ms)")
        for op in args.ops.split(","):
            runs = {"A": [], "B": []}
            for i in range(args.rounds):
                order = ("A", "B") if i % 2 == 0 else ("B", "A")
                for name in order:
                    runs[name].append(wrk(apis[name], op, args.seconds, args.conns, 2, args.users,
                                          tok))
            med = {n: statistics.median(r["rps"] for r in rs) for n, rs in runs.items()}
            cells = {n: " / ".join(f"{r['rps']:.0f} ({r['p99_ms']:.1f})" for r in rs)
                     for n, rs in runs.items()}
            print(f"{op}: A {cells['A']}; B {cells['B']}; median A {med['A']:.0f}, "
                  f"B {med['B']:.0f} ({100 * (med['B'] - med['A']) / med['A']:+.1f} %)",
                  flush=True)


if __name__ == "__main__":
    main()
