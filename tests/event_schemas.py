"""The event contract as the test suites check it (docs/events.md): each Kafka record's headers
must match the headers schema of its message in docs/asyncapi.yaml, its `ce_dataschema` header
must name a JSON Schema (draft 2020-12) of schemas/events/, and its value must validate against
that schema. Shared by tests/integration and tests/faults (run with /usr/bin/python3;
python3-jsonschema, python3-yaml).

    problems = event_schemas.check(headers, key, value)   # [] when the record keeps the contract
"""
import json
import re
from pathlib import Path

import jsonschema
import yaml

REPO = Path(__file__).resolve().parents[1]
SCHEMA_DIR = REPO / "schemas" / "events"
ASYNCAPI = REPO / "docs" / "asyncapi.yaml"
URN_RE = re.compile(r"^urn:profile-service:schema:([A-Za-z]+):([1-9][0-9]*)$")
FILE_RE = re.compile(r"^([A-Za-z]+)\.v([1-9][0-9]*)\.json$")

_validators = None
# Problems of records the integration suites consumed (test_relay_e2e.record_schema_problems);
# conftest.py fails the test during which one was added.
problems_seen = []


def load(schema_dir=SCHEMA_DIR):
    """{uri: Draft202012Validator} of every schema file. Raises ValueError when a file's `$id` is
    not urn:profile-service:schema:<Type>:<version> matching its name <Type>.v<version>.json,
    or when a schema is not a valid draft 2020-12 schema."""
    out = {}
    for path in sorted(Path(schema_dir).glob("*.json")):
        m = FILE_RE.match(path.name)
        if not m:
            raise ValueError(f"{path.name}: schema files are named <Type>.v<version>.json")
        with open(path, encoding="utf-8") as f:
            schema = json.load(f)
        want = f"urn:profile-service:schema:{m.group(1)}:{m.group(2)}"
        if schema.get("$id") != want:
            raise ValueError(f"{path.name}: $id {schema.get('$id')!r}, want {want!r}")
        if schema.get("$schema") != "https://json-schema.org/draft/2020-12/schema":
            raise ValueError(f"{path.name}: $schema is not draft 2020-12")
        jsonschema.Draft202012Validator.check_schema(schema)
        out[want] = jsonschema.Draft202012Validator(
            schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
    if not out:
        raise ValueError(f"no schema files in {schema_dir}")
    return out


def validators():
    global _validators
    if _validators is None:
        _validators = load()
    return _validators


_asyncapi = None


def header_validator(etype, asyncapi_path=ASYNCAPI):
    """A validator of the headers of message `etype` as docs/asyncapi.yaml describes them (its
    schemas are JSON Schema draft-07 with AsyncAPI's extensions); None when there is no such
    message."""
    global _asyncapi
    if _asyncapi is None or asyncapi_path != ASYNCAPI:
        with open(asyncapi_path, encoding="utf-8") as f:
            doc = yaml.safe_load(f)
        if asyncapi_path != ASYNCAPI:
            return _header_validator(doc, etype)
        _asyncapi = doc
    return _header_validator(_asyncapi, etype)


def _header_validator(doc, etype):
    msg = doc["components"]["messages"].get(etype) if isinstance(etype, str) else None
    if msg is None:
        return None
    resolver = jsonschema.RefResolver.from_schema(doc)
    return jsonschema.Draft7Validator(msg["headers"], resolver=resolver,
                                      format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


def check_headers(headers):
    """Problems of a record's headers (dict str -> str) against docs/asyncapi.yaml."""
    v = header_validator(headers.get("ce_type"))
    if v is None:
        return [f"ce_type {headers.get('ce_type')!r} is no message of docs/asyncapi.yaml"]
    return [f"headers: {'/'.join(map(str, e.path)) or '(all)'}: {e.message}"
            for e in sorted(v.iter_errors(headers), key=lambda e: list(e.path))]


def _text(v):
    if isinstance(v, (bytes, bytearray)):
        return v.decode("utf-8")
    return v


def check(headers, key, value, schemas=None):
    """Problems of one record against the contract: `headers` a dict (str -> str), `key` the
    Kafka key, `value` the record's bytes or text. The headers must match docs/asyncapi.yaml;
    the data must validate against the schema ce_dataschema names, which must exist and be of
    the record's ce_type; the data's userId must equal the key. [] when fine."""
    schemas = schemas if schemas is not None else validators()
    uri = headers.get("ce_dataschema")
    if not uri:
        return ["no ce_dataschema header"]
    m = URN_RE.match(uri)
    if m is None or uri not in schemas:
        return [f"ce_dataschema {uri!r} names no schema of schemas/events"]
    problems = check_headers(headers)
    if m.group(1) != headers.get("ce_type"):
        problems.append(f"ce_dataschema {uri!r} is not a schema of ce_type "
                        f"{headers.get('ce_type')!r}")
    try:
        data = json.loads(_text(value))
    except (TypeError, ValueError, UnicodeDecodeError):
        return problems + ["value is not JSON"]
    for err in sorted(schemas[uri].iter_errors(data), key=lambda e: list(e.path)):
        where = "/".join(str(p) for p in err.path) or "(root)"
        problems.append(f"{uri}: {where}: {err.message}")
    key = _text(key)
    if isinstance(data, dict) and data.get("userId") != key:
        problems.append(f"data.userId {data.get('userId')!r} differs from the key {key!r}")
    return problems
