#!/usr/bin/env python3
"""Cache-hit throughput with a standalone Redis against a Redis Cluster (REDIS_MODE=cluster),
on one local stack started with STACK_REDIS_CLUSTER=1: GET watchlist (cached) with wrk, two
API processes (one per mode) measured in alternating rounds so that the noise of a shared
machine falls on both alike. Prints a markdown table and the wrk commands.

usage: bench/redis_modes.py [--users N] [--seconds S] [--rounds R] [--conns C]
Starts its stack in .local/bench-redis-modes and stops it at the end. Bounded: fixed-length
runs against 127.0.0.1 only.
"""
import argparse
import os
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402  (the make bench helpers: stack env, tokens, wrk, api start)

ROOT = run.ROOT


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=2000)
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--conns", type=int, default=64)
    args = ap.parse_args()

    state = os.path.join(ROOT, ".local", "bench-redis-modes")
    stack_sh = os.path.join(ROOT, "tools", "stack.sh")
    subprocess.run([stack_sh, "stop", state], capture_output=True)
    run.sh([stack_sh, "start", state], env=dict(os.environ, STACK_REDIS_CLUSTER="1"))
    procs = []
    try:
        stack = run.load_env(os.path.join(state, "stack.env"))
        env = dict(os.environ, DATABASE_URL=stack["DATABASE_URL"],
                   MIGRATIONS_DIR=os.path.join(ROOT, "migrations"))
        run.sh([run.support.bin_path("profile-migrate")], env=env)
        run.sh(["psql", "-q", "-v", f"users={args.users}", "-f",
                os.path.join(ROOT, "bench", "load.sql"), stack["DATABASE_URL"]])
        tok = run.token(["admin"])
        ports = {}
        for mode in ("standalone", "cluster"):
            extra = {"REDIS_MODE": mode}
            if mode == "cluster":
                extra["REDIS_URL"] = stack["REDIS_CLUSTER_URL"]
            proc, port = run.start_api(stack, extra)
            procs.append(proc)
            ports[mode] = port
            run.wrk(port, "get_watchlist", 3, args.conns, 2, args.users, tok)  # warm the cache
        results = {"standalone": [], "cluster": []}
        for _ in range(args.rounds):
            for mode in ("standalone", "cluster"):
                results[mode].append(run.wrk(ports[mode], "get_watchlist", args.seconds,
                                             args.conns, 2, args.users, tok))
        print(f"| mode | req/s (median of {args.rounds}) | p50 ms | p99 ms | non-2xx | rounds |")
        print("|---|---:|---:|---:|---:|---|")
        med = {}
        for mode, rs in results.items():
            m = sorted(rs, key=lambda r: r["rps"])[len(rs) // 2]
            med[mode] = m["rps"]
            rounds = " / ".join(f"{r['rps']:.0f}" for r in rs)
            print(f"| {mode} | {m['rps']:.0f} | {m['p50_ms']:.2f} | {m['p99_ms']:.2f} | "
                  f"{sum(r['non2xx'] for r in rs):.0f} | {rounds} |")
        print(f"\ncluster / standalone: {100.0 * med['cluster'] / med['standalone']:.0f} % "
              f"(mean of rounds: {100.0 * statistics.mean(r['rps'] for r in results['cluster']) / statistics.mean(r['rps'] for r in results['standalone']):.0f} %)")
        print("\n```")
        for mode in ("standalone", "cluster"):
            print(results[mode][0]["cmd"].replace(ROOT + "/", ""))
        print("```")
    finally:
        for p in procs:
            p.stop()
        subprocess.run([stack_sh, "stop", state], capture_output=True)


if __name__ == "__main__":
    main()
