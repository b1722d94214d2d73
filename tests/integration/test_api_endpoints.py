"""profile-api against the real binary: every endpoint and status of docs/api.md,
the order of checks, headers, CORS, pagination and the RBAC matrix."""
import base64
import json
import time

import jwt
import pytest
import requests

from api_helpers import (ORIGIN, SECRET, AUDIENCE, ISSUER, assert_problem, new_user,
                         start_api, token)
from support import psql


@pytest.fixture(scope="module")
def api(stack):
    a = start_api(stack)
    yield a
    assert a.stop() == 0


# ---- health and metrics -------------------------------------------------------------------

def test_health_endpoints(api):
    r = requests.get(api.url("/health/live"))
    assert r.status_code == 200
    r = requests.get(api.url("/health/ready"))
    assert r.status_code == 200
    r = requests.get(api.url("/health"))
    assert r.status_code == 200
    doc = r.json()
    assert doc["status"] == "ok"
    assert doc["checks"]["postgres"]["status"] == "up"


def test_metrics(api):
    requests.get(api.url("/health/live"))
    r = requests.get(api.url("/metrics"))
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/plain")
    assert 'profile_api_requests_total{route="/health/live",method="GET",status="2xx"}' in r.text
    assert "profile_api_request_duration_seconds_bucket" in r.text
    assert "profile_api_db_pool_connections 8" in r.text


def test_common_headers(api):
    u = new_user()
    r = api.get(f"/profiles/{u}", u, headers={"X-Request-Id": "req-123.abc"})
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["Cache-Control"] == "no-store"
    assert r.headers["X-Request-Id"] == "req-123.abc"
    assert "/" not in r.headers.get("Server", "")  # no version banner
    r = api.get(f"/profiles/{u}", u, headers={"X-Request-Id": "bad id with spaces"})
    assert r.headers["X-Request-Id"] != "bad id with spaces"
    assert len(r.headers["X-Request-Id"]) > 0


# ---- routing --------------------------------------------------------------------------------

def test_unknown_route_404(api):
    for path in ["/nope", "/profiles", "/profiles/u1/", "/profiles/u1/other", "/health/x"]:
        r = requests.get(api.url(path))
        assert_problem(r, 404)


def test_wrong_method_405_with_allow(api):
    r = requests.post(api.url("/profiles/u1"), data=b"{}")
    assert_problem(r, 405)
    assert set(r.headers["Allow"].replace(" ", "").split(",")) == {"GET", "PUT", "DELETE"}
    r = requests.get(api.url("/profiles/u1/watchlist/v1"))
    assert_problem(r, 405)
    assert r.headers["Allow"] == "DELETE"
    r = requests.request("PATCH", api.url("/profiles/u1/ratings"))
    assert_problem(r, 405)
    assert "POST" in r.headers["Allow"] and "GET" in r.headers["Allow"]


# ---- authentication -------------------------------------------------------------------------

def test_401_missing_and_invalid_tokens(api):
    u = new_user()
    r = requests.get(api.url(f"/profiles/{u}"))
    assert_problem(r, 401)
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    now = int(time.time())
    bad = [
        "Bearer",
        "Bearer not.a.jwt",
        "Basic dXNlcjpwdw==",
        "Bearer " + jwt.encode({"sub": u, "roles": ["user"], "iss": ISSUER, "aud": AUDIENCE,
                                "exp": now + 600}, "another-secret-0123456789abcdef0123",
                               algorithm="HS256"),
        "Bearer " + jwt.encode({"sub": u, "roles": ["user"], "iss": ISSUER, "aud": AUDIENCE,
                                "exp": now - 3600}, SECRET, algorithm="HS256"),
        "Bearer " + jwt.encode({"sub": u, "roles": ["user"], "iss": "other", "aud": AUDIENCE,
                                "exp": now + 600}, SECRET, algorithm="HS256"),
        "Bearer " + jwt.encode({"sub": u, "roles": ["user"], "iss": ISSUER, "aud": "other",
                                "exp": now + 600}, SECRET, algorithm="HS256"),
        "Bearer " + jwt.encode({"sub": u, "roles": ["user"], "iss": ISSUER, "aud": AUDIENCE},
                               SECRET, algorithm="HS256"),  # no exp
    ]
    # alg none
    hdr = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode()
    body = base64.urlsafe_b64encode(json.dumps(
        {"sub": u, "roles": ["user"], "iss": ISSUER, "aud": AUDIENCE, "exp": now + 600}
    ).encode()).rstrip(b"=").decode()
    bad.append(f"Bearer {hdr}.{body}.")
    for value in bad:
        r = requests.get(api.url(f"/profiles/{u}"), headers={"Authorization": value})
        assert_problem(r, 401)
        assert r.headers["WWW-Authenticate"].startswith("Bearer"), value


def test_403_unknown_roles(api):
    u = new_user()
    for roles in [[], ["viewer"], None]:
        r = api.get(f"/profiles/{u}", u, roles=roles)
        assert_problem(r, 403)
    # roles not an array of strings
    t = token(u, roles=None, roles_x=1)
    t2 = jwt.encode({"sub": u, "roles": "user", "iss": ISSUER, "aud": AUDIENCE,
                     "exp": int(time.time()) + 600}, SECRET, algorithm="HS256")
    for tok in (t, t2):
        r = requests.get(api.url(f"/profiles/{u}"), headers={"Authorization": "Bearer " + tok})
        assert_problem(r, 403)


def test_rbac_matrix(api):
    owner, other = new_user("own"), new_user("oth")
    body = {"displayName": "Owner"}
    path = f"/profiles/{owner}"
    cases = [
        # (caller, roles, method, expected)
        (owner, ["user"], "PUT", 201),
        (owner, ["user"], "GET", 200),
        (other, ["user"], "GET", 403),
        (other, ["user"], "PUT", 403),
        (other, ["support"], "GET", 200),
        (other, ["support"], "PUT", 403),
        (other, ["admin"], "GET", 200),
        (other, ["admin"], "PUT", 200),
        (other, ["viewer"], "GET", 403),
        (owner, ["viewer"], "GET", 403),
        (owner, ["other", "user"], "GET", 200),
    ]
    for caller, roles, method, expected in cases:
        if method == "PUT":
            r = api.put(path, caller, body, roles=roles)
        else:
            r = api.get(path, caller, roles=roles)
        assert r.status_code == expected, (caller, roles, method, r.status_code, r.text)
    # list and sub-resource writes follow the same rule
    assert api.get(f"{path}/watchlist", other, roles=["support"]).status_code == 200
    assert api.post(f"{path}/watchlist", other, {"videoId": "v1"},
                    roles=["support"]).status_code == 403
    assert api.post(f"{path}/watchlist", other, {"videoId": "v1"},
                    roles=["admin"]).status_code == 201
    assert api.delete(f"{path}/watchlist/v1", other, roles=["user"]).status_code == 403
    assert api.delete(f"{path}/watchlist/v1", owner, roles=["user"]).status_code == 204


# ---- order of checks ------------------------------------------------------------------------

def test_check_order(api):
    u = new_user()
    big = b"{" + b" " * (70 * 1024) + b"}"
    # 405 before 401
    r = requests.post(api.url(f"/profiles/{u}"), data=b"x")
    assert r.status_code == 405
    # 401 before 403 and 400
    r = requests.get(api.url("/profiles/bad%20id"))
    assert r.status_code == 401
    # 403 before 400: a user on someone else's malformed id
    r = api.get("/profiles/bad%20id", u)
    assert_problem(r, 403)
    # 400 (ids) before 413: admin on a malformed id with a huge body
    r = api.request("POST", "/profiles/bad%20id/watchlist", u, roles=["admin"], raw=big,
                    headers={"Content-Type": "text/plain"})
    doc = assert_problem(r, 400)
    assert doc["errors"][0]["field"] == "userId"
    # 413 before 415
    r = api.request("POST", f"/profiles/{u}/watchlist", u, raw=big,
                    headers={"Content-Type": "text/plain"})
    assert_problem(r, 413)
    # 415 before 400 body
    r = api.request("POST", f"/profiles/{u}/watchlist", u, raw=b"not json",
                    headers={"Content-Type": "text/plain"})
    assert_problem(r, 415)
    r = api.request("POST", f"/profiles/{u}/watchlist", u, raw=b"not json")
    assert_problem(r, 415)
    r = api.request("POST", f"/profiles/{u}/watchlist", u, raw=b"not json",
                    headers={"Content-Type": "application/json"})
    assert_problem(r, 400)


def test_bad_ids_400(api):
    admin = new_user("adm")
    for path in ["/profiles/a%20b", "/profiles/" + "x" * 65, "/profiles/a%2Fb",
                 "/profiles/%zz", "/profiles/%C3%A9"]:
        r = api.get(path, admin, roles=["admin"])
        doc = assert_problem(r, 400)
        assert doc["errors"][0]["field"] == "userId"
    u = new_user()
    r = api.delete(f"/profiles/{u}/watchlist/bad%21id", u)
    doc = assert_problem(r, 400)
    assert doc["errors"][0]["field"] == "videoId"
    # odd but valid characters
    r = api.get("/profiles/A.b-c_9", "A.b-c_9")
    assert r.status_code == 404


def test_413_415_400_bodies(api):
    u = new_user()
    path = f"/profiles/{u}"
    big = json.dumps({"displayName": "x", "preferences": {"p": "y" * (65 * 1024)}}).encode()
    r = api.request("PUT", path, u, raw=big, headers={"Content-Type": "application/json"})
    assert_problem(r, 413)
    r = api.request("PUT", path, u, raw=b'{"displayName":"x"}')
    assert_problem(r, 415)
    r = api.request("PUT", path, u, raw=b'{"displayName":"x"}',
                    headers={"Content-Type": "text/json"})
    assert_problem(r, 415)
    r = api.request("PUT", path, u, raw=b'{"displayName":"x"}',
                    headers={"Content-Type": "Application/JSON; Charset=UTF-8"})
    assert r.status_code == 201, r.text
    r = api.request("PUT", path, u, raw=b'{"displayName":', headers={
        "Content-Type": "application/json"})
    assert_problem(r, 400)
    r = api.put(path, u, {"displayName": "x", "bogus": 1})
    doc = assert_problem(r, 400)
    assert any(e["field"] == "bogus" for e in doc["errors"])
    r = api.put(path, u, {"displayName": ""})
    doc = assert_problem(r, 400)
    assert any(e["field"] == "displayName" for e in doc["errors"])
    r = api.put(path, u, {"displayName": "ok", "avatarUrl": "http://insecure.example/a.png"})
    assert_problem(r, 400)
    r = api.put(path, u, {"displayName": "\U0001F600" * 100})
    assert r.status_code == 200, r.text
    r = api.put(path, u, {"displayName": "\U0001F600" * 101})
    assert_problem(r, 400)


# ---- profiles -------------------------------------------------------------------------------

def test_profile_lifecycle(api):
    u = new_user()
    path = f"/profiles/{u}"
    r = api.get(path, u)
    assert_problem(r, 404)
    r = api.put(path, u, {"displayName": "Ann", "preferences": {"language": "en"}})
    assert r.status_code == 201, r.text
    assert r.headers["Location"] == path
    assert r.headers["ETag"] == '"1"'
    assert r.headers["Content-Type"].startswith("application/json")
    doc = r.json()
    assert doc["userId"] == u and doc["displayName"] == "Ann" and doc["avatarUrl"] is None
    assert doc["preferences"] == {"language": "en"} and doc["version"] == 1
    assert doc["createdAt"].endswith("Z") and len(doc["createdAt"]) == 24

    r = api.get(path, u)
    assert r.status_code == 200 and r.headers["ETag"] == '"1"'
    got = r.json()
    assert got == doc

    # a GET body may be sent back: server fields are ignored
    got["displayName"] = "Ann B"
    r = api.put(path, u, got)
    assert r.status_code == 200, r.text
    assert "Location" not in r.headers
    assert r.headers["ETag"] == '"2"' and r.json()["version"] == 2
    assert r.json()["preferences"] == {"language": "en"}

    # full replace: omitted members get their defaults
    r = api.put(path, u, {"displayName": "Ann C"}, headers={"If-Match": '"2"'})
    assert r.status_code == 200 and r.json()["preferences"] == {} and r.json()["version"] == 3
    r = api.put(path, u, {"displayName": "Stale"}, headers={"If-Match": '"2"'})
    assert_problem(r, 412)
    r = api.put(path, u, {"displayName": "Any"}, headers={"If-Match": "*"})
    assert r.status_code == 200 and r.json()["version"] == 4
    assert api.get(path, u).json()["displayName"] == "Any"

    # If-Match on a profile that does not exist is 412
    v = new_user()
    r = api.put(f"/profiles/{v}", v, {"displayName": "X"}, headers={"If-Match": "*"})
    assert_problem(r, 412)
    assert api.get(f"/profiles/{v}", v).status_code == 404


# ---- watchlist ------------------------------------------------------------------------------

def test_watchlist(api, stack):
    u = new_user()
    path = f"/profiles/{u}/watchlist"
    r = api.get(path, u)
    assert r.status_code == 200 and r.json() == {"items": [], "nextCursor": None}
    r = api.post(path, u, {"videoId": "v1"})
    assert r.status_code == 201, r.text
    assert r.json()["videoId"] == "v1" and r.json()["addedAt"].endswith("Z")
    r = api.post(path, u, {"videoId": "v1"})
    assert r.status_code == 200 and r.json()["videoId"] == "v1"
    r = api.post(path, u, {"videoId": "v2", "extra": True})
    assert_problem(r, 400)
    r = api.post(path, u, {"videoId": "bad id"})
    doc = assert_problem(r, 400)
    assert doc["errors"][0]["field"] == "videoId"
    r = api.delete(f"{path}/v1", u)
    assert r.status_code == 204 and r.content == b""
    r = api.delete(f"{path}/v1", u)
    assert r.status_code == 204
    assert api.get(path, u).json()["items"] == []


def test_watchlist_full_409(api, stack):
    u = new_user()
    psql(stack, "INSERT INTO watchlist_items (user_id, video_id, added_at) "
                "SELECT %s, 'v' || g, now() - g * interval '1 second' "
                "FROM generate_series(1, 1000) g", params=(u,))
    r = api.post(f"/profiles/{u}/watchlist", u, {"videoId": "one-more"})
    assert_problem(r, 409)
    # already there is still fine
    r = api.post(f"/profiles/{u}/watchlist", u, {"videoId": "v5"})
    assert r.status_code == 200


def test_watchlist_pagination(api):
    u = new_user()
    path = f"/profiles/{u}/watchlist"
    for i in range(7):
        assert api.post(path, u, {"videoId": f"v{i}"}).status_code == 201
    seen, cursor, pages = [], None, 0
    while True:
        q = "?limit=3" + (f"&cursor={cursor}" if cursor else "")
        r = api.get(path + q, u)
        assert r.status_code == 200, r.text
        doc = r.json()
        assert len(doc["items"]) <= 3
        seen += [i["videoId"] for i in doc["items"]]
        pages += 1
        cursor = doc["nextCursor"]
        if cursor is None:
            break
    assert pages == 3
    assert seen == [f"v{i}" for i in reversed(range(7))]  # newest first
    assert len(api.get(path, u).json()["items"]) == 7  # default limit 50

    first = api.get(path + "?limit=3", u).json()["nextCursor"]
    tampered = first[:-2] + ("AA" if first[-2:] != "AA" else "BB")
    assert_problem(api.get(path + f"?cursor={tampered}", u), 400)
    assert_problem(api.get(path + "?cursor=garbage!", u), 400)
    # a cursor of another list is rejected
    hcur = None
    for i in range(3):
        api.post(f"/profiles/{u}/history", u, {"videoId": f"h{i}", "positionSeconds": 1})
    hcur = api.get(f"/profiles/{u}/history?limit=1", u).json()["nextCursor"]
    assert hcur is not None
    assert_problem(api.get(path + f"?cursor={hcur}", u), 400)
    for bad in ["0", "101", "abc", "1.5", "-1", ""]:
        doc = assert_problem(api.get(path + f"?limit={bad}", u), 400)
        assert doc["errors"][0]["field"] == "limit"
    assert api.get(path + "?limit=100", u).status_code == 200
    assert api.get(path + "?limit=1", u).status_code == 200


# ---- history --------------------------------------------------------------------------------

def test_history(api):
    u = new_user()
    path = f"/profiles/{u}/history"
    r = api.post(path, u, {"videoId": "a", "positionSeconds": 10, "durationSeconds": 100,
                           "watchedAt": "2026-01-01T10:00:00.000Z"})
    assert r.status_code == 201, r.text
    doc = r.json()
    assert doc["videoId"] == "a" and doc["positionSeconds"] == 10
    assert doc["durationSeconds"] == 100 and doc["watchedAt"] == "2026-01-01T10:00:00.000Z"
    assert doc["entryId"]
    api.post(path, u, {"videoId": "a", "positionSeconds": 50, "durationSeconds": 100,
                       "watchedAt": "2026-01-01T11:00:00.000Z"})
    api.post(path, u, {"videoId": "b", "positionSeconds": 100, "durationSeconds": 100,
                       "watchedAt": "2026-01-01T12:00:00.000Z"})
    api.post(path, u, {"videoId": "c", "positionSeconds": 5,
                       "watchedAt": "2026-01-01T09:00:00.000Z"})
    items = api.get(path, u).json()["items"]
    assert [i["videoId"] for i in items] == ["b", "a", "a", "c"]
    cont = api.get(path + "?view=continue", u).json()["items"]
    assert [(i["videoId"], i["positionSeconds"]) for i in cont] == [("a", 50), ("c", 5)]
    # without a key, appending twice appends twice
    api.post(path, u, {"videoId": "c", "positionSeconds": 5})
    api.post(path, u, {"videoId": "c", "positionSeconds": 5})
    assert len(api.get(path, u).json()["items"]) == 6
    for bad in [{"videoId": "a", "positionSeconds": 101, "durationSeconds": 100},
                {"videoId": "a", "positionSeconds": -1},
                {"videoId": "a", "positionSeconds": 86401},
                {"videoId": "a", "positionSeconds": "5"},
                {"videoId": "a"},
                {"videoId": "a", "positionSeconds": 1, "watchedAt": "yesterday"}]:
        assert_problem(api.post(path, u, bad), 400)
    assert_problem(api.get(path + "?view=continue&limit=0", u), 400)
    # view=continue pages with its own cursors
    w = new_user()
    wp = f"/profiles/{w}/history"
    for i in range(3):
        api.post(wp, w, {"videoId": f"x{i}", "positionSeconds": 1, "durationSeconds": 10,
                         "watchedAt": f"2026-02-0{i + 1}T00:00:00.000Z"})
    p1 = api.get(wp + "?view=continue&limit=2", w).json()
    assert [i["videoId"] for i in p1["items"]] == ["x2", "x1"] and p1["nextCursor"]
    p2 = api.get(wp + f"?view=continue&limit=2&cursor={p1['nextCursor']}", w).json()
    assert [i["videoId"] for i in p2["items"]] == ["x0"] and p2["nextCursor"] is None
    # a plain history cursor is not a continue cursor
    plain = api.get(wp + "?limit=1", w).json()["nextCursor"]
    assert_problem(api.get(wp + f"?view=continue&cursor={plain}", w), 400)


# ---- ratings --------------------------------------------------------------------------------

def test_ratings(api):
    u = new_user()
    path = f"/profiles/{u}/ratings"
    r = api.post(path, u, {"videoId": "v1", "rating": 4, "review": "good"})
    assert r.status_code == 201, r.text
    assert r.json()["rating"] == 4 and r.json()["review"] == "good"
    r = api.post(path, u, {"videoId": "v1", "rating": 5})
    assert r.status_code == 200 and r.json()["rating"] == 5 and r.json()["review"] is None
    api.post(path, u, {"videoId": "v2", "rating": 1})
    items = api.get(path, u).json()["items"]
    assert [i["videoId"] for i in items] == ["v2", "v1"]
    items = api.get(path + "?videoId=v1", u).json()["items"]
    assert len(items) == 1 and items[0]["rating"] == 5
    assert api.get(path + "?videoId=none", u).json()["items"] == []
    assert_problem(api.get(path + "?videoId=bad%20id", u), 400)
    assert api.get(path + "?unknown=1", u).status_code == 200
    for bad in [{"videoId": "v1", "rating": 0}, {"videoId": "v1", "rating": 6},
                {"videoId": "v1", "rating": 3.5}, {"videoId": "v1", "rating": 3,
                                                   "review": "x" * 2001},
                {"rating": 3}]:
        assert_problem(api.post(path, u, bad), 400)
    assert api.post(path, u, {"videoId": "v3", "rating": 3,
                              "review": "\u00e9" * 2000}).status_code == 201


# ---- CORS -----------------------------------------------------------------------------------

def test_cors(api):
    u = new_user()
    r = api.get(f"/profiles/{u}", u, headers={"Origin": ORIGIN})
    assert r.status_code == 404
    assert r.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "Origin" in r.headers["Vary"]
    assert "ETag" in r.headers["Access-Control-Expose-Headers"]
    r = requests.get(api.url(f"/profiles/{u}"), headers={"Origin": ORIGIN})
    assert r.status_code == 401 and r.headers["Access-Control-Allow-Origin"] == ORIGIN
    for other in ["https://evil.example", "null"]:
        r = api.get(f"/profiles/{u}", u, headers={"Origin": other})
        assert "Access-Control-Allow-Origin" not in r.headers
    r = requests.options(api.url(f"/profiles/{u}/watchlist"), headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type"})
    assert r.status_code == 204
    assert r.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "POST" in r.headers["Access-Control-Allow-Methods"]
    for h in ["Authorization", "Content-Type", "Idempotency-Key", "If-Match"]:
        assert h in r.headers["Access-Control-Allow-Headers"]
    assert r.headers["Access-Control-Max-Age"] == "600"
    r = requests.options(api.url(f"/profiles/{u}"), headers={
        "Origin": "https://evil.example", "Access-Control-Request-Method": "PUT"})
    assert r.status_code == 204
    assert "Access-Control-Allow-Origin" not in r.headers
