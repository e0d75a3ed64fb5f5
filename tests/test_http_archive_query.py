"""Archive queries over HTTP (issue 15, point 1): a GET of a list store with
start/end/with/after/before/max gives one page, paged with Link headers."""
from __future__ import annotations

import json
import re
from urllib.parse import urlsplit

from prosody_store.datamanager import DataManager
from tests.live_server import LiveServer, demo_auth, demo_copy

ALICE = demo_auth("alice")


def build(data, n: int = 250) -> list[dict]:
    dm = DataManager(data, durable=False)
    items = []
    for i in range(n):
        item = {"name": "message", "attr": {"type": "chat"}, "key": f"k{i:04d}",
                "when": 1_700_000_000 + 10 * i, "with": "bob@localhost" if i % 3 else
                "carol@localhost", "body": f"m{i}"}
        dm.list_append("alice", "localhost", "mam", item)
        items.append(item)
    return items


def links(headers: dict[str, str]) -> dict[str, str]:
    out = {}
    for url, rel in re.findall(r'<([^>]*)>; rel="(\w+)"', headers.get("link", "")):
        parts = urlsplit(url)
        out[rel] = parts.path + "?" + parts.query
    return out


def test_pages_walk_the_whole_archive_both_ways(tmp_path):
    data = demo_copy(tmp_path)
    items = build(data)
    with LiveServer(data) as server:
        status, headers, body = server.request("GET", "/data/mam", headers=ALICE)
        assert status == 200 and json.loads(body) == items  # no parameters: a plain GET
        assert "link" not in headers
        seen, path = [], "/data/mam?max=40"
        for _ in range(20):  # bounded
            status, headers, body = server.request("GET", path, headers=ALICE)
            assert status == 200, body
            page = json.loads(body)
            assert len(page) <= 40
            seen += page
            path = links(headers).get("next")
            if path is None:
                break
        assert seen == items
        # The last page, then backwards with rel=prev.
        seen, path = [], "/data/mam?before=&max=40"
        for _ in range(20):
            status, headers, body = server.request("GET", path, headers=ALICE)
            assert status == 200, body
            seen = json.loads(body) + seen
            path = links(headers).get("prev")
            if path is None:
                break
        assert seen == items
        status, headers, body = server.request("GET", "/data/mam?before=&max=5", headers=ALICE)
        assert json.loads(body) == items[-5:]
        assert headers["archive-first-key"] == "k0245" and headers["archive-last-key"] == "k0249"


def test_filters_and_errors(tmp_path):
    data = demo_copy(tmp_path)
    items = build(data)
    with LiveServer(data) as server:
        start, end = items[100]["when"], items[109]["when"]
        status, headers, body = server.request(
            "GET", f"/data/mam?start={start}&end={end}", headers=ALICE)
        assert json.loads(body) == items[100:110]
        status, _, body = server.request(
            "GET", "/data/mam?start=2023-11-14T22:13:20Z&end=2023-11-14T22:14:50Z",
            headers=ALICE)
        assert status == 200 and json.loads(body) == items[:10]
        status, _, body = server.request("GET", "/data/mam?with=carol@localhost/phone&max=1000",
                                         headers=ALICE)
        assert json.loads(body) == [i for i in items if i["with"] == "carol@localhost"]
        status, _, body = server.request("GET", "/data/mam?after=k0010&max=3", headers=ALICE)
        assert json.loads(body) == items[11:14]
        for query, code in (("after=nope", 404), ("max=-1", 400), ("max=%D9%A1", 400),
                            ("start=yesterday", 400), ("start=1e999", 400)):
            status, _, body = server.request("GET", f"/data/mam?{query}", headers=ALICE)
            assert status == code, (query, status, body)
            assert body.count(b"\n") == 1
        # Rights first: bob may not query alice's archive; no credentials, 401.
        assert server.request("GET", "/data/localhost/alice/mam?max=1",
                              headers=demo_auth("bob"))[0] == 403
        assert server.request("GET", "/data/mam?max=1")[0] == 401
        status, _, body = server.request("GET", "/data/mam?max=5000", headers=ALICE)
        assert len(json.loads(body)) == 250  # capped at 1000, and there are 250
