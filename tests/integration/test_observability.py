"""Observability: Prometheus expositions checked by promtool (relay and API), the relay's publish
spans received by tools/otlp-receiver.py (trace, parent and link taken from the outbox row's
traceparent; sampling by flag and ratio), and the relay's JSON log lines without secrets.

Relay helpers (fresh database per test, SQL row inserts, Kafka collector) come from
test_relay_e2e.py; the API is started as in api_helpers.py.
"""
import json
import os
import subprocess
import tempfile
import time
import uuid

import pytest
import requests

import support
from api_helpers import new_user, start_api
from test_relay_e2e import Collector, Relay, cleanup, emit, fresh_db, run_sql, wait_for

PROMTOOL = "/usr/bin/promtool"
RECEIVER = str(support.REPO / "tools" / "otlp-receiver.py")

TRACE_A = "5bd66ef5095369c7b0d1f8f4bd33716a"
SPAN_A = "c532cb4098ac3dd2"
TRACE_B = "0af7651916cd43dd8448eb211c80319c"
SPAN_B = "b7ad6b7169203331"


def promtool_check(text):
    """Runs `promtool check metrics` on an exposition; returns (exit status, its output)."""
    r = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True,
                       text=True, timeout=30)
    return r.returncode, (r.stdout + r.stderr).strip()


class Receiver:
    """tools/otlp-receiver.py on a kernel-chosen port, writing spans to a file of its own."""

    def __init__(self):
        fd, self.path = tempfile.mkstemp(prefix="otlp-spans-", suffix=".jsonl")
        os.close(fd)
        self.proc = support.spawn(["/usr/bin/python3", RECEIVER, "0", self.path], {})
        deadline = time.monotonic() + 10
        while True:
            first = self.proc.output().split("\n", 1)
            if len(first) == 2 and first[0].strip().isdigit():
                self.port = int(first[0])
                break
            if self.proc.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"otlp-receiver did not start:\n{self.proc.output()}")
            time.sleep(0.05)
        self.endpoint = f"http://127.0.0.1:{self.port}"

    def spans(self):
        with open(self.path, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]

    def stop(self):
        self.proc.stop(timeout=5)
        os.unlink(self.path)


@pytest.fixture
def topic():
    return f"obs-test-{uuid.uuid4().hex[:10]}"


def uid(prefix="o"):
    return f"{prefix}{uuid.uuid4().hex[:12]}"


def attrs(span):
    out = {}
    for a in span.get("attributes", []):
        v = a["value"]
        out[a["key"]] = v.get("stringValue", v.get("intValue"))
    return out


# ---------------------------------------------------------------------------------------------
# metrics


def test_relay_metrics_pass_promtool(stack, topic, cleanup):
    url = fresh_db(stack, "obsm")
    relay = Relay(stack, url, topic)
    cleanup.append(relay)
    user = uid()
    emit(url, user, 3)
    emit(url, user, 1, type="VideoRated")
    wait_for(lambda: relay.metric("profile_relay_commit_to_delivery_seconds_count") == 4, 20,
             "4 deliveries")
    text = requests.get(f"http://127.0.0.1:{relay.port}/metrics", timeout=2).text
    rc, out = promtool_check(text)
    assert rc == 0 and out == "", f"promtool on the relay's /metrics: {out}"

    m = relay.metrics()
    info = [k for k in m if k.startswith("profile_relay_build_info{")]
    assert len(info) == 1 and m[info[0]] == 1, info
    assert 'version="' in info[0] and 'commit="' in info[0]
    assert m['profile_relay_events_published_total{type="WatchlistUpdated"}'] == 3
    assert m['profile_relay_events_published_total{type="VideoRated"}'] == 1
    for name in ("profile_relay_events_failed_total{type=\"WatchlistUpdated\"}", "profile_relay_pending_rows",
                 "profile_relay_oldest_pending_age_seconds", "profile_relay_partitions_held",
                 "profile_relay_dead_letters", "profile_relay_dead_lettered_total",
                 "profile_relay_commit_to_delivery_seconds_bucket{le=\"+Inf\"}",
                 "profile_relay_otel_spans_exported_total", "profile_relay_otel_spans_dropped_total",
                 "profile_relay_otel_spans_failed_total"):
        assert name in m, name
    # process metrics from /proc describe this very process
    assert m["process_resident_memory_bytes"] > 1e6
    assert m["process_open_fds"] >= 5
    assert m["process_cpu_seconds_total"] >= 0
    assert abs(m["process_start_time_seconds"] - time.time()) < 120
    assert m["profile_relay_otel_spans_exported_total"] == 0  # no endpoint: tracing is off
    assert relay.stop() == 0


def parse_metrics(text):
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def test_api_metrics_pass_promtool(stack):
    api = start_api(stack)
    try:
        user = new_user()
        assert api.post(f"/profiles/{user}/watchlist", user, {"videoId": "v1"}).status_code == 201
        assert api.get(f"/profiles/{user}/watchlist", user).status_code == 200
        assert api.get(f"/profiles/{user}", user).status_code == 404
        key = {"Idempotency-Key": uuid.uuid4().hex}
        assert api.post(f"/profiles/{user}/watchlist", user, {"videoId": "v2"},
                        headers=key).status_code == 201
        r = api.post(f"/profiles/{user}/watchlist", user, {"videoId": "v2"}, headers=key)
        assert r.status_code == 201 and r.headers.get("Idempotent-Replayed") == "true"
        resp = requests.get(api.url("/metrics"), timeout=5)
        assert resp.status_code == 200
        rc, out = promtool_check(resp.text)
        assert rc == 0 and out == "", f"promtool on the API's /metrics: {out}"

        m = parse_metrics(resp.text)
        info = [k for k in m if k.startswith("profile_api_build_info{")]
        assert len(info) == 1 and m[info[0]] == 1, info
        assert 'version="' in info[0] and 'commit="' in info[0]
        assert m["profile_api_requests_in_flight"] >= 1  # this scrape
        assert m["profile_api_idempotent_replays_total"] == 1
        db = 'profile_api_db_duration_seconds_count{statement="%s"}'
        assert m[db % "watchlist_add"] == 3
        assert m[db % "get_profile"] == 1 and m[db % "list_watchlist"] == 1
        assert m['profile_api_db_duration_seconds_bucket{statement="watchlist_add",le="+Inf"}'] == 3
        rd = 'profile_api_redis_duration_seconds_count{operation="%s"}'
        assert m[rd % "ratelimit"] == 5
        assert m[rd % "cache.get"] == 1 and m[rd % "cache.invalidate"] >= 2
        for name in ("profile_api_otel_spans_exported_total", "profile_api_otel_spans_dropped_total",
                     "profile_api_otel_spans_failed_total"):
            assert m[name] == 0, name  # no endpoint: tracing is off
        assert m["process_resident_memory_bytes"] > 1e6
        assert m["process_open_fds"] >= 5
        assert m["process_cpu_seconds_total"] >= 0
        assert abs(m["process_start_time_seconds"] - time.time()) < 120
        assert requests.get(api.url("/metrics"), timeout=5).status_code == 200
    finally:
        api.stop()


def test_api_access_log_fields_and_no_token(stack):
    """Every line the API writes is one JSON object; none holds a token; each request's access
    line has request_id, trace_id, method, route, status, duration_ms and (authenticated) user."""
    from api_helpers import token
    api = start_api(stack, LOG_LEVEL="debug", ACCESS_LOG_SAMPLE="1")
    user = new_user()
    tokens = []
    sent = []
    try:
        def call(method, path, body=None, tok=None, expect=None, **hdr):
            h = dict(hdr)
            if tok is not None:
                tokens.append(tok)
                h["Authorization"] = "Bearer " + tok
            rid = uuid.uuid4().hex
            h["X-Request-Id"] = rid
            data = None
            if body is not None:
                data = json.dumps(body).encode()
                h["Content-Type"] = "application/json"
            r = requests.request(method, api.url(path), data=data, headers=h, timeout=10)
            if expect is not None:
                assert r.status_code == expect, (path, r.status_code, r.text)
            sent.append((rid, method, r.status_code))
            return r

        good = token(user)
        call("PUT", f"/profiles/{user}", {"displayName": "L"}, good, 201)
        call("GET", f"/profiles/{user}", None, good, 200,
             traceparent=f"00-{TRACE_B}-{SPAN_B}-01")
        call("POST", f"/profiles/{user}/watchlist", {"videoId": "v1"}, good, 201)
        call("GET", f"/profiles/{user}/watchlist", None, good, 200)
        call("GET", f"/profiles/{user}", None, good[:-4] + "AAAA", 401)  # bad signature
        call("GET", f"/profiles/{user}", None, token(user, roles=None), 403)
        call("GET", f"/profiles/{new_user()}", None, good, 403)
        call("POST", f"/profiles/{user}/ratings", {"videoId": "v1", "rating": 9}, good, 400)
        call("GET", "/nope", None, good, 404)
        call("GET", "/health/live", None, None, 200)
    finally:
        assert api.stop() == 0
    lines = api.proc.output().splitlines()
    assert lines
    recs = []
    for line in lines:
        for t in tokens:
            assert t not in line, f"token in the log: {line}"
            assert t.split(".")[2] not in line, f"token signature in the log: {line}"
        rec = json.loads(line)
        assert isinstance(rec, dict) and rec["service"] == "profile-api", line
        recs.append(rec)
    access = {r["request_id"]: r for r in recs if r.get("module") == "access"}
    for rid, method, status in sent:
        rec = access[rid]
        assert rec["method"] == method and rec["status"] == status, rec
        assert isinstance(rec["duration_ms"], (int, float)) and rec["duration_ms"] >= 0
        assert isinstance(rec["route"], str) and rec["route"], rec
        assert len(rec["trace_id"]) == 32 and int(rec["trace_id"], 16) != 0, rec
    by_status = {(m, s): access[rid] for rid, m, s in sent}
    assert by_status[("PUT", 201)]["user"] == user
    assert by_status[("PUT", 201)]["route"] == "/profiles/{userId}"
    assert by_status[("GET", 401)].get("user") is None
    assert [r for r in access.values() if r["trace_id"] == TRACE_B][0]["status"] == 200
    assert by_status[("POST", 201)]["route"] == "/profiles/{userId}/watchlist"


# ---------------------------------------------------------------------------------------------
# tracing


def test_relay_publish_spans(stack, topic, cleanup):
    rcv = Receiver()
    cleanup.append(rcv)
    url = fresh_db(stack, "obst")
    col = Collector(stack, topic)
    cleanup.append(col)
    relay = Relay(stack, url, topic, OTEL_EXPORTER_OTLP_ENDPOINT=rcv.endpoint)
    cleanup.append(relay)

    a, b, c, d = uid("a"), uid("b"), uid("c"), uid("d")
    emit(url, a, 1, traceparent=f"00-{TRACE_A}-{SPAN_A}-01")        # sampled
    emit(url, b, 1, traceparent=f"00-{TRACE_B}-{SPAN_B}-00")        # not sampled
    emit(url, c, 1)                                                 # no traceparent
    emit(url, d, 1, traceparent=f"00-{TRACE_B[::-1]}-{SPAN_B}-01", pad=1_100_000)  # too large
    col.wait_users({a: 1, b: 1, c: 1}, timeout=20)
    wait_for(lambda: run_sql(url, "SELECT count(*) FROM outbox_dead_letters")[0][0] == 1, 15,
             "the dead letter")
    headers = {ev["key"]: ev["headers"] for ev in col.snapshot()}
    wait_for(lambda: relay.metric("profile_relay_otel_spans_exported_total") >= 3, 10, "spans exported")
    assert relay.metric("profile_relay_otel_spans_dropped_total") == 0
    assert relay.stop() == 0  # flushes the exporter
    spans = rcv.spans()
    by_trace = {}
    for s in spans:
        by_trace.setdefault(s["traceId"], []).append(s)

    # a: in the trace of the row, child of (and linked to) the API's span
    [sa] = by_trace.pop(TRACE_A)
    assert sa["parentSpanId"] == SPAN_A
    assert sa["links"] == [{"traceId": TRACE_A, "spanId": SPAN_A}]
    assert sa["spanId"] not in (SPAN_A, "0" * 16) and len(sa["spanId"]) == 16
    assert sa["name"] == "publish WatchlistUpdated"
    assert sa["kind"] == 4  # PRODUCER
    assert sa["service.name"] == "profile-relay"
    assert sa["status"]["code"] != 2
    at = attrs(sa)
    assert at["messaging.system"] == "kafka"
    assert at["messaging.destination.name"] == topic
    assert at["messaging.kafka.message.key"] == a
    assert at["cloudevents.event_id"] == headers[a]["ce_id"]
    assert at["ce_sequence"] == "1"
    start, end = int(sa["startTimeUnixNano"]), int(sa["endTimeUnixNano"])
    assert 0 < start <= end and abs(end / 1e9 - time.time()) < 120
    assert headers[a]["traceparent"] == f"00-{TRACE_A}-{SPAN_A}-01"  # header unchanged

    # b: flag 00, nothing exported
    assert TRACE_B not in by_trace

    # c: the relay's new trace, the same ids as the Kafka header; the span is its root
    _, trace_c, span_c, flags_c = headers[c]["traceparent"].split("-")
    assert flags_c == "01"
    [sc] = by_trace.pop(trace_c)
    assert sc["spanId"] == span_c and "parentSpanId" not in sc and "links" not in sc
    assert attrs(sc)["messaging.kafka.message.key"] == c

    # d: never publishable, each attempt's span carries the error
    spans_d = by_trace.pop(TRACE_B[::-1])
    assert spans_d
    for sd in spans_d:
        assert sd["status"]["code"] == 2 and sd["parentSpanId"] == SPAN_B
        assert attrs(sd)["messaging.kafka.message.key"] == d and attrs(sd).get("error.type")

    assert by_trace == {}, f"unexpected spans: {by_trace}"


def test_trace_from_http_write_to_kafka_event(stack, topic, cleanup):
    """A write continues the caller's trace; its event's publish span is a child of the API's
    server span (the span id stored with the outbox row and sent in the Kafka header). When the
    API exports its own spans to the same receiver, the whole chain is checked too."""
    rcv = Receiver()
    cleanup.append(rcv)
    url = fresh_db(stack, "obse")
    api = start_api(stack, DATABASE_URL=support.role_url(url, "api"), OTEL_EXPORTER_OTLP_ENDPOINT=rcv.endpoint)
    cleanup.append(api)
    col = Collector(stack, topic)
    cleanup.append(col)
    relay = Relay(stack, url, topic, OTEL_EXPORTER_OTLP_ENDPOINT=rcv.endpoint)
    cleanup.append(relay)

    user, client_span = new_user(), "1122334455667788"
    trace = uuid.uuid4().hex
    r = api.post(f"/profiles/{user}/watchlist", user, {"videoId": "v1"},
                 headers={"traceparent": f"00-{trace}-{client_span}-01"})
    assert r.status_code == 201, r.text
    [(stored,)] = run_sql(url, "SELECT traceparent FROM outbox WHERE user_id = %s", [user])
    _, stored_trace, server_span, _ = stored.split("-")
    assert stored_trace == trace and server_span != client_span

    col.wait_users({user: 1}, timeout=20)
    [ev] = [e for e in col.snapshot() if e["key"] == user]
    assert ev["headers"]["traceparent"] == stored
    wait_for(lambda: any(s["name"].startswith("publish ") for s in rcv.spans()), 10,
             "the publish span")
    assert relay.stop() == 0
    assert api.stop() == 0
    spans = [s for s in rcv.spans() if s["traceId"] == trace]
    [pub] = [s for s in spans if s["service.name"] == "profile-relay"]
    assert pub["parentSpanId"] == server_span
    assert pub["links"] == [{"traceId": trace, "spanId": server_span}]
    assert attrs(pub)["cloudevents.event_id"] == ev["headers"]["ce_id"]
    # the API's own spans: client -> server -> (pg, redis children; publish in the relay)
    [srv] = [s for s in spans if s["spanId"] == server_span]
    assert srv["parentSpanId"] == client_span
    assert srv["service.name"] == "profile-api"
    assert srv["name"] == "POST /profiles/{userId}/watchlist"
    assert srv["kind"] == 2  # SERVER
    assert srv["status"].get("code") != 2
    at = attrs(srv)
    assert at["http.request.method"] == "POST"
    assert at["http.route"] == "/profiles/{userId}/watchlist"
    assert at["http.response.status_code"] == "201"
    assert at["user"] == user and at["request_id"] == r.headers["X-Request-Id"]
    children = [s for s in spans if s.get("parentSpanId") == server_span
                and s["service.name"] == "profile-api"]
    pg = [s for s in children if s["name"].startswith("pg ")]
    assert [s["name"] for s in pg] == ["pg watchlist_add"], children
    assert attrs(pg[0])["db.system"] == "postgresql" and pg[0]["kind"] == 3  # CLIENT
    redis_names = sorted(s["name"] for s in children if s["name"].startswith("redis "))
    assert redis_names == ["redis cache.invalidate", "redis ratelimit"], children
    for c in children:
        assert int(srv["startTimeUnixNano"]) <= int(c["startTimeUnixNano"])
        assert int(c["endTimeUnixNano"]) <= int(srv["endTimeUnixNano"])
        assert c["spanId"] not in (server_span, client_span)
    assert {s["spanId"] for s in spans} == {server_span, pub["spanId"]} | {
        c["spanId"] for c in children}


def test_api_read_spans_and_new_trace(stack, cleanup):
    """A GET without traceparent starts a sampled trace: the server span is the root, the list
    cache lookup, the statement and the cache fill are its children."""
    rcv = Receiver()
    cleanup.append(rcv)
    api = start_api(stack, OTEL_EXPORTER_OTLP_ENDPOINT=rcv.endpoint)
    cleanup.append(api)
    user = new_user()
    r = api.get(f"/profiles/{user}/watchlist", user)
    assert r.status_code == 200, r.text
    rid = r.headers["X-Request-Id"]
    assert api.stop() == 0
    spans = rcv.spans()
    [srv] = [s for s in spans if attrs(s).get("request_id") == rid]
    assert "parentSpanId" not in srv and srv["name"] == "GET /profiles/{userId}/watchlist"
    kids = sorted(s["name"] for s in spans if s.get("parentSpanId") == srv["spanId"])
    assert kids == ["pg list_watchlist", "redis cache.fill", "redis cache.get",
                    "redis ratelimit"], kids
    assert all(s["traceId"] == srv["traceId"] for s in spans
               if s.get("parentSpanId") == srv["spanId"])


def test_api_unsampled_incoming_exports_nothing(stack, cleanup):
    rcv = Receiver()
    cleanup.append(rcv)
    url = fresh_db(stack, "obsu")
    api = start_api(stack, DATABASE_URL=support.role_url(url, "api"), OTEL_EXPORTER_OTLP_ENDPOINT=rcv.endpoint)
    cleanup.append(api)
    user = new_user()
    trace_off, trace_on = uuid.uuid4().hex, uuid.uuid4().hex
    r = api.post(f"/profiles/{user}/watchlist", user, {"videoId": "v1"},
                 headers={"traceparent": f"00-{trace_off}-{SPAN_A}-00"})
    assert r.status_code == 201, r.text
    r = api.post(f"/profiles/{user}/watchlist", user, {"videoId": "v2"},
                 headers={"traceparent": f"00-{trace_on}-{SPAN_A}-01"})
    assert r.status_code == 201, r.text
    stored = [tp for (tp,) in run_sql(url, "SELECT traceparent FROM outbox WHERE user_id = %s "
                                           "ORDER BY seq", [user])]
    assert stored[0].startswith(f"00-{trace_off}-") and stored[0].endswith("-00"), stored
    assert stored[1].startswith(f"00-{trace_on}-") and stored[1].endswith("-01"), stored
    assert api.stop() == 0
    traces = {s["traceId"] for s in rcv.spans()}
    assert trace_on in traces  # the exporter works ...
    assert trace_off not in traces  # ... and the caller's "not sampled" is honoured


def test_api_sampler_ratio_zero_exports_nothing(stack, cleanup):
    rcv = Receiver()
    cleanup.append(rcv)
    url = fresh_db(stack, "obsr")
    api = start_api(stack, DATABASE_URL=support.role_url(url, "api"), OTEL_EXPORTER_OTLP_ENDPOINT=rcv.endpoint,
                    OTEL_TRACES_SAMPLER_ARG="0")
    cleanup.append(api)
    user = new_user()
    for i in range(5):
        assert api.post(f"/profiles/{user}/watchlist", user, {"videoId": f"v{i}"},
                        headers={"traceparent": f"00-{TRACE_A}-{SPAN_A}-01"}).status_code == 201
    assert api.post(f"/profiles/{user}/watchlist", user, {"videoId": "vx"}).status_code == 201
    assert api.get(f"/profiles/{user}/watchlist", user).status_code == 200
    stored = [tp for (tp,) in run_sql(url, "SELECT traceparent FROM outbox WHERE user_id = %s",
                                      [user])]
    assert len(stored) == 6 and all(tp.endswith("-00") for tp in stored), stored
    text = requests.get(api.url("/metrics"), timeout=5).text
    assert "profile_api_otel_spans_exported_total 0" in text.splitlines()
    assert api.stop() == 0
    assert rcv.spans() == []


def test_api_bad_otlp_endpoint_exit_2(stack):
    from api_helpers import api_env
    env = api_env(stack, support.free_port(),
                  OTEL_EXPORTER_OTLP_ENDPOINT="https://collector.example:4318")
    p = support.spawn([support.bin_path("profile-api")], env)
    assert p.proc.wait(10) == 2
    errors = [ln for ln in p.output().splitlines() if not ln.startswith("{")]
    assert errors == ["OTEL_EXPORTER_OTLP_ENDPOINT: only http:// endpoints are supported"], errors


def test_relay_bad_otlp_endpoint_exit_2(stack):
    env = {"DATABASE_URL": stack["RELAY_DATABASE_URL"], "REDIS_URL": stack["REDIS_URL"],
           "KAFKA_BOOTSTRAP_SERVERS": stack["KAFKA_BOOTSTRAP_SERVERS"], "RELAY_METRICS_PORT": "0",
           "OTEL_EXPORTER_OTLP_ENDPOINT": "https://collector.example:4318"}
    p = support.spawn([support.bin_path("profile-relay")], env)
    assert p.proc.wait(10) == 2
    errors = [ln for ln in p.output().splitlines() if not ln.startswith("{")]
    assert errors == ["OTEL_EXPORTER_OTLP_ENDPOINT: only http:// endpoints are supported"], errors


def test_relay_sampler_ratio_zero_exports_nothing(stack, topic, cleanup):
    rcv = Receiver()
    cleanup.append(rcv)
    url = fresh_db(stack, "obsz")
    relay = Relay(stack, url, topic, OTEL_EXPORTER_OTLP_ENDPOINT=rcv.endpoint,
                  OTEL_TRACES_SAMPLER_ARG="0")
    cleanup.append(relay)
    users = [uid() for _ in range(5)]
    for u in users:
        emit(url, u, 2, traceparent=f"00-{TRACE_A}-{SPAN_A}-01")
    emit(url, uid(), 2)
    wait_for(lambda: relay.metric("profile_relay_commit_to_delivery_seconds_count") == 12, 20,
             "12 deliveries")
    assert relay.metric("profile_relay_otel_spans_exported_total") == 0
    assert relay.stop() == 0
    assert rcv.spans() == []


# ---------------------------------------------------------------------------------------------
# logs


def check_log_lines(text, secret):
    lines = text.splitlines()
    assert lines, "no output"
    for line in lines:
        assert secret not in line, f"secret in the log: {line}"
        rec = json.loads(line)  # every line is one JSON object
        assert isinstance(rec, dict), line
        for key in ("ts", "level", "service", "module", "msg"):
            assert isinstance(rec.get(key), str) and rec[key], (key, line)
        assert rec["service"] == "profile-relay"
        assert rec["level"] in ("debug", "info", "warn", "error")
    return [json.loads(line) for line in lines]


def test_relay_logs_json_without_password(stack, topic, cleanup):
    secret = "S3cret-" + uuid.uuid4().hex[:10]
    url = fresh_db(stack, "obsl")
    # same database, with a password (loopback trust auth ignores it)
    owner = support.ROLE_USERS["owner"]
    with_pw = url.replace(f"{owner}@", f"{owner}:{secret}@", 1)
    assert secret in with_pw
    relay = Relay(stack, with_pw, topic, LOG_LEVEL="debug")
    cleanup.append(relay)
    user = uid()
    emit(url, user, 3)
    wait_for(lambda: relay.metric("profile_relay_commit_to_delivery_seconds_count") == 3, 20,
             "3 deliveries")
    assert relay.stop() == 0
    recs = check_log_lines(relay.proc.output(), secret)
    config = [r for r in recs if "config" in r]
    assert config and "***" in json.dumps(config[0]["config"]), "effective config not logged"

    # key/value DSN, server unreachable: connection errors are logged, the password is not
    secret2 = "Kv-" + uuid.uuid4().hex[:10]
    dead = support.free_port()
    dsn = f"host=127.0.0.1 port={dead} dbname=profile user=profile password={secret2}"
    relay2 = Relay(stack, dsn, topic)
    cleanup.append(relay2)
    time.sleep(1.5)
    assert relay2.stop() == 0
    recs = check_log_lines(relay2.proc.output(), secret2)
    assert any(r["level"] == "error" for r in recs), "no connection error logged"
