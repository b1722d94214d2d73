"""profile-relay and its Kafka connection: readiness and leases follow the brokers, the security
variables are validated at start-up and reach the wire.

- Brokers down (kafka-mock `down B`): /health/ready 503 and no partition leased until the
  producer has metadata; up again: ready, partitions taken, events flow.
- Bad combinations of KAFKA_SECURITY_PROTOCOL / KAFKA_SASL_* / KAFKA_SSL_CA_FILE and a broker
  scheme that disagrees: exit 2 with one line naming the variable, the password never printed.
  A matching scheme prefix (PLAINTEXT://host:port) is accepted and publishes.
- TLS: kafka-mock speaks plaintext only and advertises its own addresses, so a TLS hop to it
  cannot be built here; instead a local TLS listener (Python ssl, a throw-away CA made with
  openssl) checks that KAFKA_SECURITY_PROTOCOL=ssl with KAFKA_SSL_CA_FILE completes a verified
  handshake and then speaks Kafka, and that another CA is refused.
- SASL: librdkafka 2.0.2's mock cluster has no SASL handlers. A minimal Kafka-protocol listener
  answers ApiVersions and SaslHandshake and records the SaslAuthenticate token: the PLAIN
  credentials the relay sends are the configured ones.
"""
import os
import socket
import ssl
import struct
import subprocess
import tempfile
import threading
import time

import pytest
import requests

import support
import test_relay_e2e as e2e
from support import bin_path, free_port, spawn

topic = e2e.topic  # fixtures shared with test_relay_e2e.py
cleanup = e2e.cleanup


def ready_code(port):
    try:
        return requests.get(f"http://127.0.0.1:{port}/health/ready", timeout=2).status_code
    except requests.RequestException:
        return None


def held_partitions(url):
    return support.run_sql(
        url, "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
             "WHERE l.locktype = 'advisory' AND l.objsubid = 2 AND l.granted "
             "AND d.datname = current_database()")[0][0]


def test_relay_not_ready_and_leases_nothing_until_a_broker_answers(stack, topic, cleanup):
    mock = e2e.OwnMock()
    cleanup.append(mock)
    for b in (1, 2, 3):
        mock.control(f"down {b}")
    url = e2e.fresh_db(stack, "kdown")
    relay = e2e.Relay(stack, url, topic, bootstrap=mock.bootstrap)
    cleanup.append(relay)
    time.sleep(4)  # several lease ticks
    assert ready_code(relay.port) == 503
    assert held_partitions(url) == 0
    assert relay.metric("profile_relay_partitions_held") == 0
    assert relay.metric("profile_relay_producer_up") == 0

    for b in (1, 2, 3):
        mock.control(f"up {b}")
    e2e.wait_for(lambda: ready_code(relay.port) == 200, 30, "ready once brokers answer")
    e2e.wait_for(lambda: held_partitions(url) == 64, 15, "all partitions leased")
    col = e2e.Collector(stack, topic, bootstrap=mock.bootstrap)
    cleanup.append(col)
    users = [e2e.uid() for _ in range(10)]
    e2e.emit_many(url, users, 2)
    col.wait_users({u: 2 for u in users}, timeout=30)

    # brokers lost while running: readiness follows within a few probe periods
    for b in (1, 2, 3):
        mock.control(f"down {b}")
    e2e.wait_for(lambda: ready_code(relay.port) == 503, 15, "503 while no broker answers")
    for b in (1, 2, 3):
        mock.control(f"up {b}")
    e2e.wait_for(lambda: ready_code(relay.port) == 200, 30, "ready again")
    assert relay.stop() == 0


SECRET = "kafka-secret-pw-0451"


@pytest.mark.parametrize("env,bad", [
    ({"KAFKA_BOOTSTRAP_SERVERS": "SASL_SSL://broker.example:9093"}, "KAFKA_BOOTSTRAP_SERVERS"),
    ({"KAFKA_SECURITY_PROTOCOL": "sasl_ssl", "KAFKA_SASL_MECHANISM": "PLAIN",
      "KAFKA_SASL_USERNAME": "relay"}, "KAFKA_SASL_PASSWORD"),
    ({"KAFKA_SECURITY_PROTOCOL": "sasl_ssl", "KAFKA_SASL_USERNAME": "relay",
      "KAFKA_SASL_PASSWORD": SECRET}, "KAFKA_SASL_MECHANISM"),
    ({"KAFKA_SASL_MECHANISM": "PLAIN"}, "KAFKA_SASL_MECHANISM"),
    ({"KAFKA_SECURITY_PROTOCOL": "ssl", "KAFKA_SSL_CA_FILE": "/nonexistent/ca.pem"},
     "KAFKA_SSL_CA_FILE"),
    ({"KAFKA_SECURITY_PROTOCOL": "tls"}, "KAFKA_SECURITY_PROTOCOL"),
    ({"KAFKA_SECURITY_PROTOCOL": "plaintext", "KAFKA_SASL_USERNAME": "relay",
      "KAFKA_SASL_PASSWORD": SECRET}, None),  # two lines: username and password
])
def test_relay_security_config_errors_exit_2(stack, env, bad):
    base = {"DATABASE_URL": stack["DATABASE_URL"], "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
            "RELAY_METRICS_PORT": "0", "KAFKA_SECURITY_PROTOCOL": None,
            "KAFKA_SASL_MECHANISM": None, "KAFKA_SASL_USERNAME": None,
            "KAFKA_SASL_PASSWORD": None, "KAFKA_SSL_CA_FILE": None}
    p = spawn([bin_path("profile-relay")], dict(base, **env))
    assert p.proc.wait(10) == 2, p.output()
    out = p.output()
    lines = [ln for ln in out.splitlines() if ln.strip()]
    names = sorted(ln.split(":")[0] for ln in lines)
    if bad is None:
        assert names == ["KAFKA_SASL_PASSWORD", "KAFKA_SASL_USERNAME"], lines
    else:
        assert names == [bad], lines
    assert SECRET not in out


def test_relay_accepts_a_matching_scheme_prefix_and_masks_the_password(stack, topic, cleanup):
    url = e2e.fresh_db(stack, "kscheme")
    servers = ",".join("PLAINTEXT://" + b for b in stack["KAFKA_BOOTSTRAP_SERVERS"].split(","))
    col = e2e.Collector(stack, topic)
    cleanup.append(col)
    relay = e2e.Relay(stack, url, topic, bootstrap=servers)
    cleanup.append(relay)
    users = [e2e.uid() for _ in range(5)]
    e2e.emit_many(url, users, 3)
    col.wait_users({u: 3 for u in users}, timeout=30)
    out = relay.proc.output()
    assert "No brokers configured" not in out
    assert relay.stop() == 0


# ---------------------------------------------------------------------------------------------
# a TLS listener and a SASL-speaking listener, both minimal


def make_ca(tmp, name):
    """A self-signed certificate for 127.0.0.1 (its own CA) and its key."""
    cert, key = os.path.join(tmp, name + ".pem"), os.path.join(tmp, name + ".key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                    "-out", cert, "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    return cert, key


def read_request(sock):
    """One Kafka request: (api_key, api_version, correlation_id, client_id, body)."""
    def exact(n):
        buf = b""
        while len(buf) < n:
            chunk = sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("closed")
            buf += chunk
        return buf
    size, = struct.unpack(">i", exact(4))
    data = exact(size)
    key, ver, corr, clen = struct.unpack(">hhih", data[:10])
    client = data[10:10 + clen].decode() if clen >= 0 else None
    return key, ver, corr, client, data[10 + max(clen, 0):]


class Listener:
    """Accepts connections on a free port in a thread; `serve(sock)` handles each one."""

    def __init__(self, serve, wrap=None):
        self.port = free_port()
        self.events = []
        self._srv = socket.create_server(("127.0.0.1", self.port))
        self._srv.settimeout(0.2)
        self._serve, self._wrap = serve, wrap
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                conn, _ = self._srv.accept()
            except socket.timeout:
                continue
            conn.settimeout(5)
            try:
                if self._wrap is not None:
                    conn = self._wrap(conn)
                    self.events.append(("tls-ok",))
                self._serve(self, conn)
            except ssl.SSLError as e:
                self.events.append(("tls-failed", str(e)))
            except (OSError, ConnectionError, struct.error):
                pass
            finally:
                conn.close()

    def stop(self):
        self._stop.set()
        self._thread.join(5)
        self._srv.close()


def record_first_request(listener, conn):
    key, ver, _, client, _ = read_request(conn)
    listener.events.append(("request", key, client))


def test_relay_tls_hop_verifies_the_ca(stack, topic, cleanup):
    tmp = tempfile.mkdtemp(prefix="relay-tls-")
    cert, key = make_ca(tmp, "broker")
    other, _ = make_ca(tmp, "other")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    lst = Listener(record_first_request, wrap=lambda c: ctx.wrap_socket(c, server_side=True))
    cleanup.append(lst)
    url = e2e.fresh_db(stack, "ktls")

    relay = e2e.Relay(stack, url, topic, bootstrap=f"SSL://127.0.0.1:{lst.port}",
                      KAFKA_SECURITY_PROTOCOL="ssl", KAFKA_SSL_CA_FILE=cert)
    cleanup.append(relay)
    e2e.wait_for(lambda: ("request", 18, "profile-relay") in lst.events, 20,
                 "an ApiVersions request over verified TLS")
    assert ready_code(relay.port) == 503  # no real broker behind it
    assert held_partitions(url) == 0
    assert relay.stop() == 0

    lst.events.clear()
    relay = e2e.Relay(stack, url, topic, bootstrap=f"127.0.0.1:{lst.port}",
                      KAFKA_SECURITY_PROTOCOL="ssl", KAFKA_SSL_CA_FILE=other)
    cleanup.append(relay)
    e2e.wait_for(lambda: any(ev[0] == "tls-failed" for ev in lst.events), 20,
                 "the handshake refused by the relay")
    assert not [ev for ev in lst.events if ev[0] == "request"], lst.events
    e2e.wait_for(lambda: "certificate verify failed" in relay.proc.output(), 10,
                 "the relay says why")
    assert relay.stop() == 0


def _str16(s):
    b = s.encode()
    return struct.pack(">h", len(b)) + b


def sasl_broker(listener, conn):
    """ApiVersions (any version: answered in v0 form), SaslHandshake v0/v1, then records the
    SaslAuthenticate token and fails the authentication."""
    while True:
        key, ver, corr, client, body = read_request(conn)
        if key == 18:  # ApiVersions: SaslHandshake 0-1, SaslAuthenticate 0-1, Metadata 0-4
            if ver >= 3:  # flexible response body: compact array, tagged fields
                keys = [(17, 0, 1), (36, 0, 1), (3, 0, 4), (18, 0, 3)]
                out = struct.pack(">h", 0) + bytes([len(keys) + 1])
                out += b"".join(struct.pack(">hhh", *k) + b"\x00" for k in keys)
                out += struct.pack(">i", 0) + b"\x00"
            else:
                keys = [(17, 0, 1), (36, 0, 1), (3, 0, 4), (18, 0, 2)]
                out = struct.pack(">hi", 0, len(keys)) + b"".join(
                    struct.pack(">hhh", *k) for k in keys)
                if ver >= 1:
                    out += struct.pack(">i", 0)
        elif key == 17:  # SaslHandshake
            mech = body[2:2 + struct.unpack(">h", body[:2])[0]].decode()
            listener.events.append(("mechanism", mech))
            out = struct.pack(">h", 0) + struct.pack(">i", 1) + _str16("PLAIN")
        elif key == 36:  # SaslAuthenticate v0/v1: bytes auth_bytes
            n, = struct.unpack(">i", body[:4])
            listener.events.append(("token", body[4:4 + n]))
            out = struct.pack(">h", 58) + _str16("test listener: authentication refused")
            out += struct.pack(">i", 0)
            if ver >= 1:
                out += struct.pack(">q", 0)
        else:
            listener.events.append(("unexpected", key))
            return
        resp = struct.pack(">i", corr) + out
        conn.sendall(struct.pack(">i", len(resp)) + resp)


def test_relay_sends_the_configured_sasl_plain_credentials(stack, topic, cleanup):
    lst = Listener(sasl_broker)
    cleanup.append(lst)
    url = e2e.fresh_db(stack, "ksasl")
    relay = e2e.Relay(stack, url, topic, bootstrap=f"SASL_PLAINTEXT://127.0.0.1:{lst.port}",
                      KAFKA_SECURITY_PROTOCOL="sasl_plaintext", KAFKA_SASL_MECHANISM="PLAIN",
                      KAFKA_SASL_USERNAME="relay-user", KAFKA_SASL_PASSWORD=SECRET)
    cleanup.append(relay)
    e2e.wait_for(lambda: any(ev[0] == "token" for ev in lst.events), 20,
                 f"a SASL token ({lst.events[-5:]})")
    assert ("mechanism", "PLAIN") in lst.events
    token = next(ev[1] for ev in lst.events if ev[0] == "token")
    assert token == b"\x00relay-user\x00" + SECRET.encode()
    assert ready_code(relay.port) == 503
    assert held_partitions(url) == 0
    assert relay.stop() == 0
    out = relay.proc.output()
    assert SECRET not in out
    assert '"KAFKA_SASL_PASSWORD":"***"' in out
