#!/usr/bin/python3
"""Reads beside saturating writes against the pool's size (docs/performance.md, "Writes at the
database's limit"): for each PG_POOL_MAX, one profile-api on a private stack (PostgreSQL sized
as in make bench, USERS users of bench/load.sql) runs the mixed 70/20/10 load (bench/wrk/bench.lua
mixed_rw) at 64 and 256 connections, reporting the whole mix's rate and GET watchlist's p99 by
the server's own histogram, then POST watchlist alone.

  bench/pool_mix.py [--pools 30,8] [--users 10000] [--seconds 10]
"""
import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
import support  # noqa: E402
from run import (ROUTES, loaded_stack, server_latency, server_quantile,  # noqa: E402
                 server_share_under, start_api, token, wrk)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pools", default="30,8")
    ap.add_argument("--users", type=int, default=10000)
    ap.add_argument("--seconds", type=int, default=10)
    args = ap.parse_args()
    with loaded_stack("bench-pool", args.users) as (stack, procs):
        tok = token(["admin"])
        route = ROUTES["get_watchlist"]
        for pool in (int(p) for p in args.pools.split(",")):
            api, port = start_api(stack, {"PG_POOL_MAX": str(pool)})
            procs.append(api)
            wrk(port, "get_watchlist", 3, 64, 2, args.users, tok)
            for conns in (64, 256):
                before = server_latency(port)
                r = wrk(port, "mixed_rw", args.seconds, conns, 2, args.users, tok)
                after = server_latency(port)
                print(f"PG_POOL_MAX={pool} mixed_rw at {conns} connections: {r['rps']:.0f} req/s, "
                      f"wrk p99 {r['p99_ms']:.1f} ms; GET watchlist server p99 "
                      f"{server_quantile(after, before, route):.2f} ms, "
                      f"{server_share_under(after, before, route):.1f} % under 10 ms", flush=True)
            r = wrk(port, "post_watchlist", args.seconds, 64, 2, args.users, tok)
            print(f"PG_POOL_MAX={pool} post_watchlist alone: {r['rps']:.0f} req/s, "
                  f"p99 {r['p99_ms']:.1f} ms", flush=True)
            api.stop()
            procs.remove(api)


if __name__ == "__main__":
    main()
