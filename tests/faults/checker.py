#!/usr/bin/python3
"""Checker of the fault-injection suite (docs/faults.md).

Compares three records of one run and prints a one-line summary:
  ops     every write the workload sent, with its outcome (acked 2xx + body, uncertain, rejected)
  events  every record consumed from the events topic (key, headers, value, partition, offset)
  db      a snapshot of PostgreSQL after the final drain (collect_db)
  cache   what the cache served / held after the drain (collect_cache)

  faults: lost=0 unexpected=0 duplicates=N reordered=0 gaps=0 db_mismatch=0 stale_cache=0 acked=N events=N

lost         acknowledged writes without their event (matched by user and content)
unexpected   events without a committed write: no outbox row, a payload that differs from its
             outbox row, a sequence number never handed out, or more events of one content than
             acknowledged + uncertain writes explain
duplicates   extra copies of an event (same ce_id): counted, allowed (at-least-once)
malformed    (detail line) records that break the event contract: CloudEvents headers, or data
             not valid against the JSON Schema its ce_dataschema header names
reordered    events of one user seen on the topic out of ce_sequence order (or split over partitions)
gaps         sequence numbers 1..last_seq of a user never seen on the topic
db_mismatch  PostgreSQL differs from what the client was told (acked history), or an ack
             contradicts the request or the acknowledged history before it
stale_cache  cached watchlist/history pages or items that differ from PostgreSQL
acked        acknowledged writes; events = distinct events (ce_id) consumed

Usage: checker.py RUN_DIR   (reads ops.jsonl, events.jsonl, db.json, cache.json there)
Exit status 0 when there is no violation, 1 otherwise.
"""

import collections
import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import event_schemas  # noqa: E402  (tests/event_schemas.py: the JSON Schemas of schemas/events)
from common import read_json, read_jsonl  # noqa: E402

EVENT_TYPES = ("WatchlistUpdated", "HistoryUpdated", "VideoRated", "ProfileUpdated",
               "ProfileDeleted")
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
TRACEPARENT_RE = re.compile(r"^00-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}$")
TIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
MAX_DETAILS = 12
WILDCARD = "*"

# --------------------------------------------------------------------------- collection


def collect_db(database_url):
    """Snapshot of everything the checker compares with (JSON-serialisable)."""
    from common import pg_connect

    conn = pg_connect(database_url)
    try:
        cur = conn.cursor()
        snap = {}
        cur.execute("SELECT user_id, last_seq FROM user_event_seq")
        snap["seq"] = {u: s for u, s in cur.fetchall()}
        cur.execute("SELECT event_id::text, user_id, seq, event_type, payload::text, "
                    "published_at IS NOT NULL FROM outbox")
        snap["outbox"] = {r[0]: {"user": r[1], "seq": r[2], "type": r[3], "payload": r[4],
                                 "published": r[5]} for r in cur.fetchall()}
        cur.execute("SELECT user_id, seq, event_id::text, error FROM outbox_dead_letters")
        snap["dead_letters"] = [list(r) for r in cur.fetchall()]
        cur.execute("SELECT user_id, video_id, api_ts(added_at) FROM watchlist_items")
        wl = collections.defaultdict(dict)
        for u, v, at in cur.fetchall():
            wl[u][v] = at
        snap["watchlist"] = wl
        cur.execute("SELECT user_id, entry_id::text, video_id, position_seconds, duration_seconds, "
                    "api_ts(watched_at) FROM history_entries")
        hist = collections.defaultdict(dict)
        for u, eid, v, pos, dur, at in cur.fetchall():
            hist[u][eid] = {"videoId": v, "positionSeconds": pos, "durationSeconds": dur,
                            "watchedAt": at}
        snap["history"] = hist
        cur.execute("SELECT user_id, video_id, rating, review FROM ratings")
        rat = collections.defaultdict(dict)
        for u, v, r, rev in cur.fetchall():
            rat[u][v] = [r, rev]
        snap["ratings"] = rat
        cur.execute("SELECT user_id, display_name, avatar_url, preferences::text, version "
                    "FROM profiles")
        snap["profiles"] = {r[0]: {"displayName": r[1], "avatarUrl": r[2],
                                   "preferences": json.loads(r[3]), "version": r[4]}
                            for r in cur.fetchall()}
        return snap
    finally:
        conn.close()


def _items_of(value):
    """The items of a cached page, whatever wraps them; None when unrecognisable."""
    try:
        js = json.loads(value)
    except (TypeError, ValueError):
        # A prefix such as "<version>\n<json>" or "<version>|<json>".
        m = re.match(r"^\s*\d+\s*[\n|:;,]\s*(.*)$", value or "", re.S)
        if not m:
            return None
        try:
            js = json.loads(m.group(1))
        except ValueError:
            return None
    if isinstance(js, list):
        return js
    if isinstance(js, dict):
        for k in ("items", "body", "page", "value"):
            if k in js:
                inner = js[k]
                if isinstance(inner, str):
                    return _items_of(inner)
                if isinstance(inner, list):
                    return inner
                if isinstance(inner, dict) and isinstance(inner.get("items"), list):
                    return inner["items"]
    return None


def collect_cache(api_urls, tokens, database_url, redis_url, users, read_paths):
    """Cache freshness after the drain, two ways:
    1. black box: every page variant the workload read, fetched through each API process (so a
       cached copy, if any, is what answers), must equal the page built from plain SQL
       over the tables (_sql_page);
    2. white box: every page cached in Redis under pc:{<userId>}:wl / :hist (common/cache.h)
       must hold only items that exist in PostgreSQL with the same fields, and the user's
       version key must not exceed the committed sequence."""
    import requests
    from common import pg_connect

    stale = []
    checked = 0
    conn = pg_connect(database_url)
    cur = conn.cursor()
    sess = requests.Session()
    try:
        for user in users:
            for path in read_paths:
                base, _, query = path.partition("?")
                params = dict(p.split("=", 1) for p in query.split("&") if p)
                limit = int(params.get("limit", "50"))
                want, has_more = _sql_page(cur, user, "wl" if base == "/watchlist" else "hist",
                                           limit, params.get("view", ""))
                for url in api_urls:
                    # Twice: the first may fill the cache, the second must be served from it.
                    for attempt in range(2):
                        r = sess.get("%s/profiles/%s%s" % (url, user, path), timeout=10,
                                     headers={"Authorization": "Bearer " + tokens[user]})
                        checked += 1
                        if r.status_code != 200:
                            stale.append("%s %s%s: GET %d" % (url, user, path, r.status_code))
                            continue
                        got = r.json()
                        if got.get("items") != want or (got.get("nextCursor") is not None) != (
                                has_more):
                            stale.append("%s %s%s (read %d): API %d items %s..., DB %d items %s..."
                                         % (url, user, path, attempt + 1, len(got.get("items", [])),
                                            json.dumps(got.get("items", [])[:2]), len(want),
                                            json.dumps(want[:2])))
        raw = _collect_redis(redis_url, cur)
        checked += raw["checked"]
        stale.extend(raw["stale"])
        return {"checked": checked, "stale": stale, "redis_keys": raw["keys"],
                "redis_unparsed": raw["unparsed"], "redis_error": raw["error"]}
    finally:
        conn.close()


FIELD_RE = re.compile(r"^l=(\d+)\|v=([^|]*)\|c=(.*)$")


def _sql_page(cur, user, kind, limit, view):
    """The first page of a list, built here from plain SQL over the tables (the oracle is
    independent of the API's page functions and its C renderer): (items, next) where next is
    true when more than `limit` items exist. The continue view is computed from
    history_entries (latest entry per video by watched_at, ties by entry_id; finished ones left
    out), not from resume_points. Times are formatted by api_ts(), the writes' SQL renderer."""
    if kind == "wl":
        cur.execute("SELECT video_id, api_ts(added_at) FROM watchlist_items WHERE user_id=%s "
                    "ORDER BY added_at DESC, video_id DESC LIMIT %s", (user, limit + 1))
        rows = [{"videoId": v, "addedAt": t} for v, t in cur.fetchall()]
    else:
        if view == "continue":
            cur.execute("SELECT entry_id::text, video_id, position_seconds, duration_seconds, "
                        "api_ts(watched_at) FROM (SELECT DISTINCT ON (video_id) * "
                        "FROM history_entries WHERE user_id=%s "
                        "ORDER BY video_id, watched_at DESC, entry_id DESC) l "
                        "WHERE duration_seconds IS NULL OR position_seconds < duration_seconds "
                        "ORDER BY watched_at DESC, entry_id DESC LIMIT %s", (user, limit + 1))
        else:
            cur.execute("SELECT entry_id::text, video_id, position_seconds, duration_seconds, "
                        "api_ts(watched_at) FROM history_entries WHERE user_id=%s "
                        "ORDER BY watched_at DESC, entry_id DESC LIMIT %s", (user, limit + 1))
        rows = [{"entryId": e, "videoId": v, "positionSeconds": p, "durationSeconds": d,
                 "watchedAt": t} for e, v, p, d, t in cur.fetchall()]
    return rows[:limit], len(rows) > limit


def _collect_redis(redis_url, cur):
    """Every page cached in Redis (api/data/listcache.h: hash pc:{<uid>}:wl|hist, field
    "l=<limit>|v=<view>|c=<cursor>", value = the response body) against PostgreSQL: a first
    page must equal the page built from plain SQL (_sql_page); any page must hold only items that exist in
    PostgreSQL with the same fields; a user with cached lists must have its version key at the
    committed sequence (the cache invariant: fields are filled at the version the key holds)."""
    out = {"checked": 0, "stale": [], "keys": 0, "unparsed": 0, "error": ""}
    try:
        import redis

        rc = redis.Redis.from_url(redis_url, socket_timeout=5, decode_responses=True)
        keys = list(rc.scan_iter(match="pc:{*}:*", count=1000))
    except Exception as e:  # noqa: BLE001 - reported; the black-box check still ran
        out["error"] = str(e)
        return out
    seq = {}
    cur.execute("SELECT user_id, last_seq FROM user_event_seq")
    for u, s in cur.fetchall():
        seq[u] = s
    for key in sorted(keys):
        m = re.match(r"^pc:\{(.+)\}:(wl|hist)$", key)
        if not m:
            continue
        user, kind = m.group(1), m.group(2)
        out["keys"] += 1
        try:
            fields = rc.hgetall(key)
            ver = rc.get("pc:{%s}:ver" % user)
        except Exception as e:  # noqa: BLE001
            out["stale"].append("%s: unreadable (%s)" % (key, e))
            continue
        if not fields:
            continue
        out["checked"] += 1
        try:
            ver = int(ver) if ver is not None else None
        except ValueError:
            ver = "bad"
        if ver != seq.get(user, 0):
            out["stale"].append("%s: %d cached page(s) at version %s, committed sequence %d"
                                % (key, len(fields), ver, seq.get(user, 0)))
        if kind == "wl":
            cur.execute("SELECT video_id, api_ts(added_at) FROM watchlist_items WHERE user_id=%s",
                        (user,))
            db = {v: {"videoId": v, "addedAt": at} for v, at in cur.fetchall()}
            ident = "videoId"
        else:
            cur.execute("SELECT entry_id::text, video_id, position_seconds, duration_seconds, "
                        "api_ts(watched_at) FROM history_entries WHERE user_id=%s", (user,))
            db = {e: {"entryId": e, "videoId": v, "positionSeconds": p, "durationSeconds": d,
                      "watchedAt": at} for e, v, p, d, at in cur.fetchall()}
            ident = "entryId"
        for field, value in sorted(fields.items()):
            items = _items_of(value)
            if items is None:
                out["unparsed"] += 1
                continue
            out["checked"] += 1
            fm = FIELD_RE.match(field)
            if fm and fm.group(3) == "":
                want, has_more = _sql_page(cur, user, kind, int(fm.group(1)), fm.group(2))
                try:
                    has_next = json.loads(value).get("nextCursor") is not None
                except (ValueError, AttributeError):
                    has_next = has_more
                if items != want or has_next != has_more:
                    out["stale"].append("%s[%s]: cached %d items, PostgreSQL %d (first %s vs %s)"
                                        % (key, field, len(items), len(want),
                                           json.dumps(items[:1]), json.dumps(want[:1])))
                continue
            for it in items:
                if not isinstance(it, dict) or db.get(it.get(ident)) != it:
                    out["stale"].append("%s[%s]: cached item %s not in PostgreSQL as cached"
                                        % (key, field, json.dumps(it)[:160]))
                    break
    return out


# --------------------------------------------------------------------------- checking


class Report:
    def __init__(self):
        self.c = collections.Counter()
        self.details = collections.defaultdict(list)
        self.info = {}

    def add(self, counter, n=1, detail=None):
        self.c[counter] += n
        if detail is not None and len(self.details[counter]) < MAX_DETAILS:
            self.details[counter].append(detail)

    VIOLATIONS = ("lost", "unexpected", "reordered", "gaps", "db_mismatch", "stale_cache",
                  "malformed", "replay_mismatch", "rejected", "dead_letters", "pending",
                  "time_backwards")

    def violations(self):
        return {k: self.c[k] for k in self.VIOLATIONS if self.c[k]}

    def ok(self):
        return not self.violations()

    def summary(self):
        c = self.c
        return ("faults: lost=%d unexpected=%d duplicates=%d reordered=%d gaps=%d db_mismatch=%d "
                "stale_cache=%d acked=%d events=%d" % (
                    c["lost"], c["unexpected"], c["duplicates"], c["reordered"], c["gaps"],
                    c["db_mismatch"], c["stale_cache"], c["acked"], c["events"]))

    def detail_line(self):
        c = self.c
        keys = ["malformed", "replay_mismatch", "time_backwards", "rejected", "uncertain",
                "dead_letters", "pending", "records", "users", "cache_checked", "erasures",
                "profile_deleted"]
        return "faults: detail " + " ".join("%s=%d" % (k, c[k]) for k in keys)


def _headers(ev):
    h = {}
    dup = []
    for k, v in ev.get("h") or []:
        if k in h:
            dup.append(k)
        h[k] = v
    return h, dup


def parse_event(ev, rep):
    """Validates one consumed record; returns a dict or None when unusable."""
    h, dup = _headers(ev)
    problems = ["duplicate header %s" % d for d in dup]
    ce_id = h.get("ce_id")
    if not ce_id or not UUID_RE.match(ce_id):
        problems.append("ce_id %r" % ce_id)
    if h.get("ce_specversion") != "1.0":
        problems.append("ce_specversion %r" % h.get("ce_specversion"))
    if h.get("ce_type") not in EVENT_TYPES:
        problems.append("ce_type %r" % h.get("ce_type"))
    if not h.get("ce_source"):
        problems.append("no ce_source")
    if h.get("ce_subject") is None or h.get("ce_subject") != ev.get("k"):
        problems.append("ce_subject %r vs key %r" % (h.get("ce_subject"), ev.get("k")))
    if not TIME_RE.match(h.get("ce_time") or ""):
        problems.append("ce_time %r" % h.get("ce_time"))
    if (h.get("content-type") or "").split(";")[0].strip().lower() != "application/json":
        problems.append("content-type %r" % h.get("content-type"))
    if not TRACEPARENT_RE.match(h.get("traceparent") or ""):
        problems.append("traceparent %r" % h.get("traceparent"))
    seq = None
    try:
        seq = int(h.get("ce_sequence"))
        if seq < 1 or str(seq) != h.get("ce_sequence"):
            raise ValueError
    except (TypeError, ValueError):
        problems.append("ce_sequence %r" % h.get("ce_sequence"))
    data = None
    try:
        data = json.loads(ev.get("v") or "")
        if not isinstance(data, dict) or data.get("userId") != ev.get("k"):
            problems.append("data.userId differs from the key")
        else:
            # the data against the JSON Schema its ce_dataschema names (docs/events.md)
            problems += event_schemas.check(h, ev.get("k"), ev.get("v"))
    except ValueError:
        problems.append("value is not JSON")
    if problems:
        rep.add("malformed", 1, "p%s@%s: %s" % (ev.get("p"), ev.get("o"), "; ".join(problems)))
    if not ce_id or seq is None or not isinstance(data, dict):
        return None
    return {"id": ce_id, "user": ev.get("k"), "seq": seq, "type": h.get("ce_type"), "data": data,
            "time": h.get("ce_time"), "p": ev.get("p"), "o": ev.get("o")}


def event_key(e):
    d = e["data"]
    t = e["type"]
    if t == "WatchlistUpdated":
        return ("wl", d.get("videoId"), d.get("action"))
    if t == "HistoryUpdated":
        return ("hist", d.get("videoId"), d.get("positionSeconds"), d.get("durationSeconds"),
                d.get("watchedAt"))
    if t == "VideoRated":
        return ("rate", d.get("videoId"), d.get("rating"), d.get("review"))
    if t == "ProfileDeleted":
        return ("del",)
    return ("prof", d.get("version"))


def _key_matches(pattern, key):
    return len(pattern) == len(key) and all(p == WILDCARD or p == k for p, k in zip(pattern, key))


def expectations(user_ops, rep):
    """Walks one user's writes in client order. Returns (must, may, model):
    must  event keys that acknowledged writes require, exactly once each;
    may   event keys (possibly with wildcards) that uncertain writes may explain;
    model {videoId: True/False/None} the watchlist the client was told about."""
    must, may = [], []
    wl = {}
    kept = False  # rows only an erasure removes (history, ratings, profile): True/False/None

    def has_data():
        if kept is True or any(s is True for s in wl.values()):
            return True
        if kept is None or any(s is None for s in wl.values()):
            return None
        return False

    for op in sorted(user_ops, key=lambda o: o["idx"]):
        kind, out, req, body = op["op"], op["outcome"], op.get("req") or {}, op.get("body")
        st = op.get("status")
        tag = "%s %s %s" % (op["user"], kind, op["key"])
        if out == "rejected":
            continue
        acked = out == "acked"
        if kind == "erase":
            # ProfileDeleted only when there was something to erase (a repeat emits nothing)
            data = has_data()
            if acked and st != 204:
                rep.add("db_mismatch", 1, "%s: ack %s for an erasure" % (tag, st))
            if acked and data is True:
                must.append((("del",), op))
            elif data is not False:
                may.append((("del",), op))
            if acked:
                wl = {v: False for v in wl}
                kept = False
            else:
                wl = {v: (False if s is False else None) for v, s in wl.items()}
                kept = None if kept is not False else False
            continue
        if kind in ("history_add", "rating", "profile"):
            kept = True if acked else (kept or None)
        if acked and not isinstance(body, dict) and kind != "wl_remove":
            rep.add("db_mismatch", 1, "%s: %d without a JSON body" % (tag, st))
            continue
        if kind == "history_add":
            if acked:
                if st != 201 or any(body.get(f) != req.get(f) for f in ("videoId", "positionSeconds")) \
                        or body.get("durationSeconds") != req.get("durationSeconds") \
                        or ("watchedAt" in req and body.get("watchedAt") != req["watchedAt"]):
                    rep.add("db_mismatch", 1, "%s: ack %s %s differs from request %s"
                            % (tag, st, json.dumps(body), json.dumps(req)))
                must.append((("hist", body.get("videoId"), body.get("positionSeconds"),
                              body.get("durationSeconds"), body.get("watchedAt")), op))
            else:
                may.append((("hist", req.get("videoId"), req.get("positionSeconds"),
                             req.get("durationSeconds"), req.get("watchedAt", WILDCARD)), op))
        elif kind == "wl_add":
            v = req.get("videoId")
            pre = wl.get(v, False)
            if acked:
                if body.get("videoId") != v or st not in (200, 201):
                    rep.add("db_mismatch", 1, "%s: ack %s %s" % (tag, st, json.dumps(body)))
                if st == 201:
                    if pre is True:
                        rep.add("db_mismatch", 1, "%s: 201 added but %s was already there" % (tag, v))
                    must.append((("wl", v, "added"), op))
                elif st == 200 and pre is False:
                    rep.add("db_mismatch", 1, "%s: 200 already there but %s was not" % (tag, v))
                wl[v] = True
            else:
                if pre is not True:
                    may.append((("wl", v, "added"), op))
                wl[v] = True if pre is True else None
        elif kind == "wl_remove":
            v = op["path"].rsplit("/", 1)[1]
            pre = wl.get(v, False)
            if acked:
                if st != 204:
                    rep.add("db_mismatch", 1, "%s: ack %s for a remove" % (tag, st))
                if pre is True:
                    must.append((("wl", v, "removed"), op))
                elif pre is None:
                    may.append((("wl", v, "removed"), op))
                wl[v] = False
            else:
                if pre is not False:
                    may.append((("wl", v, "removed"), op))
                wl[v] = False if pre is False else None
        elif kind == "rating":
            if acked:
                if st not in (200, 201) or body.get("videoId") != req.get("videoId") or \
                        body.get("rating") != req.get("rating") or \
                        body.get("review") != req.get("review"):
                    rep.add("db_mismatch", 1, "%s: ack %s %s differs from request %s"
                            % (tag, st, json.dumps(body), json.dumps(req)))
                must.append((("rate", body.get("videoId"), body.get("rating"), body.get("review")),
                             op))
            else:
                may.append((("rate", req.get("videoId"), req.get("rating"), req.get("review")), op))
        elif kind == "profile":
            if acked:
                if st not in (200, 201) or body.get("displayName") != req.get("displayName"):
                    rep.add("db_mismatch", 1, "%s: ack %s %s differs from request %s"
                            % (tag, st, json.dumps(body), json.dumps(req)))
                must.append((("prof", body.get("version")), op))
            else:
                may.append((("prof", WILDCARD), op))
    return must, may, wl


def erasure_fates(user_ops):
    """{op key: "kept" | "erased" | "maybe"}: what the erasures after a write did to its rows
    (one user's writes are sequential, so an erasure sent later commits later)."""
    fate, after = {}, "kept"
    for op in sorted(user_ops, key=lambda o: o["idx"], reverse=True):
        fate[op["key"]] = after
        if op["op"] == "erase" and op["outcome"] == "acked":
            after = "erased"
        elif op["op"] == "erase" and op["outcome"] == "uncertain" and after == "kept":
            after = "maybe"
    return fate


def check_db_vs_acked(user, user_ops, model, db, rep):
    """PostgreSQL must hold what acknowledged writes said (minus what an acknowledged erasure
    after them removed), and nothing unexplained."""
    fate = erasure_fates(user_ops)
    hist_db = db.get("history", {}).get(user, {})
    acked_hist = set()
    uncertain_hist = 0
    for op in user_ops:
        if op["op"] != "history_add":
            continue
        if op["outcome"] == "acked" and isinstance(op.get("body"), dict):
            b = op["body"]
            eid = b.get("entryId")
            acked_hist.add(eid)
            row = hist_db.get(eid)
            want = {k: b.get(k) for k in ("videoId", "positionSeconds", "durationSeconds",
                                          "watchedAt")}
            if fate[op["key"]] == "erased":
                if row is not None:
                    rep.add("db_mismatch", 1, "%s: history entry %s survived an acked erasure"
                            % (user, eid))
            elif row != want and not (row is None and fate[op["key"]] == "maybe"):
                rep.add("db_mismatch", 1, "%s: acked history entry %s is %s in PostgreSQL"
                        % (user, json.dumps(b), json.dumps(row)))
        elif op["outcome"] == "uncertain" and fate[op["key"]] != "erased":
            uncertain_hist += 1
    extra = [e for e in hist_db if e not in acked_hist]
    if len(extra) > uncertain_hist:
        rep.add("db_mismatch", len(extra) - uncertain_hist,
                "%s: %d history entries in PostgreSQL that no acked or uncertain write explains"
                % (user, len(extra) - uncertain_hist))

    wl_db = db.get("watchlist", {}).get(user, {})
    for v, state in sorted(model.items()):
        if state is True and v not in wl_db:
            rep.add("db_mismatch", 1, "%s: %s acked in the watchlist, missing in PostgreSQL"
                    % (user, v))
        elif state is False and v in wl_db:
            rep.add("db_mismatch", 1, "%s: %s acked as removed, present in PostgreSQL" % (user, v))
    for v in wl_db:
        if v not in model:
            rep.add("db_mismatch", 1, "%s: %s in PostgreSQL, never added" % (user, v))

    last = {}
    prof_last = None
    for op in sorted(user_ops, key=lambda o: o["idx"]):
        if op["outcome"] == "rejected":
            continue
        if op["op"] == "rating":
            last[op["req"]["videoId"]] = op
        elif op["op"] == "profile":
            prof_last = op
    rat_db = db.get("ratings", {}).get(user, {})
    for v, op in sorted(last.items()):
        if fate[op["key"]] == "erased":
            if v in rat_db:
                rep.add("db_mismatch", 1, "%s: rating of %s survived an acked erasure" % (user, v))
            continue
        if op["outcome"] != "acked" or fate[op["key"]] == "maybe":
            continue
        got = rat_db.get(v)
        want = [op["body"].get("rating"), op["body"].get("review")]
        if got is None or list(got) != want:
            rep.add("db_mismatch", 1, "%s: rating of %s acked as %s, PostgreSQL has %s"
                    % (user, v, want, got))
    for v in rat_db:
        if v not in last:
            rep.add("db_mismatch", 1, "%s: rating of %s in PostgreSQL, never written" % (user, v))
    prof_db = db.get("profiles", {}).get(user)
    if prof_last is not None and fate[prof_last["key"]] != "kept":
        if fate[prof_last["key"]] == "erased" and prof_db is not None:
            rep.add("db_mismatch", 1, "%s: the profile survived an acked erasure" % user)
    elif prof_last is not None and prof_last["outcome"] == "acked":
        b = prof_last["body"]
        if prof_db is None or prof_db.get("version") != b.get("version") or \
                prof_db.get("displayName") != b.get("displayName"):
            rep.add("db_mismatch", 1, "%s: profile acked as version %s %r, PostgreSQL has %s"
                    % (user, b.get("version"), b.get("displayName"), prof_db))
    elif prof_last is None and prof_db is not None:
        rep.add("db_mismatch", 1, "%s: a profile in PostgreSQL that was never written" % user)


def check_replay(user, evs, db, rep):
    """Replaying the user's distinct events in sequence order must give PostgreSQL's state."""
    wl = set()
    ratings = {}
    hist = collections.Counter()
    version = None
    for e in sorted(evs, key=lambda x: x["seq"]):
        d = e["data"]
        if e["type"] == "WatchlistUpdated":
            if d.get("action") == "added":
                wl.add(d.get("videoId"))
            else:
                wl.discard(d.get("videoId"))
        elif e["type"] == "VideoRated":
            ratings[d.get("videoId")] = [d.get("rating"), d.get("review")]
        elif e["type"] == "HistoryUpdated":
            hist[event_key(e)[1:]] += 1
        elif e["type"] == "ProfileDeleted":
            wl, ratings, hist, version = set(), {}, collections.Counter(), None
        else:
            version = d.get("version")
    db_wl = set(db.get("watchlist", {}).get(user, {}))
    db_hist = collections.Counter(
        (h["videoId"], h["positionSeconds"], h["durationSeconds"], h["watchedAt"])
        for h in db.get("history", {}).get(user, {}).values())
    db_rat = {v: list(r) for v, r in db.get("ratings", {}).get(user, {}).items()}
    prof = db.get("profiles", {}).get(user)
    db_version = prof.get("version") if prof else None
    if wl != db_wl:
        rep.add("replay_mismatch", 1, "%s: events give watchlist +%s -%s vs PostgreSQL"
                % (user, sorted(wl - db_wl), sorted(db_wl - wl)))
    if hist != db_hist:
        rep.add("replay_mismatch", 1, "%s: events give %d history entries, PostgreSQL %d"
                % (user, sum(hist.values()), sum(db_hist.values())))
    if ratings != db_rat:
        rep.add("replay_mismatch", 1, "%s: events give ratings %s, PostgreSQL %s"
                % (user, ratings, db_rat))
    if version != db_version:
        rep.add("replay_mismatch", 1, "%s: events give profile version %s, PostgreSQL %s"
                % (user, version, db_version))


def check(ops, events, db, cache=None):
    rep = Report()
    ops_by_user = collections.defaultdict(list)
    for op in ops:
        ops_by_user[op["user"]].append(op)
        if op["outcome"] == "acked":
            rep.c["acked"] += 1
            rep.c["erasures"] += op["op"] == "erase"
        elif op["outcome"] == "uncertain":
            rep.c["uncertain"] += 1
        else:
            rep.add("rejected", 1, "%s %s %s: %s %s" % (op["user"], op["op"], op["key"],
                                                         op.get("status"), op.get("error")))
    rep.c["records"] = len(events)

    # -- distinct events, duplicates, per-user order on the topic
    first = {}
    by_user = collections.defaultdict(list)
    for ev in sorted(events, key=lambda e: (e.get("p"), e.get("o"))):
        e = parse_event(ev, rep)
        if e is None:
            continue
        if e["id"] in first:
            rep.c["duplicates"] += 1
            f = first[e["id"]]
            if (f["user"], f["seq"], f["type"], f["data"]) != (e["user"], e["seq"], e["type"],
                                                              e["data"]):
                rep.add("malformed", 1, "ce_id %s re-sent with other content" % e["id"])
            continue
        first[e["id"]] = e
        by_user[e["user"]].append(e)
        rep.c["profile_deleted"] += e["type"] == "ProfileDeleted"
    rep.c["events"] = len(first)

    outbox = db.get("outbox", {})
    seqs = db.get("seq", {})
    users = set(ops_by_user) | set(by_user)
    rep.c["users"] = len(users)
    for user in sorted(users):
        evs = by_user.get(user, [])
        # order: consumption order (partition, offset) must follow ce_sequence
        parts = collections.Counter(e["p"] for e in evs)
        if len(parts) > 1:
            rep.add("reordered", len(parts) - 1, "%s: events on partitions %s" % (user, dict(parts)))
        top = 0
        last_time = ""
        for e in sorted(evs, key=lambda x: x["seq"]):
            if e["time"] < last_time:
                rep.add("time_backwards", 1, "%s: ce_time %s of seq %d before %s"
                        % (user, e["time"], e["seq"], last_time))
            last_time = max(last_time, e["time"])
        for e in evs:
            if e["seq"] < top:
                rep.add("reordered", 1, "%s: seq %d after seq %d" % (user, e["seq"], top))
            top = max(top, e["seq"])
        # gaps and sequence numbers never handed out
        n = seqs.get(user, 0)
        by_seq = collections.defaultdict(list)
        for e in evs:
            by_seq[e["seq"]].append(e)
        missing = [s for s in range(1, n + 1) if s not in by_seq]
        if missing:
            rep.add("gaps", len(missing), "%s: seq %s of 1..%d never seen" % (user, missing[:10], n))
        # the relay removes the outbox rows of a user up to a published ProfileDeleted
        erased_upto = max([e["seq"] for e in evs if e["type"] == "ProfileDeleted"], default=0)
        good = []
        for s, group in sorted(by_seq.items()):
            if s > n:
                rep.add("unexpected", len(group), "%s: seq %d beyond last_seq %d" % (user, s, n))
                continue
            if len(group) > 1:
                rep.add("unexpected", len(group) - 1, "%s: seq %d carried by %d event ids"
                        % (user, s, len(group)))
            for e in group:
                row = outbox.get(e["id"])
                if row is None and s <= erased_upto:
                    good.append(e)  # purged after the erasure: nothing left to compare with
                    continue
                if row is None:
                    rep.add("unexpected", 1, "%s: event %s (seq %d) has no outbox row"
                            % (user, e["id"], s))
                    continue
                try:
                    payload = json.loads(row["payload"])
                except ValueError:
                    payload = None
                if (row["user"], row["seq"], row["type"], payload) != (user, s, e["type"],
                                                                      e["data"]):
                    rep.add("unexpected", 1, "%s: event %s differs from its outbox row" %
                            (user, e["id"]))
                    continue
                good.append(e)
        # content: each acknowledged write has its event, exactly once
        must, may, model = expectations(ops_by_user.get(user, []), rep)
        have = collections.Counter(event_key(e) for e in good)
        for k, op in must:
            if have[k] > 0:
                have[k] -= 1
            else:
                rep.add("lost", 1, "%s %s %s (status %s): no event %s"
                        % (user, op["op"], op["key"], op.get("status"), k))
        for k, op in may:
            if WILDCARD not in k:
                if have[k] > 0:
                    have[k] -= 1
                continue
            for hk in have:
                if have[hk] > 0 and _key_matches(k, hk):
                    have[hk] -= 1
                    break
        for k, cnt in have.items():
            if cnt > 0:
                rep.add("unexpected", cnt, "%s: %d event(s) %s that no write explains"
                        % (user, cnt, k))
        if user in ops_by_user:
            check_db_vs_acked(user, ops_by_user[user], model, db, rep)
        check_replay(user, good, db, rep)

    dl = db.get("dead_letters", [])
    if dl:
        rep.add("dead_letters", len(dl), "dead letters: %s" % dl[:5])
    pending = sum(1 for r in outbox.values() if not r.get("published"))
    if pending:
        rep.add("pending", pending, "%d outbox rows still pending after the drain" % pending)
    if cache is not None:
        rep.c["cache_checked"] = cache.get("checked", 0)
        for s in cache.get("stale", []):
            rep.add("stale_cache", 1, s)
    return rep


def print_report(rep, out=sys.stdout, details=True):
    if details:
        for k in sorted(rep.details):
            for d in rep.details[k]:
                out.write("faults: %s: %s\n" % (k, d))
            if rep.c[k] > len(rep.details[k]):
                out.write("faults: %s: ... %d more\n" % (k, rep.c[k] - len(rep.details[k])))
    out.write(rep.detail_line() + "\n")
    out.write(rep.summary() + "\n")
    out.flush()


def check_run_dir(run_dir, details=True, out=sys.stdout):
    ops = read_jsonl(os.path.join(run_dir, "ops.jsonl"))
    events = read_jsonl(os.path.join(run_dir, "events.jsonl"))
    db = read_json(os.path.join(run_dir, "db.json"))
    cpath = os.path.join(run_dir, "cache.json")
    cache = read_json(cpath) if os.path.exists(cpath) else None
    rep = check(ops, events, db, cache)
    print_report(rep, out, details)
    return rep


def main(argv):
    if len(argv) != 2:
        sys.stderr.write("usage: checker.py RUN_DIR\n")
        return 2
    rep = check_run_dir(argv[1])
    return 0 if rep.ok() else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
