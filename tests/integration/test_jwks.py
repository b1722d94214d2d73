"""JWT_JWKS_FILE: key rotation without 401s (docs/security.md "Rotating signing keys").

The real profile-api runs with a JWKS file; the tests replace the file as an operator (or a
Kubernetes volume) does, by renaming a new file over it, and check what the API accepts while
requests keep flowing: old and new keys both valid during the overlap, the old key refused once
it is removed, a bad file ignored (old keys kept, one error logged), SIGHUP forcing a re-read,
and the token matrix still refused with a key set.
"""
import base64
import hashlib
import hmac
import json
import os
import random
import signal
import subprocess
import threading
import time
import uuid

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

import support

ISS, AUD = "https://issuer.jwks.test", "profile-api"
HS_SECRET = "jwks-integration-hs256-secret-0123456789abcdef"
CHECK_S = 1.0  # AUTH_JWKS_CHECK_MS: how often the API compares the file's identity


def b64(raw):
    if not isinstance(raw, bytes):
        raw = json.dumps(raw).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def int_b64(n):
    return b64(n.to_bytes((n.bit_length() + 7) // 8, "big"))


def rsa_jwk(key, kid, **extra):
    nums = key.public_key().public_numbers()
    jwk = {"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256", "n": int_b64(nums.n),
           "e": int_b64(nums.e)}
    jwk.update(extra)
    return jwk


def oct_jwk(secret, kid):
    return {"kty": "oct", "kid": kid, "alg": "HS256", "k": b64(secret.encode())}


def write_jwks(path, keys):
    """Replaces path atomically (a new file renamed over it), as a rotation should."""
    tmp = f"{path}.{uuid.uuid4().hex}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(keys if isinstance(keys, str) else json.dumps({"keys": keys}))
    os.rename(tmp, path)


def mint(key, kid, sub, alg="RS256", **claims):
    now = int(time.time())
    payload = {"sub": sub, "roles": ["user"], "iss": ISS, "aud": AUD, "iat": now,
               "exp": now + 600}
    payload.update(claims)
    headers = {"kid": kid} if kid is not None else None
    return jwt.encode(payload, key, algorithm=alg, headers=headers)


def auth(tok):
    return {"Authorization": f"Bearer {tok}"}


def uid():
    return "j" + uuid.uuid4().hex[:16]


def start_api(stack, jwks_path, **extra):
    port = support.free_port()
    env = {
        "DATABASE_URL": stack["DATABASE_URL"], "REDIS_URL": stack["REDIS_URL"],
        "HTTP_PORT": port, "HTTP_THREADS": 2, "PG_POOL_MAX": 4,
        "JWT_HS256_SECRET": None, "JWT_PUBLIC_KEY_FILE": None, "JWT_JWKS_FILE": jwks_path,
        "JWT_ISSUER": ISS, "JWT_AUDIENCE": AUD, "RATE_LIMIT_PER_MINUTE": 0,
        "AUTH_FAILURE_LIMIT_PER_MINUTE": 0, "SHUTDOWN_DRAIN_SECONDS": 0, "LOG_LEVEL": "info",
        "ACCESS_LOG_SAMPLE": 0,
    }
    env.update(extra)
    p = support.spawn([support.bin_path("profile-api")], env,
                      ready_url=f"http://127.0.0.1:{port}/health/ready", ready_timeout=30)
    return p, f"http://127.0.0.1:{port}"


def wait_for(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def log_lines(p, needle):
    return [ln for ln in p.output().splitlines() if needle in ln]


@pytest.fixture(scope="module")
def keys():
    return (rsa.generate_private_key(public_exponent=65537, key_size=2048),
            rsa.generate_private_key(public_exponent=65537, key_size=2048))


class Load:
    """Threads sending GET /profiles/{sub}/watchlist with the tokens `tokens()` returns now;
    every answer other than 200 is recorded with the token's name."""

    def __init__(self, base, tokens, threads=3):
        self.base = base
        self.tokens = dict(tokens)
        self.lock = threading.Lock()
        self.stop_flag = threading.Event()
        self.sent = 0
        self.failures = []
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(threads)]

    def use(self, tokens):
        """tokens: {name: (sub, token)}; every one must be accepted from now on."""
        with self.lock:
            self.tokens = dict(tokens)

    def run(self):
        s = requests.Session()
        while not self.stop_flag.is_set():
            with self.lock:
                name, (sub, tok) = random.choice(list(self.tokens.items()))
            try:
                r = s.get(f"{self.base}/profiles/{sub}/watchlist", headers=auth(tok), timeout=10)
                code = r.status_code
            except requests.RequestException as e:
                code = repr(e)
            with self.lock:
                self.sent += 1
                if code != 200:
                    self.failures.append((name, code))

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop_flag.set()
        for t in self.threads:
            t.join(15)

    def settle(self, seconds):
        """Lets the load run for `seconds` and returns how many requests went out meanwhile."""
        with self.lock:
            before = self.sent
        time.sleep(seconds)
        with self.lock:
            return self.sent - before


def test_jwks_rotation_under_load_has_no_401s(stack, keys, tmp_path):
    old_key, new_key = keys
    path = str(tmp_path / "jwks.json")
    write_jwks(path, [rsa_jwk(old_key, "old")])
    p, base = start_api(stack, path)
    u1, u2 = uid(), uid()
    old_tok, new_tok = mint(old_key, "old", u1), mint(new_key, "new", u2)
    old_nokid = mint(old_key, None, u1)  # an issuer that sends no kid
    try:
        # before the new key is published, its tokens are refused
        assert requests.get(f"{base}/profiles/{u2}/watchlist", headers=auth(new_tok)).status_code == 401
        with Load(base, {"old": (u1, old_tok), "old-nokid": (u1, old_nokid)}) as load:
            assert load.settle(1.0) > 0
            # 1. publish the new key next to the old one; the API notices the change itself
            write_jwks(path, [rsa_jwk(old_key, "old"), rsa_jwk(new_key, "new")])
            wait_for(lambda: log_lines(p, "2 key(s) in use (file changed)"), 5 * CHECK_S,
                     "the changed JWKS file was not picked up")
            # 2. overlap: the issuer signs with the new key, old tokens are still out there
            load.use({"old": (u1, old_tok), "old-nokid": (u1, old_nokid),
                      "new": (u2, new_tok)})
            assert load.settle(2.0) > 0
            # 3. the old tokens have expired: only new ones are sent, then the old key goes
            load.use({"new": (u2, new_tok)})
            time.sleep(0.3)
            write_jwks(path, [rsa_jwk(new_key, "new")])
            wait_for(lambda: log_lines(p, "1 key(s) in use (file changed)"), 5 * CHECK_S,
                     "the shrunk JWKS file was not picked up")
            assert load.settle(1.0) > 0
            total = load.sent
        assert load.failures == [], (f"{len(load.failures)} of {total} valid requests failed",
                                     load.failures[:10])
        assert total >= 20, total
        # the old key's tokens (verified and cached in every loop thread before) are refused
        for _ in range(6):
            for tok in (old_tok, old_nokid):
                r = requests.get(f"{base}/profiles/{u1}/watchlist", headers=auth(tok))
                assert r.status_code == 401, r.text
                assert r.headers.get("WWW-Authenticate", "").startswith("Bearer")
        assert requests.get(f"{base}/profiles/{u2}/watchlist", headers=auth(new_tok)).status_code == 200
    finally:
        assert p.stop() == 0, p.output()[-3000:]


def test_jwks_bad_file_keeps_keys_and_sighup_rereads(stack, keys, tmp_path):
    old_key, new_key = keys
    path = str(tmp_path / "jwks.json")
    write_jwks(path, [rsa_jwk(old_key, "old")])
    p, base = start_api(stack, path)
    u = uid()
    old_tok, new_tok = mint(old_key, "old", u), mint(new_key, "new", u)
    url = f"{base}/profiles/{u}/watchlist"
    try:
        assert requests.get(url, headers=auth(old_tok)).status_code == 200
        # a truncated file: refused, the old key stays, and it is reported once, not every check
        write_jwks(path, '{"keys":[{"kty":"RSA","kid":"new","n":"')
        wait_for(lambda: log_lines(p, "keeping the 1 key(s) in use"), 5 * CHECK_S,
                 "the bad file was not reported")
        time.sleep(3 * CHECK_S)
        errors = log_lines(p, "keeping the 1 key(s) in use")
        assert len(errors) == 1, errors
        assert json.loads(errors[0])["level"] == "error"
        for _ in range(5):
            assert requests.get(url, headers=auth(old_tok)).status_code == 200
        assert requests.get(url, headers=auth(new_tok)).status_code == 401
        # a file that is gone is no different
        os.unlink(path)
        wait_for(lambda: len(log_lines(p, "keeping the 1 key(s) in use")) == 2, 5 * CHECK_S,
                 "the missing file was not reported")
        assert requests.get(url, headers=auth(old_tok)).status_code == 200
        # SIGHUP reads the file even when its identity did not change: here still missing
        p.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: len(log_lines(p, "keeping the 1 key(s) in use")) == 3, 5,
                 "SIGHUP did not re-read the file")
        # a good file again: the new key is installed, the old one is gone
        write_jwks(path, [rsa_jwk(new_key, "new")])
        p.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: requests.get(url, headers=auth(new_tok)).status_code == 200, 5,
                 "the new key was not installed")
        assert requests.get(url, headers=auth(old_tok)).status_code == 401
        forced = len(log_lines(p, "1 key(s) in use (forced re-read)"))
        p.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: len(log_lines(p, "1 key(s) in use (forced re-read)")) == forced + 1, 5,
                 "SIGHUP did not re-read the unchanged file")
        assert requests.get(url, headers=auth(new_tok)).status_code == 200
        assert p.proc.poll() is None  # SIGHUP does not stop the API
    finally:
        assert p.stop() == 0, p.output()[-3000:]


def test_jwks_token_matrix_still_refused(stack, keys, tmp_path):
    key, other = keys
    path = str(tmp_path / "jwks.json")
    write_jwks(path, [rsa_jwk(key, "r1"), oct_jwk(HS_SECRET, "h1")])
    p, base = start_api(stack, path)
    u = uid()
    now = int(time.time())
    pub_pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
    claims = {"sub": u, "roles": ["user"], "iss": ISS, "aud": AUD, "exp": now + 600}
    good = mint(key, "r1", u)
    head, payload, sig = good.split(".")
    confused_input = b64({"alg": "HS256", "kid": "r1"}) + "." + b64(claims)
    confused = confused_input + "." + b64(hmac.new(pub_pem, confused_input.encode(),
                                                   hashlib.sha256).digest())
    bad = {
        "invalid signature": head + "." + payload + "." + sig[:-2] + ("AA" if sig[-2:] != "AA" else "BB"),
        "signed by a key not in the set": mint(other, "r1", u),
        "alg none": b64({"alg": "none", "kid": "r1"}) + "." + b64(claims) + ".",
        "HS256 against the RSA key (public PEM as secret)": confused,
        "HS256 naming the RSA key": mint(HS_SECRET, "r1", u, alg="HS256"),
        "RS256 naming the HS256 key": mint(key, "h1", u),
        "unknown kid": mint(key, "r9", u),
        "RS384": mint(key, "r1", u, alg="RS384"),
        "expired": mint(key, "r1", u, exp=now - 120),
        "wrong iss": mint(key, "r1", u, iss="someone-else"),
        "wrong aud": mint(key, "r1", u, aud="other-api"),
        "no kid, unknown key": mint(other, None, u),
    }
    ok = {
        "RS256 with kid": good,
        "RS256 without kid": mint(key, None, u),
        "HS256 with kid": mint(HS_SECRET, "h1", u, alg="HS256"),
        "HS256 without kid": mint(HS_SECRET, None, u, alg="HS256"),
    }
    try:
        for name, tok in bad.items():
            r = requests.get(f"{base}/profiles/{u}/watchlist", headers=auth(tok))
            assert r.status_code == 401, (name, r.status_code, r.text)
        for name, tok in ok.items():
            r = requests.get(f"{base}/profiles/{u}/watchlist", headers=auth(tok))
            assert r.status_code == 200, (name, r.status_code, r.text)
    finally:
        assert p.stop() == 0, p.output()[-3000:]


@pytest.mark.parametrize("extra,content", [
    ({"JWT_HS256_SECRET": HS_SECRET}, None),                    # two settings at once
    ({}, '{"keys":[]}'),                                         # no usable key
    ({}, '{"keys":[{"kty":"RSA","kid":"x","n":"AQAB","e":"AQAB"}]}'),  # a 17-bit "RSA key"
    ({"JWT_JWKS_FILE": "/nonexistent/jwks.json"}, None),
])
def test_jwks_bad_configuration_exits_2(stack, keys, tmp_path, extra, content):
    path = str(tmp_path / "jwks.json")
    write_jwks(path, content if content is not None else [rsa_jwk(keys[0], "r1")])
    env = dict(os.environ, DATABASE_URL=stack["DATABASE_URL"], REDIS_URL=stack["REDIS_URL"],
               HTTP_PORT=str(support.free_port()), JWT_JWKS_FILE=path, JWT_ISSUER=ISS,
               JWT_AUDIENCE=AUD)
    env.pop("JWT_HS256_SECRET", None)
    env.pop("JWT_PUBLIC_KEY_FILE", None)
    env.update(extra)
    r = subprocess.run([support.bin_path("profile-api")], env=env, capture_output=True, text=True,
                       timeout=20)
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    lines = [ln for ln in r.stderr.splitlines() if "JWT_JWKS_FILE" in ln]
    assert lines, r.stderr
    assert HS_SECRET not in r.stderr + r.stdout
