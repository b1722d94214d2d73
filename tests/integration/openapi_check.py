"""Checks HTTP responses of profile-api against docs/openapi.yaml.

`check(spec, method, raw_path, status, headers, body)` returns a list of violations (empty when
the response matches the spec):
- a path of the spec and a method it declares: the status must be declared for that operation,
  every header the response declares `required: true` must be present and match its schema,
  the Content-Type must be one the response declares (no body when it declares none), and a
  JSON body must validate against the response's schema (OpenAPI 3.1 schemas are JSON Schema
  2020-12: the `$ref`s are inlined and the result is checked with python3-jsonschema);
- a path of the spec and a method it does not declare: 405 as `MethodNotAllowed` with an
  `Allow` header that lists exactly the methods the spec declares for the path, or, for
  OPTIONS, the CORS preflight answer `Preflight` (same Allow rule);
- a path the spec does not have: 404 as `NoRoute`.
A problem+json body must also carry the response's status in `status`.

conftest.py installs `install(...)` so that every response the integration suites receive from a
profile-api process (`Server: profile-api`) goes through `check`.
"""
import copy
import json
import re
import threading
from pathlib import Path

import jsonschema
import yaml

REPO = Path(__file__).resolve().parents[2]
SPEC_PATH = REPO / "docs" / "openapi.yaml"
METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")

_spec_cache = {}


def load_spec(path=SPEC_PATH):
    """The parsed spec at path (cached per path)."""
    key = str(path)
    if key not in _spec_cache:
        with open(path, encoding="utf-8") as f:
            _spec_cache[key] = yaml.safe_load(f)
    return _spec_cache[key]


def resolve(spec, node):
    """node with a top-level local `$ref` followed (repeatedly)."""
    seen = 0
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"]
        if not ref.startswith("#/"):
            raise ValueError(f"only local $refs are supported: {ref}")
        target = spec
        for part in ref[2:].split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        extra = {k: v for k, v in node.items() if k != "$ref"}
        node = {**target, **extra} if extra else target
        seen += 1
        if seen > 50:
            raise ValueError(f"$ref loop at {ref}")
    return node


def to_json_schema(spec, schema):
    """A standalone JSON Schema (2020-12) for an OpenAPI 3.1 schema: every local $ref inlined."""
    schema = resolve(spec, schema)
    if isinstance(schema, dict):
        return {k: to_json_schema(spec, v) for k, v in schema.items()}
    if isinstance(schema, list):
        return [to_json_schema(spec, v) for v in schema]
    return copy.deepcopy(schema)


def template_regex(template):
    """A regex for a path template: each {param} is one non-empty segment."""
    out = ""
    for part in re.split(r"(\{[^}]+\})", template):
        out += "[^/]+" if part.startswith("{") else re.escape(part)
    return re.compile("^" + out + "$")


def find_path(spec, raw_path):
    """The spec's path template that matches raw_path (query removed), or None."""
    path = raw_path.split("?", 1)[0]
    for template in spec.get("paths", {}):
        if template_regex(template).match(path):
            return template
    return None


def _media_type(content_type):
    return (content_type or "").split(";", 1)[0].strip().lower()


def _header(headers, name):
    for k, v in headers.items():
        if k.lower() == name.lower():
            return v
    return None


def _check_header(spec, name, hdr, value, errors):
    hdr = resolve(spec, hdr)
    schema = to_json_schema(spec, hdr.get("schema", {}))
    instance = value
    if schema.get("type") == "integer":
        if not re.fullmatch(r"-?[0-9]+", value):
            errors.append(f"header {name}: {value!r} is not an integer")
            return
        instance = int(value)
    try:
        jsonschema.validate(instance, schema, cls=jsonschema.Draft202012Validator)
    except jsonschema.ValidationError as e:
        errors.append(f"header {name}: {value!r}: {e.message}")


def check_response(spec, response, status, headers, body, where):
    """Violations of one response against one OpenAPI response object."""
    errors = []
    response = resolve(spec, response)
    for name, hdr in (response.get("headers") or {}).items():
        hdr = resolve(spec, hdr)
        value = _header(headers, name)
        if value is None:
            if hdr.get("required"):
                errors.append(f"{where}: required header {name} missing")
            continue
        _check_header(spec, name, hdr, value, errors)
    content = response.get("content") or {}
    ctype = _media_type(_header(headers, "Content-Type"))
    if not content:
        if body:
            errors.append(f"{where}: the spec declares no body but one came ({len(body)} bytes)")
        return errors
    if ctype not in content:
        errors.append(f"{where}: Content-Type {ctype!r} not among {sorted(content)}")
        return errors
    schema = (content[ctype] or {}).get("schema")
    if schema is None:
        return errors
    if ctype == "application/json" or ctype.endswith("+json"):
        try:
            doc = json.loads(body)
        except ValueError as e:
            errors.append(f"{where}: body is not JSON ({e}): {body[:200]!r}")
            return errors
        validator = jsonschema.Draft202012Validator(to_json_schema(spec, schema))
        for e in sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path)):
            at = "/".join(str(p) for p in e.absolute_path) or "(root)"
            errors.append(f"{where}: body at {at}: {e.message}")
        if ctype == "application/problem+json" and isinstance(doc, dict) \
                and doc.get("status") != status:
            errors.append(f"{where}: problem status {doc.get('status')!r} != HTTP {status}")
    return errors


def _allow_errors(spec, template, headers, where):
    allow = _header(headers, "Allow")
    declared = {m.upper() for m in spec["paths"][template] if m in METHODS}
    if allow is None:
        return [f"{where}: Allow header missing"]
    got = {m.strip() for m in allow.split(",") if m.strip()}
    if got != declared:
        return [f"{where}: Allow {sorted(got)} != methods in the spec {sorted(declared)}"]
    return []


def check(spec, method, raw_path, status, headers, body):
    """Violations of one exchange (method, raw request path, response status, headers, body)."""
    method = method.lower()
    template = find_path(spec, raw_path)
    responses = spec["components"]["responses"]
    if template is None:
        where = f"{method.upper()} {raw_path} (no path of the spec) -> {status}"
        if status != 404:
            return [f"{where}: a path outside the spec must be 404"]
        return check_response(spec, responses["NoRoute"], status, headers, body, where)
    where = f"{method.upper()} {template} -> {status}"
    op = spec["paths"][template].get(method)
    if op is None:
        if method == "options" and status == 204:
            return (check_response(spec, responses["Preflight"], status, headers, body, where)
                    + _allow_errors(spec, template, headers, where))
        if status != 405:
            return [f"{where}: method not in the spec, so the answer must be 405"]
        return (check_response(spec, responses["MethodNotAllowed"], status, headers, body, where)
                + _allow_errors(spec, template, headers, where))
    declared = op.get("responses", {})
    response = declared.get(str(status), declared.get("default"))
    if response is None:
        return [f"{where}: status {status} not declared (declared: {sorted(declared)})"]
    return check_response(spec, response, status, headers, body, where)


class Recorder:
    """Thread-safe list of violations seen since the last take()."""

    def __init__(self):
        self._lock = threading.Lock()
        self._items = []
        self.checked = 0

    def add(self, items):
        with self._lock:
            self.checked += 1
            self._items.extend(items)

    def take(self):
        with self._lock:
            items, self._items = self._items, []
            return items


_unchecked = threading.local()


class unchecked:
    """Context manager: responses received by this thread inside it are not checked. Only for a
    test that forges what the server sends (e.g. a body planted in the cache to prove a hit)."""

    def __enter__(self):
        _unchecked.depth = getattr(_unchecked, "depth", 0) + 1

    def __exit__(self, *exc):
        _unchecked.depth -= 1


def is_profile_api(resp):
    return (resp.headers.get("Server") or "").startswith("profile-api")


def install(recorder, spec_path=SPEC_PATH):
    """Wraps requests.Session.send (used by requests.get/post/... and every Session) so that each
    response from profile-api is checked; violations go to recorder."""
    import requests

    original = requests.Session.send
    if getattr(original, "_openapi_checked", False):
        return

    def send(self, request, **kwargs):
        resp = original(self, request, **kwargs)
        if is_profile_api(resp) and not kwargs.get("stream") \
                and getattr(_unchecked, "depth", 0) == 0:
            try:
                problems = check(load_spec(spec_path), request.method, request.path_url,
                                 resp.status_code, resp.headers, resp.content)
            except Exception as e:  # a broken spec is a violation too, not a crash in a thread
                problems = [f"{request.method} {request.path_url}: checker failed: {e!r}"]
            recorder.add(problems)
        return resp

    send._openapi_checked = True
    requests.Session.send = send
