"""The API's description (issue 15, point 3): ``GET /data/openapi.json``.

The document is valid OpenAPI 3.1 (openapi-spec-validator), and the real
server, run by the tests on 127.0.0.1, answers as it says: Schemathesis
generates requests from it (bounded in examples) and checks that no answer is
a 5xx and that every status, header, media type and body conforms.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from tests.conftest import skip_or_fail
from tests.live_server import LiveServer, demo_copy
from wsgi_app.openapi import document

CHECKS = ",".join(["not_a_server_error", "status_code_conformance", "content_type_conformance",
                   "response_headers_conformance", "response_schema_conformance",
                   "unsupported_method"])


def test_document_is_served_without_auth_and_is_valid(tmp_path):
    try:
        from openapi_spec_validator import validate
    except ImportError:
        skip_or_fail("openapi-spec-validator is not installed (pip install -e '.[test]')")
    validate(document())
    with LiveServer(demo_copy(tmp_path)) as server:
        status, headers, body = server.request("GET", "/data/openapi.json")
        assert status == 200 and headers["content-type"].startswith("application/json")
        assert json.loads(body) == json.loads(json.dumps(document()))
        assert server.request("HEAD", "/data/openapi.json")[0] == 200
        # Only reading it needs no credentials; anything else is an ordinary request.
        assert server.request("PUT", "/data/openapi.json", "{}")[0] == 401
    paths = document()["paths"]
    for path in ("/data/{store}", "/data/{host}/{user}/{store}"):
        assert {"get", "head", "put", "post", "patch", "delete"} <= set(paths[path])


@pytest.mark.parametrize("who", ["alice@localhost:wonderland", "admin@localhost:demo-admin", None])
def test_the_server_answers_as_the_document_says(tmp_path, who):
    if shutil.which("schemathesis") is None and not _module("schemathesis"):
        skip_or_fail("schemathesis is not installed (pip install -e '.[test]')")
    with LiveServer(demo_copy(tmp_path)) as server:
        url = f"http://127.0.0.1:{server.port}/data/openapi.json"
        command = [sys.executable, "-m", "schemathesis.cli", "run", url, "--checks", CHECKS,
                   "--max-examples", "15", "--workers", "1", "--seed", "20261202",
                   "--request-timeout", "30", "--no-color"]
        if who:
            command += ["--auth", who]
        result = subprocess.run(command, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
        assert " passed" in result.stdout
        assert '" 500 ' not in server.log(), "a 500 reached the log"


def _module(name: str) -> bool:
    try:
        __import__(name)
    except ImportError:
        return False
    return True

