"""docs/openapi.yaml against the server: the route table of api/**/routes.c and the spec name the
same paths and methods; every path and method of the spec is routed by the running binary; and
the response checker that conftest.py applies to every live response (openapi_check.py) rejects
responses and specs that do not match.
"""
import copy
import json
import re

import pytest
import requests

import openapi_check
from api_helpers import new_user, start_api
from support import REPO

SPEC = openapi_check.load_spec()
OPS = ("get", "put", "post", "delete")


def route_table():
    """{(METHOD, template)} from the server's route table (the `{methods, "Allow", "/tmpl"}`
    entries of routes.c, wherever the file lives under api/)."""
    files = sorted(REPO.glob("api/**/routes.c"))
    assert len(files) == 1, f"expected one api/**/routes.c, found {files}"
    text = files[0].read_text(encoding="utf-8")
    entries = re.findall(r'\[ROUTE_[A-Z_]+\]\s*=\s*\{[^{}]*?"([A-Z, ]*)"\s*,\s*"([^"]+)"\s*\}',
                         text)
    routes = set()
    for allow, tmpl in entries:
        if not tmpl.startswith("/"):
            continue  # ROUTE_NONE ("unmatched")
        for m in allow.split(","):
            routes.add((m.strip(), tmpl))
    assert len(routes) >= 10, f"route table not recognised in {files[0]}: {entries}"
    return routes


def spec_operations(spec=SPEC):
    return {(m.upper(), tmpl) for tmpl, item in spec["paths"].items() for m in item
            if m in openapi_check.METHODS}


def test_every_route_is_in_the_spec_and_every_spec_operation_is_routed():
    routes, ops = route_table(), spec_operations()
    assert routes - ops == set(), "routes missing from docs/openapi.yaml"
    assert ops - routes == set(), "operations in docs/openapi.yaml that the server does not route"


def _walk(node, path=""):
    if isinstance(node, dict):
        yield path, node
        for k, v in node.items():
            yield from _walk(v, f"{path}/{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _walk(v, f"{path}/{i}")


def test_spec_is_self_contained_and_every_reference_resolves():
    assert SPEC["openapi"].startswith("3.1.")
    for where, node in _walk(SPEC):
        if "$ref" in node:
            assert node["$ref"].startswith("#/"), f"{where}: external $ref {node['$ref']}"
            openapi_check.resolve(SPEC, node)  # raises KeyError when the target is missing


def test_every_operation_declares_its_statuses_and_schemas():
    for tmpl, item in SPEC["paths"].items():
        for m, op in item.items():
            if m not in OPS:
                continue
            statuses = set(op["responses"])
            where = f"{m.upper()} {tmpl}"
            assert op.get("operationId"), where
            if tmpl.startswith("/profiles/"):
                assert {"400", "401", "403", "429", "500", "503"} <= statuses, where
            if m in ("put", "post"):
                assert {"409", "413", "415", "422"} <= statuses, where
            for code, resp in op["responses"].items():
                resp = openapi_check.resolve(SPEC, resp)
                assert resp.get("description"), f"{where} {code}"
                if code.startswith(("4", "5")) and tmpl != "/health":
                    assert list(resp.get("content", {})) == ["application/problem+json"], \
                        f"{where} {code}: errors are problem+json"
                for media in resp.get("content", {}).values():
                    # every schema converts to a JSON Schema the validator accepts
                    schema = openapi_check.to_json_schema(SPEC, media["schema"])
                    openapi_check.jsonschema.Draft202012Validator.check_schema(schema)


# ---- the checker rejects mismatches (so that passing suites mean something) ----

PROFILE = {"userId": "u1", "displayName": "Ann", "avatarUrl": None, "preferences": {},
           "version": 3, "createdAt": "2026-01-02T03:04:05.678Z",
           "updatedAt": "2026-01-02T03:04:05.678Z"}
JSON = "application/json; charset=utf-8"
PROBLEM = "application/problem+json"


def _check(status, headers, body, method="GET", path="/profiles/u1", spec=SPEC):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return openapi_check.check(spec, method, path, status, headers, raw)


def test_checker_accepts_a_matching_response():
    assert _check(200, {"Content-Type": JSON, "ETag": '"3"'}, PROFILE) == []
    assert _check(404, {"Content-Type": PROBLEM},
                  {"type": "/problems/not-found", "title": "Not Found", "status": 404}) == []


@pytest.mark.parametrize("status,headers,body,needle", [
    (202, {"Content-Type": JSON, "ETag": '"3"'}, PROFILE, "status 202 not declared"),
    (200, {"Content-Type": JSON}, PROFILE, "required header ETag missing"),
    (200, {"Content-Type": JSON, "ETag": "3"}, PROFILE, "header ETag"),
    (200, {"Content-Type": "text/plain", "ETag": '"3"'}, PROFILE, "Content-Type 'text/plain'"),
    (200, {"Content-Type": JSON, "ETag": '"3"'}, {**PROFILE, "extra": 1}, "extra"),
    (200, {"Content-Type": JSON, "ETag": '"3"'}, {**PROFILE, "version": "3"}, "version"),
    (200, {"Content-Type": JSON, "ETag": '"3"'}, {**PROFILE, "createdAt": "2026-01-02"},
     "createdAt"),
    (404, {"Content-Type": PROBLEM}, {"type": "/problems/x", "title": "T", "status": 400},
     "problem status"),
    (404, {"Content-Type": JSON}, {"type": "/problems/x", "title": "T", "status": 404},
     "Content-Type"),
    (429, {"Content-Type": PROBLEM}, {"type": "/problems/x", "title": "T", "status": 429},
     "Retry-After missing"),
    (200, {"Content-Type": JSON, "ETag": '"3"'}, b"{not json", "not JSON"),
])
def test_checker_rejects_a_mismatching_response(status, headers, body, needle):
    errors = _check(status, headers, body)
    assert errors and any(needle in e for e in errors), errors


def test_checker_rules_outside_operations():
    problem = {"type": "/problems/not-found", "title": "Not Found", "status": 404}
    assert _check(404, {"Content-Type": PROBLEM}, problem, path="/nope") == []
    assert _check(200, {"Content-Type": JSON}, {}, path="/nope")  # unknown path must be 404
    m405 = {"type": "/problems/method-not-allowed", "title": "Method Not Allowed", "status": 405}
    ok = {"Content-Type": PROBLEM, "Allow": "GET, PUT, DELETE"}
    assert _check(405, ok, m405, method="PATCH") == []
    assert _check(405, {**ok, "Allow": "GET"}, m405, method="PATCH")  # Allow != spec methods
    assert _check(405, {"Content-Type": PROBLEM}, m405, method="PATCH")  # no Allow
    assert _check(204, {"Allow": "GET, PUT, DELETE"}, b"", method="OPTIONS") == []
    assert _check(204, {"Allow": "GET, PUT, DELETE"}, b"x", method="OPTIONS")  # body on 204


def test_checker_rejects_a_response_after_the_spec_changes():
    """A deliberately wrong spec: the same valid response fails once the schema disagrees."""
    wrong = copy.deepcopy(SPEC)
    wrong["components"]["schemas"]["Profile"]["properties"]["version"] = {"type": "string"}
    headers = {"Content-Type": JSON, "ETag": '"3"'}
    assert _check(200, headers, PROFILE) == []
    assert any("version" in e for e in _check(200, headers, PROFILE, spec=wrong))
    wrong = copy.deepcopy(SPEC)
    del wrong["paths"]["/profiles/{userId}"]["get"]["responses"]["404"]
    problem = {"type": "/problems/not-found", "title": "Not Found", "status": 404}
    assert _check(404, {"Content-Type": PROBLEM}, problem, spec=wrong)


# ---- against the running binary ----

@pytest.fixture(scope="module")
def api(stack):
    a = start_api(stack)
    yield a
    a.stop()


def _concrete(tmpl):
    return tmpl.replace("{userId}", new_user()).replace("{videoId}", "v1")


def test_every_spec_operation_is_routed_by_the_server(api):
    """Without a token each operation of the spec answers with something else than 404/405 (the
    route step); an undeclared method answers 405 with the spec's methods in Allow (checked
    by the live hook, which also validates each of these responses)."""
    for method, tmpl in sorted(spec_operations()):
        r = requests.request(method, api.url(_concrete(tmpl)), timeout=10)
        assert r.status_code not in (404, 405), (method, tmpl, r.status_code, r.text)
        assert r.headers.get("Server", "").startswith("profile-api")
        if tmpl.startswith("/profiles/"):
            assert r.status_code == 401, (method, tmpl, r.status_code)
    for tmpl in SPEC["paths"]:
        r = requests.request("PATCH", api.url(_concrete(tmpl)), timeout=10)
        assert r.status_code == 405, (tmpl, r.status_code)
        declared = {m.upper() for m in SPEC["paths"][tmpl] if m in OPS}
        assert {m.strip() for m in r.headers["Allow"].split(",")} == declared


def test_live_check_catches_a_response_the_spec_does_not_allow(api):
    """The hook's check on a real response: valid against the spec, invalid against a spec that
    lost the status the server answers with."""
    u = new_user()
    r = api.put(f"/profiles/{u}", u, {"displayName": "Ann"})
    assert r.status_code == 201
    args = ("PUT", r.request.path_url, r.status_code, r.headers, r.content)
    assert openapi_check.check(SPEC, *args) == []
    wrong = copy.deepcopy(SPEC)
    wrong["components"]["headers"]["Location"]["schema"]["pattern"] = "^/users/"
    assert any("Location" in e for e in openapi_check.check(wrong, *args))
