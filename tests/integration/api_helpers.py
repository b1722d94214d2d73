"""Shared helpers for the profile-api integration tests (tests/integration/test_api_*.py).

`start_api(stack, **env)` spawns the real build/bin/profile-api on a free port against the
stack's database and returns an Api object; tokens are minted with PyJWT (HS256).

With PROFILE_TEST_VIA_PGBOUNCER=1 in the environment every API started here connects through
the stack's PgBouncer in transaction mode (stack.env PGBOUNCER_URL, `tools/stack.sh start DIR
--pgbouncer`) with PG_PREPARED_STATEMENTS=off; the tests' own SQL still goes direct.
"""
import os
import time
import uuid

import jwt
import requests

import support
from support import bin_path, free_port, spawn

SECRET = "integration-test-secret-0123456789abcdef"
ISSUER = "https://issuer.test"
AUDIENCE = "profile-api"
ORIGIN = "https://app.example.com"


def metrics(api):
    """Counters and gauges of the API's /metrics without labels, as {name: float}."""
    out = {}
    for line in requests.get(api.url("/metrics"), timeout=5).text.splitlines():
        if line.startswith("#") or "{" in line or not line.strip():
            continue
        name, value = line.split()
        out[name] = float(value)
    return out


def new_user(prefix="u"):
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


def token(sub, roles=("user",), **claims):
    now = int(time.time())
    payload = {"sub": sub, "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 600}
    if roles is not None:
        payload["roles"] = list(roles)
    payload.update(claims)
    payload = {k: v for k, v in payload.items() if v is not None}
    return jwt.encode(payload, SECRET, algorithm="HS256")


class Api:
    def __init__(self, proc, port):
        self.proc = proc
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self.session = requests.Session()

    def url(self, path):
        return self.base + path

    def request(self, method, path, sub=None, roles=("user",), body=None, raw=None,
                headers=None, auth=True, timeout=10, session=None):
        h = {}
        if auth and sub is not None:
            h["Authorization"] = "Bearer " + token(sub, roles)
        data = raw
        if body is not None:
            import json
            data = json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        if headers:
            h.update(headers)
        s = session or self.session
        return s.request(method, self.url(path), data=data, headers=h, timeout=timeout)

    def get(self, path, sub, roles=("user",), **kw):
        return self.request("GET", path, sub, roles, **kw)

    def put(self, path, sub, body, roles=("user",), **kw):
        return self.request("PUT", path, sub, roles, body=body, **kw)

    def post(self, path, sub, body, roles=("user",), **kw):
        return self.request("POST", path, sub, roles, body=body, **kw)

    def delete(self, path, sub, roles=("user",), **kw):
        return self.request("DELETE", path, sub, roles, **kw)

    def stop(self, timeout=20):
        return self.proc.stop(timeout=timeout)


VIA_PGBOUNCER = os.environ.get("PROFILE_TEST_VIA_PGBOUNCER") == "1"


def api_database_env(stack):
    """DATABASE_URL (and PG_PREPARED_STATEMENTS) for an API: direct, or through PgBouncer."""
    if not VIA_PGBOUNCER:
        return {"DATABASE_URL": stack["API_DATABASE_URL"]}
    if "PGBOUNCER_URL" not in stack:
        raise RuntimeError("PROFILE_TEST_VIA_PGBOUNCER=1 but the stack has no PgBouncer "
                           "(tools/stack.sh start DIR --pgbouncer)")
    return {"DATABASE_URL": support.role_url(stack["PGBOUNCER_URL"], "api"),
            "PG_PREPARED_STATEMENTS": "off"}


def api_env(stack, port, **extra):
    env = {
        **api_database_env(stack),
        "REDIS_URL": stack.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
        "REDIS_MODE": stack.get("REDIS_MODE", "standalone"),
        "HTTP_PORT": port,
        "HTTP_THREADS": 2,
        "PG_POOL_MAX": 8,
        "JWT_HS256_SECRET": SECRET,
        "JWT_PUBLIC_KEY_FILE": None,
        "JWT_ISSUER": ISSUER,
        "JWT_AUDIENCE": AUDIENCE,
        "CORS_ALLOWED_ORIGINS": ORIGIN,
        "RATE_LIMIT_PER_MINUTE": 1000000,
        "AUTH_FAILURE_LIMIT_PER_MINUTE": 0,
        "SHUTDOWN_DRAIN_SECONDS": 1,
        "LOG_LEVEL": "info",
    }
    for k, v in extra.items():
        env[k] = v
    return env


def start_api(stack, **extra):
    port = free_port()
    proc = spawn([bin_path("profile-api")], api_env(stack, port, **extra),
                 ready_url=f"http://127.0.0.1:{port}/health/ready", ready_timeout=20)
    return Api(proc, port)


def assert_problem(resp, status):
    assert resp.status_code == status, (resp.status_code, resp.text)
    assert resp.headers["Content-Type"].startswith("application/problem+json"), resp.headers
    doc = resp.json()
    assert doc["status"] == status
    assert doc["type"].startswith("/problems/") and doc["title"]
    return doc
