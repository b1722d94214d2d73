"""List pages rendered in C (api/data/listrender.c, V003's api_page_* rows in binary) are byte for
byte what PostgreSQL renders (V002's api_json_* functions, which the writes still use): the body
a POST returns is the item a following GET lists, and rows written straight into the tables
with edge values (control characters, times before 1970 and 2000, sub-millisecond digits) list
exactly as the SQL renderers write them. The cache is out of the way (Redis unreachable, the
API fails open), so every GET is rendered from PostgreSQL.
"""
import json

import pytest

import support
from api_helpers import new_user, start_api


@pytest.fixture
def api(stack):
    a = start_api(stack, REDIS_URL=f"redis://127.0.0.1:{support.free_port()}/0")
    yield a
    a.stop()


def page(items, cursor=None):
    """The body the API must send for `items` (JSON texts, in order)."""
    return ('{"items":[' + ",".join(items) + '],"nextCursor":' +
            ("null" if cursor is None else json.dumps(cursor)) + "}")


def get_body(api, path, user):
    r = api.get(path, user)
    assert r.status_code == 200, (r.status_code, r.text)
    assert r.headers["Content-Type"] == "application/json; charset=utf-8"
    return r.content.decode("utf-8")


def post_body(api, path, user, body, status=(200, 201)):
    r = api.post(path, user, body)
    assert r.status_code in status, (r.status_code, r.text)
    return r.content.decode("utf-8")


def sql_page(stack, sql, params):
    """Runs a query returning one text column (an item rendered by SQL), in order."""
    return [row[0] for row in support.psql(stack, sql, params=params)]


REVIEW = 'He said "hi" \\ back\nline 2\r\n\ttab 😀 é \u2028 </script>'


def test_watchlist_items_as_posted(stack, api):
    u = new_user("lr")
    bodies = {}
    for v in ("a.1", "b_2", "c-3"):
        bodies[v] = post_body(api, f"/profiles/{u}/watchlist", u, {"videoId": v})
    order = [r[0] for r in support.psql(
        stack, "SELECT video_id FROM watchlist_items WHERE user_id = %s "
               "ORDER BY added_at DESC, video_id DESC", params=(u,))]
    assert get_body(api, f"/profiles/{u}/watchlist", u) == page([bodies[v] for v in order])
    # pages of one: each page is the next item, the last has no cursor
    seen, cursor = [], None
    for _ in range(5):
        path = f"/profiles/{u}/watchlist?limit=1" + (f"&cursor={cursor}" if cursor else "")
        doc = json.loads(get_body(api, path, u))
        seen += [json.dumps(i, separators=(",", ":"), ensure_ascii=False) for i in doc["items"]]
        cursor = doc["nextCursor"]
        if cursor is None:
            break
    assert seen == [bodies[v] for v in order]


def test_history_and_continue_as_posted(stack, api):
    u = new_user("lr")
    posts = [
        {"videoId": "moon", "positionSeconds": 5, "durationSeconds": 100,
         "watchedAt": "1969-07-20T20:17:40.123456Z"},                    # before 1970, sub-ms
        {"videoId": "old", "positionSeconds": 0, "watchedAt": "1900-01-01T00:00:00.0005Z"},
        {"videoId": "leap", "positionSeconds": 86400, "durationSeconds": 86400,
         "watchedAt": "2024-02-29T23:59:59.999999+01:00"},               # finished
        {"videoId": "y2k", "positionSeconds": 7, "watchedAt": "1999-12-31T23:59:59.9995Z"},
        {"videoId": "moon", "positionSeconds": 1, "durationSeconds": 100,
         "watchedAt": "1969-07-20T20:17:40.123Z"},                       # older than the latest
        {"videoId": "now", "positionSeconds": 3, "durationSeconds": 10},  # now(): microseconds
        {"videoId": "now", "positionSeconds": 4, "durationSeconds": 10},
    ]
    bodies = {}
    for p in posts:
        b = post_body(api, f"/profiles/{u}/history", u, p, status=(201,))
        bodies[json.loads(b)["entryId"]] = b
    order = [str(r[0]) for r in support.psql(
        stack, "SELECT entry_id FROM history_entries WHERE user_id = %s "
               "ORDER BY watched_at DESC, entry_id DESC", params=(u,))]
    assert len(order) == len(posts)
    assert get_body(api, f"/profiles/{u}/history", u) == page([bodies[e] for e in order])
    # continue: per video the latest entry, unfinished only (computed here from the history)
    latest = [str(r[0]) for r in support.psql(
        stack, "SELECT entry_id FROM (SELECT DISTINCT ON (video_id) * FROM history_entries "
               "WHERE user_id = %s ORDER BY video_id, watched_at DESC, entry_id DESC) l "
               "WHERE duration_seconds IS NULL OR position_seconds < duration_seconds "
               "ORDER BY watched_at DESC, entry_id DESC", params=(u,))]
    assert len(latest) == 4  # now, y2k, moon (the later one), old; leap is finished
    assert get_body(api, f"/profiles/{u}/history?view=continue", u) == \
        page([bodies[e] for e in latest])
    # a cursor page of the continue view
    doc = json.loads(get_body(api, f"/profiles/{u}/history?view=continue&limit=2", u))
    assert doc["nextCursor"] is not None
    rest = get_body(api, f"/profiles/{u}/history?view=continue&limit=2&cursor={doc['nextCursor']}",
                    u)
    assert rest == page([bodies[e] for e in latest[2:]])


def test_ratings_as_posted(stack, api):
    u = new_user("lr")
    b1 = post_body(api, f"/profiles/{u}/ratings", u, {"videoId": "m1", "rating": 4,
                                                        "review": REVIEW}, status=(201,))
    b2 = post_body(api, f"/profiles/{u}/ratings", u, {"videoId": "m2", "rating": 1},
                   status=(201,))
    order = [r[0] for r in support.psql(
        stack, "SELECT video_id FROM ratings WHERE user_id = %s "
               "ORDER BY updated_at DESC, video_id DESC", params=(u,))]
    by_id = {"m1": b1, "m2": b2}
    assert get_body(api, f"/profiles/{u}/ratings", u) == page([by_id[v] for v in order])
    assert get_body(api, f"/profiles/{u}/ratings?videoId=m1", u) == page([b1])
    assert get_body(api, f"/profiles/{u}/ratings?videoId=none", u) == page([])
    # replaced (200): the list shows the new body
    b1b = post_body(api, f"/profiles/{u}/ratings", u, {"videoId": "m1", "rating": 5,
                                                         "review": None}, status=(200,))
    assert get_body(api, f"/profiles/{u}/ratings?videoId=m1", u) == page([b1b])
    assert get_body(api, f"/profiles/{u}/ratings?limit=1", u).startswith('{"items":[' + b1b +
                                                                           '],"nextCursor":"')


def test_rows_written_directly_render_like_sql(stack, api):
    """Values the API would refuse (control characters) or rarely writes (old times with
    microseconds) still list exactly as the SQL renderers write them."""
    u = new_user("lr")
    review = "".join(chr(c) for c in range(1, 32)) + '"\\/\x7f\u0080\u009f😀'
    support.psql(stack, """
        INSERT INTO watchlist_items (user_id, video_id, added_at) VALUES
            (%(u)s, 'w1', '1901-12-13 20:45:52.999999+00'),
            (%(u)s, 'w2', '1999-12-31 23:59:59.9995+00'),
            (%(u)s, 'w3', '2000-01-01 00:00:00+00'),
            (%(u)s, 'w4', '2000-01-01 00:00:00+00'),
            (%(u)s, 'w5', '1969-12-31 23:59:59.000001+00');
        INSERT INTO history_entries (user_id, video_id, position_seconds, duration_seconds,
                                     watched_at) VALUES
            (%(u)s, 'h1', 0, NULL, '1900-02-28 12:34:56.789999+00'),
            (%(u)s, 'h2', 86400, 86400, '2096-02-29 00:00:00.000999+00');
        INSERT INTO ratings (user_id, video_id, rating, review, created_at, updated_at) VALUES
            (%(u)s, 'r1', 3, %(review)s, '1950-06-15 01:02:03.0049+00', '2026-01-01 00:00:00.5+00'),
            (%(u)s, 'r2', 5, '', '1970-01-01 00:00:00+00', '1970-01-01 00:00:00.001+00');
    """, params={"u": u, "review": review})
    want = sql_page(stack, "SELECT api_json_watch(video_id, added_at) FROM watchlist_items "
                           "WHERE user_id = %s ORDER BY added_at DESC, video_id DESC", (u,))
    assert get_body(api, f"/profiles/{u}/watchlist", u) == page(want)
    want = sql_page(stack, "SELECT api_json_history(entry_id, video_id, position_seconds, "
                           "duration_seconds, watched_at) FROM history_entries WHERE user_id = %s "
                           "ORDER BY watched_at DESC, entry_id DESC", (u,))
    assert get_body(api, f"/profiles/{u}/history", u) == page(want)
    want = sql_page(stack, "SELECT api_json_rating(video_id, rating, review, created_at, "
                           "updated_at) FROM ratings WHERE user_id = %s "
                           "ORDER BY updated_at DESC, video_id DESC", (u,))
    body = get_body(api, f"/profiles/{u}/ratings", u)
    assert body == page(want)
    assert json.loads(body)["items"][0]["review"] == review
