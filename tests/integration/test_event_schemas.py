"""The event schemas of schemas/events/ (docs/events.md): each is a valid draft 2020-12 schema
whose $id matches its file name; what the real API writes to the outbox, edge values included,
validates against its type's schema; and payloads that break the contract are rejected (so the
checks of the end-to-end and fault suites can fail).
"""
import json

import pytest

import event_schemas
from api_helpers import new_user, start_api
from support import psql

URN = "urn:profile-service:schema:%s:1"
TYPES = ("WatchlistUpdated", "HistoryUpdated", "VideoRated", "ProfileUpdated", "ProfileDeleted")

GOOD = {
    "WatchlistUpdated": {"userId": "u1", "videoId": "v9", "action": "added"},
    "HistoryUpdated": {"userId": "u1", "videoId": "v9", "positionSeconds": 0,
                       "durationSeconds": None, "watchedAt": "2026-11-25T22:29:14.123Z"},
    "VideoRated": {"userId": "u1", "videoId": "v9", "rating": 5, "review": None},
    "ProfileUpdated": {"userId": "u1", "version": 1},
    "ProfileDeleted": {"userId": "u1"},
}


def headers(etype, schema=None, **more):
    h = {"ce_specversion": "1.0", "ce_id": "0b7e4b7a-7d3c-4c1f-9a55-2f2b1f0c9e01",
         "ce_source": "/profile-service", "ce_type": etype,
         "ce_dataschema": schema or URN % etype, "ce_subject": "u1",
         "ce_time": "2026-01-02T03:04:05.678Z", "ce_sequence": "17",
         "content-type": "application/json",
         "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
    h.update(more)
    return {k: v for k, v in h.items() if v is not None}


def check(etype, data, key="u1", schema=None):
    return event_schemas.check(headers(etype, schema, ce_subject=key), key,
                               json.dumps(data).encode())


def test_schema_files_are_complete_and_named_by_id():
    validators = event_schemas.load()
    assert sorted(validators) == sorted(URN % t for t in TYPES)
    for uri, v in validators.items():
        assert v.schema["$id"] == uri
        assert v.schema["additionalProperties"] is False
        for example in v.schema["examples"]:
            assert list(v.iter_errors(example)) == [], (uri, example)


def test_load_refuses_an_id_that_does_not_match_the_file(tmp_path):
    schema = json.loads((event_schemas.SCHEMA_DIR / "VideoRated.v1.json").read_text())
    schema["$id"] = URN % "WatchlistUpdated"
    (tmp_path / "VideoRated.v1.json").write_text(json.dumps(schema))
    with pytest.raises(ValueError, match="want 'urn:profile-service:schema:VideoRated:1'"):
        event_schemas.load(tmp_path)


@pytest.mark.parametrize("etype", TYPES)
def test_good_payloads_pass(etype):
    assert check(etype, GOOD[etype]) == []


BAD = [
    ("WatchlistUpdated", {"action": "moved"}, "action"),
    ("WatchlistUpdated", {"videoId": "a b"}, "videoId"),
    ("WatchlistUpdated", {"videoId": "v" * 65}, "videoId"),
    ("WatchlistUpdated", {"extra": 1}, "Additional properties"),
    ("HistoryUpdated", {"positionSeconds": -1}, "positionSeconds"),
    ("HistoryUpdated", {"positionSeconds": 86401}, "positionSeconds"),
    ("HistoryUpdated", {"positionSeconds": 1.5}, "positionSeconds"),
    ("HistoryUpdated", {"durationSeconds": "60"}, "durationSeconds"),
    ("HistoryUpdated", {"watchedAt": "2026-11-25T22:29:14Z"}, "watchedAt"),
    ("HistoryUpdated", {"watchedAt": "2026-11-25T22:29:14.123+01:00"}, "watchedAt"),
    ("VideoRated", {"rating": 0}, "rating"),
    ("VideoRated", {"rating": 6}, "rating"),
    ("VideoRated", {"review": "x" * 2001}, "review"),
    ("VideoRated", {"review": "bell \u0007"}, "review"),
    ("ProfileUpdated", {"version": 0}, "version"),
    ("ProfileUpdated", {"version": "1"}, "version"),
]


@pytest.mark.parametrize("etype,change,where", BAD)
def test_bad_payloads_are_rejected(etype, change, where):
    data = dict(GOOD[etype], **change)
    problems = check(etype, data)
    assert problems and any(where in p for p in problems), problems


@pytest.mark.parametrize("etype", TYPES)
def test_missing_member_is_rejected(etype):
    for member in GOOD[etype]:
        data = {k: v for k, v in GOOD[etype].items() if k != member}
        problems = check(etype, data)
        assert any("required property" in p for p in problems), (member, problems)


def test_record_level_rules():
    good = json.dumps(GOOD["WatchlistUpdated"]).encode()
    wl = "WatchlistUpdated"
    assert event_schemas.check(headers(wl), "u1", good) == []
    assert event_schemas.check(headers(wl, ce_dataschema=None), "u1", good) == \
        ["no ce_dataschema header"]
    assert "names no schema" in event_schemas.check(
        headers(wl, "urn:profile-service:schema:WatchlistUpdated:2"), "u1", good)[0]
    assert any("is not a schema of ce_type" in p for p in event_schemas.check(
        headers("VideoRated", URN % wl), "u1", good))
    assert event_schemas.check(headers(wl, ce_subject="u2"), "u2", good) == \
        ["data.userId 'u1' differs from the key 'u2'"]
    assert event_schemas.check(headers(wl), "u1", b"{nope") == ["value is not JSON"]


# Headers against docs/asyncapi.yaml (so the AsyncAPI document is checked against live events
# wherever event_schemas.check runs).
BAD_HEADERS = [
    ({"ce_specversion": "0.3"}, "ce_specversion"),
    ({"ce_id": "not-a-uuid"}, "ce_id"),
    ({"ce_id": "0B7E4B7A-7D3C-4C1F-9A55-2F2B1F0C9E01"}, "ce_id"),
    ({"ce_source": ""}, "ce_source"),
    ({"ce_time": "2026-01-02T03:04:05Z"}, "ce_time"),
    ({"ce_sequence": "0"}, "ce_sequence"),
    ({"ce_sequence": "017"}, "ce_sequence"),
    ({"content-type": "text/plain"}, "content-type"),
    ({"traceparent": "00-xyz"}, "traceparent"),
    ({"ce_subject": "a b"}, "ce_subject"),
    ({"traceparent": None}, "'traceparent' is a required property"),
    ({"ce_time": None}, "'ce_time' is a required property"),
]


@pytest.mark.parametrize("change,where", BAD_HEADERS)
def test_bad_headers_are_rejected(change, where):
    problems = event_schemas.check_headers(headers("VideoRated", **change))
    assert problems and any(where in p for p in problems), problems


def test_header_rules_per_message():
    assert event_schemas.check_headers(headers("VideoRated")) == []
    assert event_schemas.check_headers(headers("Nope")) == \
        ["ce_type 'Nope' is no message of docs/asyncapi.yaml"]
    wrong = headers("VideoRated", URN % "ProfileUpdated")
    assert any("ce_dataschema" in p for p in event_schemas.check_headers(wrong))


def test_what_the_api_writes_validates(stack):
    """Edge values through the real API and SQL functions: the outbox payloads (what the relay
    publishes byte for byte) validate, so the schemas are not stricter than the service."""
    api = start_api(stack)
    try:
        u = new_user("sch")
        review = "line one\nline\ttwo\r\n" + "\U0001F600" * 1980  # 2000 code points
        writes = [
            api.put(f"/profiles/{u}", u, {"displayName": "A", "preferences": {"x": [1]}}),
            api.put(f"/profiles/{u}", u, {"displayName": "B"}),
            api.post(f"/profiles/{u}/watchlist", u, {"videoId": "v.1_x-Y"}),
            api.delete(f"/profiles/{u}/watchlist/v.1_x-Y", u),
            api.post(f"/profiles/{u}/history", u, {"videoId": "v2", "positionSeconds": 0}),
            api.post(f"/profiles/{u}/history", u,
                     {"videoId": "v2", "positionSeconds": 86400, "durationSeconds": 86400,
                      "watchedAt": "1999-12-31T23:59:59.9999+05:30"}),
            api.post(f"/profiles/{u}/ratings", u, {"videoId": "v2", "rating": 1}),
            api.post(f"/profiles/{u}/ratings", u,
                     {"videoId": "v2", "rating": 5, "review": review}),
            # the same rating again: nothing changes, and it is published again
            api.post(f"/profiles/{u}/ratings", u,
                     {"videoId": "v2", "rating": 5, "review": review}),
        ]
        assert [r.status_code for r in writes] == [201, 200, 201, 204, 201, 201, 201, 200, 200], \
            [r.text for r in writes]
    finally:
        assert api.stop() == 0
    rows = psql(stack, "SELECT seq, event_type, payload::text FROM outbox WHERE user_id = %s "
                       "ORDER BY seq", params=(u,))
    assert [t for _, t, _ in rows] == ["ProfileUpdated", "ProfileUpdated", "WatchlistUpdated",
                                       "WatchlistUpdated", "HistoryUpdated", "HistoryUpdated",
                                       "VideoRated", "VideoRated", "VideoRated"]
    for seq, etype, payload in rows:
        assert check(etype, json.loads(payload), key=u) == [], (seq, payload)
    assert json.loads(rows[5][2])["watchedAt"] == "1999-12-31T18:29:59.999Z"
    assert json.loads(rows[7][2])["review"] == review
    assert rows[8][2] == rows[7][2]
