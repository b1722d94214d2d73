"""The consumer-side check of a snapshot (docs/events.md, Snapshots): fold a topic's events into
per-user state, as a consumer would, and compare it with the database for every user. Used by
tests/integration/test_snapshot.py and bench/snapshot_bench.py (the same check at 10,000 users).
"""
import json
import sys

import support
from support import run_sql

sys.path.insert(0, str(support.REPO / "examples" / "consumer"))
from consumer import UserState  # noqa: E402

# A user the fold never saw: no profile, nothing in any list.
EMPTY = {"profileVersion": None, "watchlist": [], "ratings": {}, "resumePoints": {}}


def db_state(url):
    """{user: UserState-like dict} of every user with a sequence, from the tables."""
    users = {u: {"profileVersion": None, "watchlist": [], "ratings": {}, "resumePoints": {}}
             for (u,) in run_sql(url, "SELECT user_id FROM user_event_seq")}
    for u, v in run_sql(url, "SELECT user_id, version FROM profiles"):
        users[u]["profileVersion"] = v
    for u, vids in run_sql(url, "SELECT user_id, array_agg(video_id ORDER BY video_id) "
                                "FROM watchlist_items GROUP BY user_id"):
        users[u]["watchlist"] = vids
    for u, vid, rating, review in run_sql(url, "SELECT user_id, video_id, rating, review "
                                               "FROM ratings"):
        users[u]["ratings"][vid] = {"rating": rating, "review": review}
    for u, vid, pos, dur, at in run_sql(url, "SELECT user_id, video_id, position_seconds, "
                                             "duration_seconds, api_ts(watched_at) "
                                             "FROM resume_points"):
        users[u]["resumePoints"][vid] = {"positionSeconds": pos, "durationSeconds": dur,
                                         "watchedAt": at}
    return users


def fold(events, snapshot_id=None, since=None):
    """Per user: (state json, problems). With snapshot_id, what a new consumer does
    (docs/events.md, Snapshots): it reads only events from `since` (ce_time text) on, takes each
    user's first event as the start of its sequence, and restarts the user's state empty at its
    first event of the snapshot. `events` are dicts as test_relay_e2e.Collector makes them."""
    states, last, problems = {}, {}, []
    for ev in sorted(events, key=lambda e: (e["partition"], e["offset"])):
        u, h = ev["key"], ev["headers"]
        seq = int(h["ce_sequence"])
        if since is not None and h["ce_time"] < since:
            continue
        if seq <= last.get(u, 0):
            continue  # a re-send
        if seq != last.get(u, 0) + 1 and (snapshot_id is None or u in last):
            problems.append(f"{u}: gap after {last.get(u, 0)}, got {seq}")
        last[u] = seq
        st = states.setdefault(u, UserState())
        if snapshot_id is not None and h.get("ce_snapshot") == snapshot_id \
                and not getattr(st, "from_snapshot", False):
            st = states[u] = UserState()
            st.from_snapshot = True
        st.apply(h["ce_type"], json.loads(ev["value"]))
        st.last_seq = seq
    out = {}
    for u, st in states.items():
        j = st.to_json()
        del j["lastSequence"]
        out[u] = j
    return out, problems


def mismatches(want, got):
    """Users (of either side) whose folded state is not the database's, sorted."""
    return sorted(u for u in set(want) | set(got) if got.get(u, EMPTY) != want.get(u, EMPTY))


def snapshot_since(url, snapshot_id):
    """Where a consumer starting from the snapshot reads from: a second before its start, as
    ce_time text (api_ts)."""
    return run_sql(url, "SELECT api_ts(started_at - interval '1 second') FROM snapshots "
                        "WHERE snapshot_id = %s", [snapshot_id])[0][0]
