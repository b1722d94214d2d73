"""Workload of the fault-injection suite: concurrent clients over a few hundred users, and a
consumer that reads the events topic while the run goes on (docs/faults.md).

Each user belongs to exactly one client thread, so one user's writes are sequential and the
client can keep a model of what it believes is stored. Every write carries an Idempotency-Key
and is retried with the SAME key and the same body bytes on connection errors (switching to the
other API process), timeouts, 5xx and 409 idempotency-key-in-use, with bounded exponential
backoff, as a real client would. Every write is recorded with its outcome:
  acked      a 2xx answer (its body kept),
  uncertain  the client gave up without a definitive answer (it may or may not have committed),
  rejected   a definitive non-2xx answer (the workload only sends valid requests: a bug).
"""

import datetime
import json
import random
import threading
import time
import uuid

import requests

from common import log, make_token

WRITE_MIX = [  # (operation, weight)
    ("history_add", 30),
    ("wl_add", 25),
    ("wl_remove", 15),
    ("rating", 15),
    ("profile", 10),
    ("erase", 2),  # DELETE /profiles/{userId}: everything of the user goes, ProfileDeleted
]
READ_SHARE = 0.12
READ_PATHS = ["/watchlist", "/watchlist?limit=10", "/history", "/history?view=continue",
              "/history?limit=10"]
RETRY_BUDGET_S = 25.0
MAX_ATTEMPTS = 30
TIMEOUT = (1.5, 6.0)  # connect, read
VIDEOS_WL = 12  # small pools, so adds hit present items (200) and removes hit both cases
VIDEOS_HIST = 40
VIDEOS_RATE = 10
RETRY_STATUSES = (500, 502, 503, 504, 429)


def utc_ms(dt):
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (dt.microsecond // 1000)


class Client(threading.Thread):
    def __init__(self, wl, idx, users):
        super().__init__(name="client-%d" % idx, daemon=True)
        self.wl = wl
        self.idx = idx
        self.users = users
        self.rng = random.Random(wl.seed * 1000 + idx)
        self.pref = idx % len(wl.api_urls)
        self.sessions = [requests.Session() for _ in wl.api_urls]
        self.model = {u: {} for u in users}  # user -> {videoId: True|False|None(unknown)}
        self.op_idx = {u: 0 for u in users}
        self.stats = {"requests": 0, "retries": 0, "switches": 0, "reads": 0, "read_errors": 0,
                      "replayed": 0}

    # ------------------------------------------------------------------ HTTP

    def send(self, method, path, body, token, idem_key):
        """Sends one write until a definitive answer or the retry budget is spent.
        Returns (outcome, status, body_json, attempts, replayed, last_error)."""
        headers = {"Authorization": "Bearer " + token, "Idempotency-Key": idem_key}
        if body is not None:
            headers["Content-Type"] = "application/json"
        start = time.time()
        backoff = 0.05
        attempts = 0
        last_err = ""
        while True:
            attempts += 1
            self.stats["requests"] += 1
            url = self.wl.api_urls[self.pref] + path
            retry = False
            try:
                r = self.sessions[self.pref].request(method, url, data=body, headers=headers,
                                                     timeout=TIMEOUT)
            except requests.exceptions.ConnectionError as e:
                # Covers refused and reset connections and connect timeouts: try the other API.
                last_err = "connection: %s" % type(e).__name__
                self.pref = (self.pref + 1) % len(self.wl.api_urls)
                self.stats["switches"] += 1
                retry = True
            except requests.exceptions.Timeout as e:
                last_err = "timeout: %s" % type(e).__name__
                retry = True
            except requests.RequestException as e:
                last_err = "request: %s" % e
                retry = True
            else:
                st = r.status_code
                if st >= 500:
                    self.wl.note_5xx(st)
                try:
                    js = r.json() if r.content else None
                except ValueError:
                    js = None
                if 200 <= st < 300:
                    replayed = r.headers.get("Idempotent-Replayed", "").lower() == "true"
                    if replayed:
                        self.stats["replayed"] += 1
                    return "acked", st, js, attempts, replayed, last_err
                ptype = js.get("type", "") if isinstance(js, dict) else ""
                if st in RETRY_STATUSES or (st == 409 and "idempotency-key-in-use" in ptype):
                    last_err = "status %d %s" % (st, ptype)
                    retry = True
                else:
                    return "rejected", st, js, attempts, False, "status %d %s" % (st, ptype)
            assert retry
            if attempts >= MAX_ATTEMPTS or time.time() - start + backoff > RETRY_BUDGET_S:
                return "uncertain", None, None, attempts, False, last_err
            self.stats["retries"] += 1
            time.sleep(backoff * self.rng.uniform(0.5, 1.5))
            backoff = min(backoff * 2, 1.0)

    def read(self, user):
        path = "/profiles/%s%s" % (user, self.rng.choice(READ_PATHS))
        self.stats["reads"] += 1
        try:
            r = self.sessions[self.pref].get(self.wl.api_urls[self.pref] + path, timeout=TIMEOUT,
                                             headers={"Authorization": "Bearer " + self.wl.tokens[user]})
            if r.status_code != 200:
                self.stats["read_errors"] += 1
            if r.status_code >= 500:
                self.wl.note_5xx(r.status_code)
        except requests.exceptions.ConnectionError:
            self.stats["read_errors"] += 1
            self.pref = (self.pref + 1) % len(self.wl.api_urls)
        except requests.RequestException:
            self.stats["read_errors"] += 1

    # ------------------------------------------------------------------ operations

    def build(self, user, op):
        """Returns (method, path, body dict or None, request description)."""
        rng = self.rng
        base = "/profiles/%s" % user
        if op == "history_add":
            pos = rng.randint(0, 7200)
            body = {"videoId": "h%d" % rng.randrange(VIDEOS_HIST), "positionSeconds": pos}
            if rng.random() < 0.8:
                body["durationSeconds"] = pos + rng.choice([0, rng.randint(1, 3600)])
            if rng.random() < 0.7:
                # A client-side watch time a little in the past, unique enough to match on.
                dt = datetime.datetime.utcnow() - datetime.timedelta(
                    milliseconds=rng.randint(0, 86400000))
                body["watchedAt"] = utc_ms(dt)
            return "POST", base + "/history", body
        if op == "wl_add":
            return "POST", base + "/watchlist", {"videoId": "w%d" % rng.randrange(VIDEOS_WL)}
        if op == "wl_remove":
            m = self.model[user]
            present = [v for v, s in m.items() if s is not False]
            if present and rng.random() < 0.75:
                vid = rng.choice(sorted(present))
            else:
                vid = "w%d" % rng.randrange(VIDEOS_WL)
            return "DELETE", base + "/watchlist/" + vid, None
        if op == "rating":
            body = {"videoId": "r%d" % rng.randrange(VIDEOS_RATE), "rating": rng.randint(1, 5)}
            if rng.random() < 0.7:
                body["review"] = "review %s" % uuid.uuid4().hex[:12]
            return "POST", base + "/ratings", body
        if op == "profile":
            body = {"displayName": "Faults %s %s" % (user[-6:], uuid.uuid4().hex[:8]),
                    "preferences": {"language": rng.choice(["en", "de", "fr", "ja"]),
                                    "autoplay": rng.random() < 0.5}}
            if rng.random() < 0.5:
                body["avatarUrl"] = "https://img.example.com/%s.png" % uuid.uuid4().hex[:10]
            return "PUT", base, body
        if op == "erase":
            return "DELETE", base, None
        raise ValueError(op)

    def do_write(self, user, op, method=None, path=None, body=None):
        if method is None:
            method, path, body = self.build(user, op)
        raw = json.dumps(body, separators=(",", ":")).encode() if body is not None else None
        key = "f-%s" % uuid.uuid4()
        t_start = time.time()
        outcome, status, js, attempts, replayed, err = self.send(method, path, raw,
                                                                  self.wl.tokens[user], key)
        rec = {
            "user": user, "op": op, "key": key, "idx": self.op_idx[user],
            "method": method, "path": path, "req": body,
            "outcome": outcome, "status": status, "body": js, "attempts": attempts,
            "replayed": replayed, "error": err if outcome != "acked" else "",
            "t_start": round(t_start - self.wl.t0, 3), "t_end": round(time.time() - self.wl.t0, 3),
            "client": self.idx,
        }
        self.op_idx[user] += 1
        # The client's belief about the watchlist (used to pick removes).
        if op in ("wl_add", "wl_remove"):
            vid = body["videoId"] if op == "wl_add" else path.rsplit("/", 1)[1]
            if outcome == "acked":
                self.model[user][vid] = op == "wl_add"
            elif outcome == "uncertain":
                self.model[user][vid] = None
        elif op == "erase":
            for vid in self.model[user]:
                if outcome == "acked":
                    self.model[user][vid] = False
                elif outcome == "uncertain" and self.model[user][vid] is not False:
                    self.model[user][vid] = None
        self.wl.record(rec)
        return rec

    def run(self):
        ops = [o for o, _ in WRITE_MIX]
        weights = [w for _, w in WRITE_MIX]
        while not self.wl.stop_event.is_set():
            user = self.rng.choice(self.users)
            if self.rng.random() < READ_SHARE:
                self.read(user)
                continue
            self.do_write(user, self.rng.choices(ops, weights)[0])


class Workload:
    def __init__(self, api_urls, users, threads, seed, t0=None):
        self.api_urls = list(api_urls)
        self.users = list(users)
        self.seed = seed
        self.t0 = t0 if t0 is not None else time.time()
        self.tokens = {u: make_token(u) for u in self.users}
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.ops = []
        self.err_times = []  # (seconds since t0, status) of every 5xx answer, reads included
        self.clients = [Client(self, i, self.users[i::threads]) for i in range(threads)]

    def record(self, rec):
        with self.lock:
            self.ops.append(rec)

    def note_5xx(self, status):
        with self.lock:
            self.err_times.append((round(time.time() - self.t0, 3), status))

    def start(self):
        for c in self.clients:
            c.start()

    def stop(self, timeout=RETRY_BUDGET_S + 10):
        self.stop_event.set()
        deadline = time.time() + timeout
        for c in self.clients:
            c.join(max(0.1, deadline - time.time()))
        return all(not c.is_alive() for c in self.clients)

    def stats(self):
        out = {}
        for c in self.clients:
            for k, v in c.stats.items():
                out[k] = out.get(k, 0) + v
        with self.lock:
            for r in self.ops:
                out["writes_" + r["outcome"]] = out.get("writes_" + r["outcome"], 0) + 1
        return out


class EventConsumer(threading.Thread):
    """Consumes every partition of the topic from the beginning (assign, no group coordinator,
    so brokers going down only pause it) and records each record while the run goes on."""

    def __init__(self, bootstrap, topic, run_id):
        super().__init__(name="consumer", daemon=True)
        from confluent_kafka import Consumer

        self.topic = topic
        self.conf = {
            "bootstrap.servers": bootstrap,
            "group.id": "faults-checker-%s" % run_id,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "fetch.wait.max.ms": 50,
            "topic.metadata.refresh.interval.ms": 2000,
            "socket.timeout.ms": 5000,
            # Brokers going down is the point of the run: keep librdkafka's own log quiet.
            "log_level": 2,
        }
        self.consumer = Consumer(self.conf)
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.events = []
        self.positions = {}  # partition -> next offset
        self.offset_jumps = 0
        self.errors = 0
        self.partitions = self._partitions()

    def _partitions(self):
        deadline = time.time() + 20
        while True:
            try:
                md = self.consumer.list_topics(self.topic, timeout=5)
                t = md.topics.get(self.topic)
                if t is not None and t.error is None and t.partitions:
                    return sorted(t.partitions.keys())
            except Exception as e:  # noqa: BLE001 - retried until the deadline
                if time.time() > deadline:
                    raise
                log("consumer: metadata: %s" % e)
            if time.time() > deadline:
                raise RuntimeError("topic %s has no partitions" % self.topic)
            time.sleep(0.5)

    def run(self):
        from confluent_kafka import OFFSET_BEGINNING, KafkaError, TopicPartition

        self.consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING)
                              for p in self.partitions])
        while not self.stop_event.is_set():
            msgs = self.consumer.consume(1000, timeout=0.2)
            now = time.time()
            for m in msgs:
                if m.error():
                    if m.error().code() != KafkaError._PARTITION_EOF:
                        self.errors += 1
                    continue
                p, o = m.partition(), m.offset()
                with self.lock:
                    if o != self.positions.get(p, 0):
                        self.offset_jumps += 1
                    self.positions[p] = o + 1
                    hdrs = [[k, v.decode("utf-8", "replace") if v is not None else None]
                            for k, v in (m.headers() or [])]
                    key = m.key()
                    self.events.append({
                        "p": p, "o": o,
                        "k": key.decode("utf-8", "replace") if key is not None else None,
                        "h": hdrs,
                        "v": m.value().decode("utf-8", "replace") if m.value() is not None else None,
                        "ts": round(now, 3),
                    })
        self.consumer.close()

    def high_watermarks(self):
        """{partition: high watermark} from the brokers, with a separate client."""
        from confluent_kafka import Consumer, TopicPartition

        c = Consumer(dict(self.conf, **{"group.id": self.conf["group.id"] + "-wm"}))
        try:
            return {p: c.get_watermark_offsets(TopicPartition(self.topic, p), timeout=5)[1]
                    for p in self.partitions}
        finally:
            c.close()

    def caught_up(self, highs):
        with self.lock:
            return all(self.positions.get(p, 0) >= h for p, h in highs.items())

    def snapshot(self):
        with self.lock:
            return list(self.events)
