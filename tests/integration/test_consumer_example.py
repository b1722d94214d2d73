"""examples/consumer/consumer.py against the local stack: writes through the real API, published
by the real relay, read back by the example. Its folded per-user state must equal what the API
serves; a re-sent event must be dropped as a duplicate (re-applying it would re-add a removed
video); an operator's `dlq skip` must show as a gap; a record whose data breaks its schema must
be reported and not folded.
"""
import json
import subprocess
import time
import uuid

from confluent_kafka import Producer

import support
from api_helpers import start_api
from support import run_sql
from test_relay_e2e import Relay, dlq, pending, uid, wait_for

CONSUMER = str(support.REPO / "examples" / "consumer" / "consumer.py")


class Writer:
    """api writes with an Idempotency-Key, retried while the API answers 503 (a loaded machine
    can make PostgreSQL connects time out); the key makes a retry safe."""

    def __init__(self, api):
        self.api = api

    def __getattr__(self, method):
        def call(path, user, body=None):
            key = str(uuid.uuid4())
            for _ in range(20):
                r = self.api.request(method.upper(), path, user, body=body,
                                     headers={"Idempotency-Key": key})
                if r.status_code != 503:
                    return r
                time.sleep(0.5)
            return r
        return call


def items(api, user, path):
    r = api.get(f"/profiles/{user}/{path}", user)
    assert r.status_code == 200, r.text
    return r.json()["items"]


def test_consumer_example_folds_state_drops_duplicates_and_reports_gaps(stack):
    url = support.new_database(stack, f"consumer_{uuid.uuid4().hex[:8]}")
    topic = f"consumer-test-{uuid.uuid4().hex[:10]}"
    api = start_api(stack, DATABASE_URL=support.role_url(url, "api"))
    relay = None
    try:
        a, g = uid("a"), uid("g")
        w = Writer(api)
        ok = [
            w.put(f"/profiles/{a}", a, {"displayName": "A"}),
            w.post(f"/profiles/{a}/watchlist", a, {"videoId": "v1"}),
            w.post(f"/profiles/{a}/watchlist", a, {"videoId": "v2"}),
            w.delete(f"/profiles/{a}/watchlist/v1", a),
            w.post(f"/profiles/{a}/history", a,
                   {"videoId": "v1", "positionSeconds": 10, "durationSeconds": 100,
                    "watchedAt": "2026-01-01T10:00:00Z"}),
            w.post(f"/profiles/{a}/history", a,  # older watchedAt: not the resume point
                   {"videoId": "v1", "positionSeconds": 5, "durationSeconds": 100,
                    "watchedAt": "2026-01-01T09:00:00Z"}),
            w.post(f"/profiles/{a}/history", a, {"videoId": "v3", "positionSeconds": 7}),
            w.post(f"/profiles/{a}/ratings", a, {"videoId": "v1", "rating": 4, "review": "ok"}),
            w.post(f"/profiles/{a}/ratings", a, {"videoId": "v1", "rating": 2}),
            w.put(f"/profiles/{a}", a, {"displayName": "A2"}),
        ]
        for v in ("w1", "w2", "w3"):
            ok.append(w.post(f"/profiles/{g}/watchlist", g, {"videoId": v}))
        assert all(r.status_code < 300 for r in ok), [r.text for r in ok]

        # g's second event cannot be published: an operator skips it (the relay holds back all
        # of g's events until then), so consumers see 1 then 3.
        run_sql(url, "INSERT INTO outbox_dead_letters (user_id, seq, event_id, error) "
                     "SELECT user_id, seq, event_id, 'test: never publishable' FROM outbox "
                     "WHERE user_id = %s AND seq = 2", [g])
        relay = Relay(stack, url, topic)
        wait_for(lambda: run_sql(url, "SELECT count(*) FROM outbox WHERE published_at IS NULL "
                                      "AND user_id <> %s", [g])[0][0] == 0, 30, "a published")
        r = dlq(url, "skip", f"{g}:2")
        assert r.returncode == 0, r.stdout + r.stderr
        wait_for(lambda: pending(url) == 0, 30, "everything published")

        # a's add of v1 (seq 2, removed again by seq 4) is sent again, as after a relay crash
        run_sql(url, "UPDATE outbox SET published_at = NULL WHERE user_id = %s AND seq = 2", [a])
        wait_for(lambda: pending(url) == 0, 30, "the re-send")
        assert relay.stop() == 0
        relay = None

        # Records the relay does not make today, produced by hand: one whose data breaks its
        # schema (action must be added|removed); for user n, seq 1 of a type the consumer does
        # not know, then seq 2 as version 2 and as version 1 (how a move to a new version is
        # published, docs/events.md, Versioning).
        bad, n = uid("bad"), uid("n")
        p = Producer({"bootstrap.servers": stack["KAFKA_BOOTSTRAP_SERVERS"]})

        def produce(user, seq, etype, version, data):
            p.produce(topic, key=user.encode(), value=json.dumps(data).encode(),
                      headers=[("ce_specversion", b"1.0"), ("ce_id", str(uuid.uuid4()).encode()),
                               ("ce_type", etype.encode()),
                               ("ce_dataschema",
                                f"urn:profile-service:schema:{etype}:{version}".encode()),
                               ("ce_subject", user.encode()), ("ce_sequence", str(seq).encode())])

        produce(bad, 1, "WatchlistUpdated", 1, {"userId": bad, "videoId": "v1", "action": "moved"})
        produce(n, 1, "SomethingNew", 1, {"userId": n})
        produce(n, 2, "WatchlistUpdated", 2, {"userId": n, "video": {"id": "v7"}})
        produce(n, 2, "WatchlistUpdated", 1, {"userId": n, "videoId": "v7", "action": "added"})
        assert p.flush(20) == 0

        run = subprocess.run(["/usr/bin/python3", CONSUMER, "--bootstrap",
                              stack["KAFKA_BOOTSTRAP_SERVERS"], "--topic", topic,
                              "--exit-at-end", "--timeout", "90"],
                             capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr
        out = json.loads(run.stdout)

        assert out["gaps"] == [{"userId": g, "after": 1, "got": 3}], out["gaps"]
        assert out["duplicates"] == 1, run.stderr
        assert [(i["userId"], len(i["problems"])) for i in out["invalid"]] == [(bad, 1)]
        assert "action" in out["invalid"][0]["problems"][0]
        assert out["records"] == 10 + 1 + 2 + 1 + 3  # a (one twice), g without 2, bad, n
        assert out["applied"] == 10 + 2 + 1
        assert (out["otherVersions"], out["unknownTypes"]) == (1, 1)
        assert out["users"][n]["lastSequence"] == 2 and out["users"][n]["watchlist"] == ["v7"]

        # a's state, folded from events only, is what the API serves
        sa = out["users"][a]
        assert sa["lastSequence"] == 10
        prof = api.get(f"/profiles/{a}", a).json()
        assert sa["profileVersion"] == prof["version"] == 2
        assert sa["watchlist"] == sorted(i["videoId"] for i in items(api, a, "watchlist")) \
            == ["v2"]
        assert sa["ratings"] == {i["videoId"]: {"rating": i["rating"], "review": i["review"]}
                                 for i in items(api, a, "ratings")} \
            == {"v1": {"rating": 2, "review": None}}
        cont = {i["videoId"]: {k: i[k] for k in ("positionSeconds", "durationSeconds",
                                                  "watchedAt")}
                for i in items(api, a, "history?view=continue")}
        assert sa["resumePoints"] == cont
        assert sa["resumePoints"]["v1"]["positionSeconds"] == 10
        # g: the skipped add of w2 never reached the consumer; the gap says so
        assert out["users"][g]["watchlist"] == ["w1", "w3"]
        assert out["users"][g]["lastSequence"] == 3
        assert out["users"][bad] == {"lastSequence": 1, "profileVersion": None, "watchlist": [],
                                     "ratings": {}, "resumePoints": {}}
    finally:
        if relay is not None:
            relay.stop()
        assert api.stop() == 0
