"""Hostile requests against the HTTP service: never a 5xx, always a one-line reason, and a
request that fails writes nothing.

Requests are built as raw WSGI environs (what a server hands over after reading the wire:
header values and PATH_INFO as latin-1 strings of arbitrary bytes), so that Werkzeug's test
client cannot tidy them up first.
"""
from __future__ import annotations

import base64
import io
import json
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.datastructures import Authorization
from werkzeug.test import EnvironBuilder, run_wsgi_app

from tests.test_http_app import DEMO, snapshot
from wsgi_app import create_app

SETTINGS = settings(max_examples=int(__import__("os").environ.get("HTTP_FUZZ_EXAMPLES", 200)), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

ALICE = "Basic " + base64.b64encode(b"alice@localhost:wonderland").decode()
ADMIN = "Basic " + base64.b64encode(b"admin@localhost:demo-admin").decode()
METHODS = ["GET", "HEAD", "PUT", "POST", "DELETE", "PATCH", "OPTIONS", "TRACE", "FOO", "get"]


class Service:
    """One app over a private copy of the demo data, restored after successful writes."""

    def __init__(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="http-fuzz-"))
        self.data = self.tmp / "data"
        shutil.copytree(DEMO, self.data)
        self.app = create_app(self.data, admins=["admin@localhost"], max_body=64 * 1024)
        self.pristine = snapshot(self.data)

    def reset(self) -> None:
        shutil.rmtree(self.data)
        shutil.copytree(DEMO, self.data)

    def close(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)

    def check(self, method: str, path_info: str, *, authorization: str | None = ALICE,
              content_type: str | None = None, body: bytes | None = None,
              accept: str | None = None, query: str = "") -> int:
        env = EnvironBuilder(method="GET").get_environ()
        env["REQUEST_METHOD"] = method
        env["PATH_INFO"] = path_info
        env["QUERY_STRING"] = query
        for key in ("HTTP_AUTHORIZATION", "CONTENT_TYPE", "CONTENT_LENGTH", "HTTP_ACCEPT"):
            env.pop(key, None)
        if authorization is not None:
            env["HTTP_AUTHORIZATION"] = authorization
        if content_type is not None:
            env["CONTENT_TYPE"] = content_type
        if accept is not None:
            env["HTTP_ACCEPT"] = accept
        body = body or b""
        env["wsgi.input"] = io.BytesIO(body)
        if body:
            env["CONTENT_LENGTH"] = str(len(body))
        before = snapshot(self.data)
        app_iter, status, headers = run_wsgi_app(self.app, env, buffered=True)
        text = b"".join(app_iter)
        code = int(status.split()[0])
        where = f"{method} {path_info!r} auth={authorization!r} type={content_type!r} body={body[:80]!r}"
        assert code < 500, f"{status} for {where}: {text[:200]!r}"
        assert 200 <= code < 300 or 400 <= code < 500, f"{status} for {where}"
        if code >= 400:
            assert headers["Content-Type"] == "text/plain; charset=utf-8", where
            if method != "HEAD":
                reason = text.decode("utf-8")
                assert reason.endswith("\n") and reason.count("\n") == 1, (where, reason)
                assert reason.strip(), where
            after = snapshot(self.data)
            assert after == before, f"failed request wrote: {where}"
        if code == 401:
            assert headers["WWW-Authenticate"].startswith('Basic realm="'), where
        if code == 405:
            assert headers["Allow"], where
        if snapshot(self.data) != self.pristine:
            self.reset()
        return code


@pytest.fixture(scope="module")
def service():
    s = Service()
    yield s
    s.close()


# ---------------------------------------------------------------------------
# Strategies

latin1 = st.binary(max_size=80).map(lambda b: b.decode("latin-1"))
jids = st.one_of(
    st.sampled_from(["alice@localhost", "admin@localhost", "alice", "@localhost", "alice@",
                     "alice@localhost/r", "ALICE@LOCALHOST.", "zed@localhost", "alice@example.com",
                     "a@b@c", "", "@", "/", "alice@local\x00host", "\u00e9@localhost"]),
    st.text(max_size=30))
passwords = st.one_of(st.sampled_from(["wonderland", "demo-admin", "", "x"]), st.text(max_size=30))
credentials = st.one_of(
    st.builds(lambda j, p: (j + ":" + p).encode("utf-8", "surrogatepass"), jids, passwords),
    st.binary(max_size=60))
schemes = st.sampled_from(["Basic", "basic", "BASIC", "Bearer", "Digest", "Negotiate", "", "Basic\t"])
authorizations = st.one_of(
    st.none(),
    st.just(ALICE),
    latin1,
    st.builds(lambda s, c: f"{s} {base64.b64encode(c).decode()}", schemes, credentials),
    st.builds(lambda s, t: f"{s} {t}", schemes, latin1),
    st.builds(lambda c, cut: "Basic " + base64.b64encode(c).decode()[:cut], credentials,
              st.integers(0, 40)),
)

segment = st.one_of(
    st.sampled_from(["localhost", "alice", "bob", "admin", "roster", "archive", "vcard", "accounts",
                     "private", "settings", "json", "lua", "xml", "", ".", "..", "%2e%2e",
                     "a-b", "A_b", "_", "LOCALHOST", "example.com", "\u00e9", "\x00", "~"]),
    st.text(max_size=12).map(lambda t: t.encode("utf-8", "surrogatepass").decode("latin-1")),
    latin1,
)
paths = st.one_of(
    st.lists(segment, max_size=6).map(lambda s: "/data/" + "/".join(s)),
    st.lists(segment, max_size=6).map(lambda s: "/data" + "".join("/" + x for x in s) + "/"),
    latin1.map(lambda p: "/" + p),
    st.sampled_from(["", "/", "/data", "/data/", "//data/roster", "/data//", "/datax"]),
)
content_types = st.one_of(
    st.none(),
    st.sampled_from(["application/json", "text/x-lua", "Application/JSON; charset=utf-8",
                     "TEXT/X-LUA;charset=latin-1", "application/json; charset=\"x\"", "text/plain",
                     "multipart/form-data; boundary=--x", "application/x-www-form-urlencoded",
                     "application/json;;;", "application/json; q", ";", ""]),
    latin1,
)

json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False),
              st.text(max_size=10)),
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.sampled_from(["a", "b", "__array", "__hash", "", "1"])
                                            | st.text(max_size=5), inner, max_size=4)),
    max_leaves=20,
)
lua_snippets = st.sampled_from([
    '{a=1}', '{1,2,nil,4}', 'os.execute("id")', '{f=function() end}', '{[{}]=1}', '{a=b}',
    '{"x"}', '"x"', '42', 'nil', 'false', '{a=(0/0), b=(1/0)}', '{[[long]], --[[c]] 2}', "{'\\xff'}",
    '{a="\\u{7FFFFFFF}"}', '{', '}', '{a=1;;}', '{a=1 b=2}', 'return {a=1}', '{[1.5]=true,[true]=1}'])


def _deep(n: int, kind: str) -> bytes:
    return {"[": b"[" * n + b"]" * n, "{": b"{" * n + b"}" * n,
            "o": b'{"a":' * n + b"1" + b"}" * n, "L": b"{a=" * n + b"1" + b"}" * n}[kind]


bodies = st.one_of(
    st.none(),
    st.binary(max_size=200),
    json_values.map(lambda v: json.dumps(v).encode()),
    json_values.map(lambda v: json.dumps(v, ensure_ascii=False).encode("utf-8", "surrogatepass")),
    st.builds(_deep, st.integers(1, 3000), st.sampled_from("[{oL")),
    st.builds(lambda v, junk: json.dumps(v).encode()[:-1] + junk, json_values, st.binary(max_size=4)),
    st.builds(lambda s: b'{"a":"' + s + b'"}', st.binary(max_size=20)),  # invalid UTF-8 inside strings
    lua_snippets.map(str.encode),
    st.just(b"x" * (64 * 1024 + 1)),
)


# ---------------------------------------------------------------------------
# Properties


@SETTINGS
@given(authorization=authorizations, method=st.sampled_from(["GET", "PUT", "POST", "DELETE", "HEAD"]))
def test_fuzz_authorization(service, authorization, method):
    code = service.check(method, "/data/settings", authorization=authorization,
                         content_type="application/json", body=b'{"a":1}')
    if code != 401:
        # Only a real password opens anything here (the JID spelled any way).
        credentials = Authorization.from_header(authorization)
        assert credentials is not None
        assert credentials.password.replace("\u00ad", "") in ("wonderland", "demo-admin")


@SETTINGS
@given(path=paths, method=st.sampled_from(METHODS), admin=st.booleans(),
       query=st.sampled_from(["", "x=1", "format=lua", "%ff"]))
def test_fuzz_paths(service, path, method, admin, query):
    service.check(method, path, authorization=ADMIN if admin else ALICE, query=query,
                  content_type="application/json", body=b'{"a":1}')


@SETTINGS
@given(method=st.sampled_from(["PUT", "POST"]), content_type=content_types, body=bodies,
       store=st.sampled_from(["/data/settings", "/data/roster", "/data/archive",
                              "/data/localhost/bob/roster"]))
def test_fuzz_bodies(service, method, content_type, body, store):
    code = service.check(method, store, content_type=content_type, body=body)
    if body and len(body) > 64 * 1024:
        assert code in (400, 403, 413)


@SETTINGS
@given(method=st.sampled_from(METHODS), path=paths, authorization=authorizations,
       content_type=content_types, body=bodies, accept=st.one_of(st.none(), latin1, st.sampled_from(
           ["text/x-lua", "application/json;q=0", "*/*;q=0.5, text/html", "text/*"])))
def test_fuzz_everything(service, method, path, authorization, content_type, body, accept):
    service.check(method, path, authorization=authorization, content_type=content_type,
                  body=body, accept=accept)
