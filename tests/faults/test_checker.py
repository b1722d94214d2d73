"""Unit tests of the fault-suite checker on synthetic runs (no stack needed):
/usr/bin/python3 -m pytest -q tests/faults/test_checker.py

A small in-memory model of the service (Sim) turns a list of client writes into what a correct
service would leave behind: acknowledged bodies, outbox rows, PostgreSQL rows and the events on
the topic. Each test then breaks one thing and asserts the checker sees exactly that.
"""

import copy
import json
import os
import sys
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import checker  # noqa: E402

TP = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


class Sim:
    def __init__(self):
        self.ops = []
        self.events = []
        self.db = {"seq": {}, "outbox": {}, "dead_letters": [], "watchlist": {}, "history": {},
                   "ratings": {}, "profiles": {}}
        self.idx = {}
        self.clock = 0
        self.offsets = {}

    def _now(self):
        self.clock += 1
        return "2026-11-25T23:00:%02d.%03dZ" % (self.clock // 1000 % 60, self.clock % 1000)

    def _emit(self, user, etype, data):
        seq = self.db["seq"].get(user, 0) + 1
        self.db["seq"][user] = seq
        eid = str(uuid.uuid4())
        payload = json.dumps(data, separators=(",", ":"))
        self.db["outbox"][eid] = {"user": user, "seq": seq, "type": etype, "payload": payload,
                                  "published": True}
        part = sum(user.encode()) % 6
        off = self.offsets.get(part, 0)
        self.offsets[part] = off + 1
        self.events.append({
            "p": part, "o": off, "k": user, "v": payload,
            "h": [["ce_specversion", "1.0"], ["ce_id", eid], ["ce_source", "/profile-service"],
                  ["ce_type", etype],
                  ["ce_dataschema", "urn:profile-service:schema:%s:1" % etype],
                  ["ce_subject", user], ["ce_time", self._now()],
                  ["ce_sequence", str(seq)], ["content-type", "application/json"],
                  ["traceparent", TP]]})

    def write(self, user, op, outcome="acked", committed=None, **req):
        """Applies one write. outcome 'uncertain' commits only when committed=True."""
        i = self.idx.get(user, 0)
        self.idx[user] = i + 1
        method, path = "POST", "/profiles/%s" % user
        body, status = None, None
        commit = outcome == "acked" or (outcome == "uncertain" and committed)
        if op == "history_add":
            path += "/history"
            if commit:
                eid = str(uuid.uuid4())
                at = req.get("watchedAt") or self._now()
                entry = {"videoId": req["videoId"], "positionSeconds": req["positionSeconds"],
                         "durationSeconds": req.get("durationSeconds"), "watchedAt": at}
                self.db["history"].setdefault(user, {})[eid] = entry
                body, status = dict(entry, entryId=eid), 201
                self._emit(user, "HistoryUpdated", dict(entry, userId=user))
        elif op == "wl_add":
            path += "/watchlist"
            if commit:
                wl = self.db["watchlist"].setdefault(user, {})
                v = req["videoId"]
                status = 200 if v in wl else 201
                if v not in wl:
                    wl[v] = self._now()
                    self._emit(user, "WatchlistUpdated",
                               {"userId": user, "videoId": v, "action": "added"})
                body = {"videoId": v, "addedAt": wl[v]}
        elif op == "wl_remove":
            v = req.pop("videoId")
            method, path = "DELETE", path + "/watchlist/" + v
            if commit:
                wl = self.db["watchlist"].setdefault(user, {})
                if v in wl:
                    del wl[v]
                    self._emit(user, "WatchlistUpdated",
                               {"userId": user, "videoId": v, "action": "removed"})
                status = 204
        elif op == "rating":
            path += "/ratings"
            if commit:
                rat = self.db["ratings"].setdefault(user, {})
                status = 200 if req["videoId"] in rat else 201
                rat[req["videoId"]] = [req["rating"], req.get("review")]
                body = {"videoId": req["videoId"], "rating": req["rating"],
                        "review": req.get("review")}
                self._emit(user, "VideoRated", dict(body, userId=user))
        elif op == "profile":
            method = "PUT"
            if commit:
                cur = self.db["profiles"].get(user)
                ver = cur["version"] + 1 if cur else 1
                status = 200 if cur else 201
                self.db["profiles"][user] = {"displayName": req["displayName"], "avatarUrl": None,
                                             "preferences": {}, "version": ver}
                body = {"userId": user, "displayName": req["displayName"], "version": ver}
                self._emit(user, "ProfileUpdated", {"userId": user, "version": ver})
        elif op == "erase":
            method = "DELETE"
            if commit:
                status = 204
                had = any([self.db[t].pop(user, None) for t in ("watchlist", "history",
                                                                "ratings", "profiles")])
                if had:
                    self._emit(user, "ProfileDeleted", {"userId": user})
                    # the relay removes the user's outbox rows once ProfileDeleted is published
                    for eid in [e for e, r in self.db["outbox"].items() if r["user"] == user]:
                        del self.db["outbox"][eid]
        rec = {"user": user, "op": op, "key": "k-%s" % uuid.uuid4(), "idx": i, "method": method,
               "path": path, "req": req or None, "outcome": outcome,
               "status": status if outcome == "acked" else None,
               "body": body if outcome == "acked" else None}
        if outcome == "rejected":
            rec["status"] = 400
        self.ops.append(rec)
        return rec

    def check(self, cache=None):
        return checker.check(self.ops, self.events, self.db, cache)


def busy_sim():
    s = Sim()
    for u in ("u1", "u2", "u3"):
        s.write(u, "profile", displayName="A " + u)
        s.write(u, "wl_add", videoId="w1")
        s.write(u, "wl_add", videoId="w2")
        s.write(u, "wl_add", videoId="w1")  # 200, no event
        s.write(u, "history_add", videoId="h1", positionSeconds=10, durationSeconds=100,
                watchedAt="2026-11-25T10:00:00.000Z")
        s.write(u, "history_add", videoId="h1", positionSeconds=20)
        s.write(u, "rating", videoId="r1", rating=4, review="good")
        s.write(u, "rating", videoId="r1", rating=5)
        s.write(u, "wl_remove", videoId="w1")  # event
        s.write(u, "wl_remove", videoId="w9")  # no event
        s.write(u, "profile", displayName="B " + u)
    return s


def counts(rep):
    return {k: v for k, v in rep.c.items() if v}


def test_clean_run_passes():
    s = busy_sim()
    rep = s.check()
    assert rep.ok(), rep.details
    assert rep.c["acked"] == 33 and rep.c["events"] == 27
    assert rep.summary() == ("faults: lost=0 unexpected=0 duplicates=0 reordered=0 gaps=0 "
                             "db_mismatch=0 stale_cache=0 acked=33 events=27")


def test_duplicates_are_counted_and_allowed():
    s = busy_sim()
    dups = [dict(copy.deepcopy(e), o=e["o"] + 1000) for e in s.events[:5]]
    s.events.extend(dups)
    rep = s.check()
    assert rep.ok(), rep.details
    assert rep.c["duplicates"] == 5


def test_planted_outbox_delete_is_lost_and_a_gap():
    """What the live planted-fault test does: an outbox row removed before the relay saw it."""
    s = busy_sim()
    victim = next(e for e in s.events if e["k"] == "u2" and dict(e["h"])["ce_sequence"] == "5")
    s.events.remove(victim)
    del s.db["outbox"][dict(victim["h"])["ce_id"]]
    rep = s.check()
    assert not rep.ok()
    assert rep.c["lost"] == 1 and rep.c["gaps"] == 1, counts(rep)
    assert rep.c["unexpected"] == 0


def test_relay_holding_back_after_a_hole_is_lost_too():
    s = busy_sim()
    s.events = [e for e in s.events if not (e["k"] == "u1" and int(dict(e["h"])["ce_sequence"]) >= 4)]
    rep = s.check()
    assert rep.c["lost"] == 6 and rep.c["gaps"] == 6, counts(rep)


def test_reordered_events_are_counted():
    s = busy_sim()
    u3 = [i for i, e in enumerate(s.events) if e["k"] == "u3"]
    a, b = u3[1], u3[2]
    s.events[a]["o"], s.events[b]["o"] = s.events[b]["o"], s.events[a]["o"]
    rep = s.check()
    assert rep.c["reordered"] == 1 and not rep.ok(), counts(rep)


def test_event_without_outbox_row_is_unexpected():
    s = busy_sim()
    ev = copy.deepcopy(s.events[0])
    h = dict(ev["h"])
    h["ce_id"] = str(uuid.uuid4())
    ev["h"] = [[k, v] for k, v in h.items()]
    ev["o"] += 500
    s.events.append(ev)
    rep = s.check()
    assert rep.c["unexpected"] >= 1 and not rep.ok(), counts(rep)
    assert rep.c["lost"] == 0


def test_event_for_a_write_nobody_made_is_unexpected():
    s = busy_sim()
    s._emit("u1", "WatchlistUpdated", {"userId": "u1", "videoId": "w7", "action": "added"})
    s.db["watchlist"]["u1"]["w7"] = "x"
    rep = s.check()
    assert rep.c["unexpected"] == 1, counts(rep)
    assert rep.c["db_mismatch"] == 1  # w7 in PostgreSQL, never added


def test_uncertain_writes_may_or_may_not_commit():
    s = busy_sim()
    s.write("u1", "history_add", outcome="uncertain", committed=True, videoId="h5",
            positionSeconds=5)
    s.write("u1", "history_add", outcome="uncertain", committed=False, videoId="h6",
            positionSeconds=6)
    s.write("u2", "wl_add", outcome="uncertain", committed=True, videoId="w5")
    s.write("u2", "wl_remove", outcome="uncertain", committed=False, videoId="w2")
    s.write("u3", "profile", outcome="uncertain", committed=True, displayName="C")
    s.write("u3", "rating", outcome="uncertain", committed=True, videoId="r2", rating=1)
    rep = s.check()
    assert rep.ok(), rep.details
    assert rep.c["uncertain"] == 6


def test_ack_without_event_is_lost():
    s = busy_sim()
    s.write("u1", "wl_add", videoId="w8")
    ev = s.events.pop()
    del s.db["outbox"][dict(ev["h"])["ce_id"]]
    s.db["seq"]["u1"] -= 1
    rep = s.check()
    assert rep.c["lost"] == 1 and rep.c["gaps"] == 0, counts(rep)


def test_db_missing_acked_history_is_a_mismatch():
    s = busy_sim()
    hist = s.db["history"]["u2"]
    del hist[next(iter(hist))]
    rep = s.check()
    assert rep.c["db_mismatch"] == 1 and not rep.ok(), counts(rep)


def test_acked_rating_not_in_db_is_a_mismatch():
    s = busy_sim()
    s.db["ratings"]["u1"]["r1"] = [4, "good"]
    rep = s.check()
    assert rep.c["db_mismatch"] == 1, counts(rep)


def test_stale_cache_fails():
    s = busy_sim()
    rep = s.check({"checked": 10, "stale": ["u1/watchlist: API 2 items, DB 1 items"]})
    assert rep.c["stale_cache"] == 1 and not rep.ok()


def test_malformed_event_fails():
    s = busy_sim()
    h = dict(s.events[3]["h"])
    h["traceparent"] = "nope"
    s.events[3]["h"] = [[k, v] for k, v in h.items()]
    rep = s.check()
    assert rep.c["malformed"] == 1 and not rep.ok()


def test_event_against_its_schema():
    """An event whose data breaks its JSON Schema, or whose ce_dataschema is missing or names
    no schema, is malformed."""
    s = busy_sim()
    assert s.check().c["malformed"] == 0
    ev = [e for e in s.events if "VideoRated" in str(e["h"])][0]
    ev["v"] = json.dumps(dict(json.loads(ev["v"]), rating=7))
    rep = s.check()
    assert rep.c["malformed"] >= 1 and not rep.ok(), counts(rep)
    assert any("rating" in d for d in rep.details["malformed"]), rep.details["malformed"]
    for schema in (None, "urn:profile-service:schema:VideoRated:9"):
        s = busy_sim()
        ev = s.events[2]
        ev["h"] = [[k, v] for k, v in ev["h"] if k != "ce_dataschema"]
        if schema:
            ev["h"].append(["ce_dataschema", schema])
        rep = s.check()
        assert rep.c["malformed"] == 1 and not rep.ok(), (schema, counts(rep))


def test_rejected_write_fails():
    s = busy_sim()
    s.write("u1", "rating", outcome="rejected", videoId="r1", rating=3)
    rep = s.check()
    assert rep.c["rejected"] == 1 and not rep.ok()


def test_cached_items_parsing():
    assert checker._items_of('{"items":[{"videoId":"a"}],"nextCursor":null}') == [{"videoId": "a"}]
    assert checker._items_of('[{"videoId":"a"}]') == [{"videoId": "a"}]
    assert checker._items_of('7\n{"items":[]}') == []
    assert checker._items_of("garbage") is None


def test_ce_time_going_backwards_fails():
    s = busy_sim()
    ev = [e for e in s.events if e["k"] == "u1"][2]
    h = dict(ev["h"])
    h["ce_time"] = "2020-01-01T00:00:00.000Z"
    ev["h"] = [[k, v] for k, v in h.items()]
    rep = s.check()
    assert rep.c["time_backwards"] == 1 and not rep.ok(), counts(rep)


def erase_sim():
    s = busy_sim()
    s.write("u1", "erase")
    s.write("u1", "erase")  # nothing left: no event
    s.write("u1", "wl_add", videoId="w3")  # after the erasure: kept
    s.write("u2", "erase", outcome="uncertain", committed=True)
    s.write("u3", "erase", outcome="uncertain", committed=False)
    return s


def test_erasures_pass():
    s = erase_sim()
    rep = s.check()
    assert rep.ok(), rep.details
    assert sum(1 for e in s.events if dict(e["h"])["ce_type"] == "ProfileDeleted") == 2


def test_erasure_that_left_rows_is_a_mismatch():
    s = erase_sim()
    s.db["ratings"]["u1"] = {"r1": [5, None]}
    rep = s.check()
    assert rep.c["db_mismatch"] >= 1 and rep.c["replay_mismatch"] >= 1, counts(rep)


def test_acked_erasure_without_its_event_is_lost():
    s = erase_sim()
    gone = [e for e in s.events if e["k"] == "u1" and dict(e["h"])["ce_type"] == "ProfileDeleted"]
    s.events.remove(gone[0])
    rep = s.check()
    # without the ProfileDeleted nothing explains the purged outbox rows either
    assert rep.c["gaps"] == 1 and not rep.ok(), counts(rep)
    assert any("erase" in d and "('del',)" in d for d in rep.details["lost"]), rep.details
