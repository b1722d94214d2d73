"""The relay's readiness needs the schema it was written for (docs/operations.md "Health"):
/health/ready answers 503 while schema_version() is below the relay's OUTBOX_SCHEMA_VERSION
(relay/outbox.h), and turns 200 by itself once the migrations are there.
"""
import json
import time
import uuid

import requests

import support

RELAY_SCHEMA_VERSION = 11  # relay/outbox.h OUTBOX_SCHEMA_VERSION
STATS_TICK_S = 5  # relay/relay.c STATS_TICK_MS: how often the version is read again


def ready(port):
    r = requests.get(f"http://127.0.0.1:{port}/health/ready", timeout=2)
    return r.status_code, r.json()


def metric(port, name):
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return None


def wait_for(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def test_relay_health_ready_needs_schema_version(stack):
    url = support.new_database(stack, f"relayschema_{uuid.uuid4().hex[:10]}")
    applied = support.run_sql(url, "SELECT max(version) FROM schema_migrations")[0][0]
    assert applied >= RELAY_SCHEMA_VERSION
    # Hide the migration history: schema_version() then reports 0, as on a database that
    # profile-migrate never ran on (the relay's tables stay, so only the version differs).
    support.run_sql(url, "ALTER TABLE schema_migrations RENAME TO schema_migrations_hidden")
    port = support.free_port()
    env = {"DATABASE_URL": url, "REDIS_URL": stack["REDIS_URL"],
           "KAFKA_BOOTSTRAP_SERVERS": stack["KAFKA_BOOTSTRAP_SERVERS"],
           "KAFKA_TOPIC": f"relayschema-{uuid.uuid4().hex[:8]}", "RELAY_METRICS_PORT": port,
           "RELAY_POLL_INTERVAL_MS": 200, "LOG_LEVEL": "info"}
    p = support.spawn([support.bin_path("profile-relay")], env,
                      ready_url=f"http://127.0.0.1:{port}/health/live", ready_timeout=30)
    try:
        # connected and producing, yet not ready: the schema is too old
        wait_for(lambda: metric(port, "profile_relay_pg_up") == 1 and
                 metric(port, "profile_relay_producer_up") == 1, 20, "relay did not connect")
        status, body = ready(port)
        assert status == 503, body
        assert body["postgres"] == "up" and body["schema"] == "too-old", body
        assert metric(port, "profile_relay_schema_ok") == 0
        errs = [ln for ln in p.output().splitlines() if "which this relay needs" in ln]
        assert len(errs) == 1 and json.loads(errs[0])["level"] == "error", errs

        # profile-migrate has run: ready without a restart
        support.run_sql(url, "ALTER TABLE schema_migrations_hidden RENAME TO schema_migrations")
        wait_for(lambda: ready(port)[0] == 200, STATS_TICK_S * 3, "relay did not turn ready")
        assert ready(port)[1]["schema"] == "ok"
        assert metric(port, "profile_relay_schema_ok") == 1
        assert [ln for ln in p.output().splitlines() if f"schema version {applied}: ready" in ln]

        # and back to 503 when the database it talks to reports an older schema
        support.run_sql(url, "ALTER TABLE schema_migrations RENAME TO schema_migrations_hidden")
        wait_for(lambda: ready(port)[0] == 503, STATS_TICK_S * 3, "relay stayed ready")
        assert p.proc.poll() is None
    finally:
        assert p.stop() == 0, p.output()[-3000:]
