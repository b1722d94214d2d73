"""LOG_LEVEL at run time: LOG_LEVEL_FILE is read at start-up and again on SIGHUP, in profile-api
and profile-relay (docs/operations.md "Changing the log level at run time").

Each test signals only the process it started and watches debug lines appear and disappear.
"""
import json
import os
import signal
import subprocess
import time
import uuid

import requests

import support

SECRET = "log-level-secret-0123456789abcdefghijkl"
ISS, AUD = "profile-test", "profile-api"


def wait_for(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def lines(p, needle):
    return [ln for ln in p.output().splitlines() if needle in ln]


def set_level(path, word):
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(word + "\n")
    os.rename(tmp, path)


def start_api(stack, **extra):
    port = support.free_port()
    env = {
        "DATABASE_URL": stack["DATABASE_URL"], "REDIS_URL": stack["REDIS_URL"],
        "HTTP_PORT": port, "HTTP_THREADS": 1, "PG_POOL_MAX": 2, "JWT_HS256_SECRET": SECRET,
        "JWT_PUBLIC_KEY_FILE": None, "JWT_JWKS_FILE": None, "JWT_ISSUER": ISS,
        "JWT_AUDIENCE": AUD, "RATE_LIMIT_PER_MINUTE": 0, "AUTH_FAILURE_LIMIT_PER_MINUTE": 0,
        "SHUTDOWN_DRAIN_SECONDS": 0, "LOG_LEVEL": "info", "LOG_LEVEL_FILE": None,
        "ACCESS_LOG_SAMPLE": 0,
    }
    env.update(extra)
    p = support.spawn([support.bin_path("profile-api")], env,
                      ready_url=f"http://127.0.0.1:{port}/health/ready", ready_timeout=30)
    return p, f"http://127.0.0.1:{port}"


DEBUG_MARK = "authentication failed"  # log_debug of every refused token (api/server.c)


def refused_request(base):
    r = requests.get(f"{base}/profiles/u1/watchlist", headers={"Authorization": "Bearer x.y.z"})
    assert r.status_code == 401


def test_api_sighup_rereads_log_level_file(stack, tmp_path):
    path = str(tmp_path / "log-level")
    set_level(path, "info")
    p, base = start_api(stack, LOG_LEVEL="debug", LOG_LEVEL_FILE=path)  # the file wins
    try:
        refused_request(base)
        time.sleep(0.2)
        assert lines(p, DEBUG_MARK) == []

        set_level(path, "debug")
        p.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: lines(p, "log level debug (was info"), 5, "SIGHUP was not handled")
        refused_request(base)
        wait_for(lambda: len(lines(p, DEBUG_MARK)) == 1, 5, "no debug line at debug level")

        set_level(path, "warn")
        p.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: lines(p, "log level warn (was debug"), 5, "SIGHUP was not handled")
        refused_request(base)
        time.sleep(0.3)
        assert len(lines(p, DEBUG_MARK)) == 1

        # a bad file keeps the level and says so once
        set_level(path, "verbose")
        p.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: lines(p, "the log level stays warn"), 5, "bad level not reported")
        err = lines(p, "the log level stays warn")
        assert len(err) == 1 and json.loads(err[0])["level"] == "error"
        refused_request(base)
        time.sleep(0.3)
        assert len(lines(p, DEBUG_MARK)) == 1
        assert p.proc.poll() is None
    finally:
        assert p.stop() == 0, p.output()[-3000:]


def test_api_sighup_without_log_level_file_keeps_running(stack):
    p, base = start_api(stack)
    try:
        p.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: lines(p, "LOG_LEVEL_FILE is not set; the log level stays info"), 5,
                 "SIGHUP was not handled")
        assert requests.get(f"{base}/health/live").status_code == 200
    finally:
        assert p.stop() == 0, p.output()[-3000:]


def test_bad_log_level_file_at_start_exits_2(stack, tmp_path):
    path = tmp_path / "log-level"
    path.write_text("chatty\n")
    for value in (str(path), str(tmp_path / "missing")):
        env = dict(os.environ, DATABASE_URL=stack["DATABASE_URL"], JWT_HS256_SECRET=SECRET,
                   JWT_ISSUER=ISS, JWT_AUDIENCE=AUD, LOG_LEVEL_FILE=value,
                   HTTP_PORT=str(support.free_port()))
        env.pop("JWT_PUBLIC_KEY_FILE", None)
        env.pop("JWT_JWKS_FILE", None)
        r = subprocess.run([support.bin_path("profile-api")], env=env, capture_output=True,
                           text=True, timeout=20)
        assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
        assert [ln for ln in r.stderr.splitlines() if ln.startswith("LOG_LEVEL_FILE:")], r.stderr


def test_relay_sighup_rereads_log_level_file(stack, tmp_path):
    url = support.new_database(stack, f"loglevel_{uuid.uuid4().hex[:10]}")
    path = str(tmp_path / "log-level")
    set_level(path, "info")
    port = support.free_port()
    env = {"DATABASE_URL": url, "REDIS_URL": stack["REDIS_URL"],
           "KAFKA_BOOTSTRAP_SERVERS": stack["KAFKA_BOOTSTRAP_SERVERS"],
           "KAFKA_TOPIC": f"loglevel-{uuid.uuid4().hex[:8]}", "RELAY_METRICS_PORT": port,
           "RELAY_POLL_INTERVAL_MS": 100, "LOG_LEVEL": "info", "LOG_LEVEL_FILE": path}
    p = support.spawn([support.bin_path("profile-relay")], env,
                      ready_url=f"http://127.0.0.1:{port}/health/ready", ready_timeout=30)
    claim = '"claim: '  # log_debug of every claim (relay/relay.c), several a second here
    try:
        time.sleep(1.0)
        assert lines(p, claim) == []
        set_level(path, "debug")
        p.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: lines(p, "log level debug (was info"), 5, "SIGHUP was not handled")
        wait_for(lambda: len(lines(p, claim)) >= 3, 10, "no claim debug lines at debug level")

        set_level(path, "info")
        p.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: lines(p, "log level info (was debug"), 5, "SIGHUP was not handled")
        time.sleep(0.3)  # a line being written while the level changed
        before = len(lines(p, claim))
        time.sleep(1.5)
        assert len(lines(p, claim)) == before
        assert requests.get(f"http://127.0.0.1:{port}/health/ready").status_code == 200
    finally:
        assert p.stop() == 0, p.output()[-3000:]
