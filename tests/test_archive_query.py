"""Archive queries (prosody_store.archive_query) against Prosody's own archive:find.

The oracle is Prosody 0.12's mod_storage_internal, loaded under lua5.4 with a
stub module environment (tests/lua/archive_oracle.lua) and run on the same
data directory: for generated archives (times in order, with ties, out of
order, legacy items with only attr.stamp; keys with quotes, newlines, non-ASCII;
bodies and nested tables that hold other items' keys) and generated queries
(start, end, with, after, before, limit, reverse, position hints), the keys
returned, the count and item-not-found must be Prosody's.  Unit tests cover
the fallbacks (out-of-order archives, unusual layouts, stale indexes, a list
replaced under the view), the cost of a page (items read), and the parsers.
"""
from __future__ import annotations

import json
import math
import os
import pickle
import tempfile
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, event, example, given, settings
from hypothesis import strategies as st

from prosody_store import DataManager, Error
from prosody_store.archive_query import (
    MAX_CANDIDATES,
    ArchiveQueryError,
    ItemNotFoundError,
    bare_jid,
    find,
    item_key,
    item_time,
    parse_stamp,
    parse_time,
    query_archive,
)
from prosody_store.serialization import dump_item

HOST, USER, STORE = "example.com", "alice", "archive"
T0 = 1_700_000_000
JIDS = ["bob@example.com", "carol@example.com", "room@conference.example.com"]



# ---------------------------------------------------------------------------
# Archives


def stanza(key: str, when: Any, with_: str | None, body: str = "hello",
           stamp: str | None = None, extra: list[Any] | None = None) -> dict[Any, Any]:
    """An item as mod_storage_internal stores it: a preserialized stanza plus
    key, when and with (``when`` None: a legacy item with only attr.stamp)."""
    attr = {"type": "chat", "to": "alice@example.com", "from": f"{with_ or 'x@y'}/res",
            "id": "m-" + key.encode().hex()[:16], "xmlns": "jabber:client",
            "stamp": stamp if stamp is not None else time.strftime(
                "%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(when) if when == when else 0))}
    item: dict[Any, Any] = {"name": "message", "attr": attr,
                            1: {"name": "body", "attr": {}, 1: body}}
    for i, child in enumerate(extra or [], 2):
        item[i] = child
    item["key"] = key
    if when is not None:
        item["when"] = when
    if with_ is not None:
        item["with"] = with_
    return item


def xml_text(s: str) -> str:
    """``s`` without the characters XML cannot hold (Prosody's stanza checks)."""
    return "".join(c for c in s if c >= " " or c in "\t\n\r")


def write(data_path: str, items: list[Any], user: str = USER) -> DataManager:
    dm = DataManager(data_path, durable=False)
    dm.list_store(user, HOST, STORE, items)
    return dm


def simple_archive(n: int, *, step: float = 1.0, with_cycle: list[str] | None = None
                   ) -> list[dict[Any, Any]]:
    withs = with_cycle or JIDS
    return [stanza(f"key-{i:06d}", T0 + i * step, withs[i % len(withs)], f"message {i}")
            for i in range(n)]


class Prosody:
    """Prosody's archive:find on a data directory, through the oracle."""

    def __init__(self, oracle: Any, data_path: str, user: str = USER) -> None:
        self.oracle, self.data_path, self.user = oracle, data_path, user

    def find(self, **query: Any) -> dict[str, Any]:
        q = {}
        for name, value in query.items():
            if value is None:
                continue
            q[name] = value.encode().hex() if name in ("with", "after", "before") else value
        answer = json.loads(self.oracle.call("archive_oracle.find", json.dumps({
            "path": self.data_path, "host": HOST, "user": self.user, "store": STORE,
            "query": q})))
        if "keys" in answer:
            answer["keys"] = [bytes.fromhex(k).decode() for k in answer["keys"]]
        return answer


def ours(view: Any, **query: Any) -> dict[str, Any]:
    """Our find, answering in the oracle's terms."""
    kw = dict(query)
    if "with" in kw:
        kw["with_"] = kw.pop("with")
    try:
        res = find(view, **kw)
    except ItemNotFoundError:
        return {"error": "item-not-found"}
    return {"keys": [r.key for r in res.rows], "count": res.count, "result": res}


@pytest.fixture
def data_path():
    with tempfile.TemporaryDirectory() as d:
        yield d


# ---------------------------------------------------------------------------
# Generated archives and queries, against Prosody


KEY_TEXT = st.text(alphabet=st.sampled_from(
    list("abcXYZ019-_") + ['"', "'", "\\", "\n", "\t", "[", "]", "=", ";", " ", "\u00e9",
                           "\U0001f600", "\x00", "\x7f"]), min_size=1, max_size=10)
PLAIN_KEY = st.from_regex(r"[A-Za-z0-9_-]{1,14}", fullmatch=True)


@st.composite
def archives(draw: Any, ordered: bool = False) -> tuple[list[dict[Any, Any]], bool]:
    """(items, in_order): items as Prosody stores them; in_order when every
    item has a time and the times never decrease (always, with ``ordered``)."""
    n = draw(st.integers(0, 30))
    keys: list[str] = []
    unique = draw(st.booleans()) or n < 2
    key_strategy = st.one_of(PLAIN_KEY, PLAIN_KEY, KEY_TEXT)
    while len(keys) < n:
        k = draw(key_strategy)
        if unique and k in keys:
            continue
        keys.append(k)
    if not unique:
        for _ in range(draw(st.integers(1, 3))):
            keys[draw(st.integers(0, n - 1))] = keys[draw(st.integers(0, n - 1))]
    order = "sorted" if ordered else draw(
        st.sampled_from(["sorted", "sorted", "sorted", "swap", "shuffled", "jump"]))
    steps = draw(st.lists(st.sampled_from([0, 0.5, 1, 1, 2, 7]), min_size=n, max_size=n))
    times: list[float] = []
    t: float = T0
    for s in steps:
        t += s
        times.append(t)
    if order == "swap" and n >= 2:
        i, j = draw(st.integers(0, n - 1)), draw(st.integers(0, n - 1))
        times[i], times[j] = times[j], times[i]
    elif order == "shuffled":
        times = draw(st.permutations(times))
    elif order == "jump" and n >= 2:  # the clock went back (or forward) once
        cut = draw(st.integers(1, n - 1))
        shift = draw(st.sampled_from([-20, -5, 5]))
        times = times[:cut] + [x + shift for x in times[cut:]]
    items = []
    for i in range(n):
        when: Any = times[i]
        if when == int(when):
            when = int(when)
        stamp = None
        kind = draw(st.sampled_from(["when"] * 6 + ["legacy", "legacy-compact", "legacy-zone"]
                                    + ([] if ordered else ["nan"])))
        if kind.startswith("legacy") and times[i] != int(times[i]):
            kind = "when"  # a stamp has whole seconds
        if kind.startswith("legacy"):
            when = int(times[i])
            g = time.gmtime(when)
            if kind == "legacy":
                stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", g)
            elif kind == "legacy-compact":  # XEP-0091's form, read by the same parser
                stamp = time.strftime("%Y%m%dT%H:%M:%S", g)
            else:
                stamp = time.strftime("%Y-%m-%dT", time.gmtime(when + 3600)) + time.strftime(
                    "%H:%M:%S.123+01:00", time.gmtime(when + 3600))
        elif kind == "nan":
            when = math.nan
        other = xml_text(keys[draw(st.integers(0, n - 1))])
        body = draw(st.sampled_from(["hi", "see " + other, '["key"] = "' + other + '";']))
        extra = []
        if draw(st.integers(0, 5)) == 0:  # a nested table with a "key" field
            extra.append({"name": "x", "attr": {"xmlns": "urn:example", "key": other}})
        with_ = draw(st.sampled_from(JIDS + [None]))
        item = stanza(keys[i], when, with_, body, stamp=stamp, extra=extra)
        if kind.startswith("legacy"):
            del item["when"]
        items.append(item)
    in_order = all(not math.isnan(x) for x in (item_time(i) for i in items)) and all(
        item_time(a) <= item_time(b) for a, b in zip(items, items[1:]))
    return items, in_order


@st.composite
def queries(draw: Any, items: list[dict[Any, Any]]) -> dict[str, Any]:
    keys = [i["key"] for i in items]
    times = [t for t in (item_time(i) for i in items) if t is not None and not math.isnan(t)]

    def moment() -> Any:
        if times and draw(st.integers(0, 3)):
            return draw(st.sampled_from(times)) + draw(st.sampled_from([0, 0, -0.5, 0.5, -1, 1]))
        return draw(st.integers(T0 - 5, T0 + 80))

    def cursor() -> Any:
        c = draw(st.integers(0, 5))
        if c == 0 or not keys:
            return None if c < 3 else draw(st.sampled_from(["nope", "", "key-x"]))
        return draw(st.sampled_from(keys))

    q: dict[str, Any] = {}
    if draw(st.booleans()):
        q["start"] = moment()
    if draw(st.booleans()):
        q["end"] = moment()
    if draw(st.integers(0, 2)) == 0:
        q["with"] = draw(st.sampled_from(JIDS + ["nobody@example.com"]))
    for name in ("after", "before"):
        if draw(st.booleans()):
            q[name] = cursor()
    if draw(st.booleans()):
        q["limit"] = draw(st.integers(0, 8))
    q["reverse"] = draw(st.booleans())
    q["total"] = draw(st.booleans())
    return {k: v for k, v in q.items() if v is not None}


def hints(draw: Any, items: list[dict[Any, Any]], q: dict[str, Any]) -> dict[str, Any]:
    """Position hints for the cursors: right, wrong or out of range (unique keys only)."""
    keys = [i["key"] for i in items]
    out = {}
    for name in ("after", "before"):
        key = q.get(name)
        if key is None or keys.count(key) > 1:
            continue
        kind = draw(st.sampled_from(["none", "right", "right", "wrong", "far"]))
        if kind == "right" and key in keys:
            out[name + "_at"] = keys.index(key)
        elif kind == "wrong" and keys:
            out[name + "_at"] = draw(st.integers(0, len(keys) - 1))
        elif kind == "far":
            out[name + "_at"] = len(keys) + draw(st.integers(0, 3))
    return out


def check_rows_match(items: list[dict[Any, Any]], q: dict[str, Any], res: Any) -> None:
    """What holds even when disorder went unseen: every row matches the filters,
    in list order (backwards for reverse), within the limit."""
    positions = [r.position for r in res.rows]
    assert positions == sorted(positions, reverse=bool(q.get("reverse")))
    assert len(set(positions)) == len(positions)
    if q.get("limit") is not None:
        assert len(res.rows) <= q["limit"]
    for r in res.rows:
        item = items[r.position]
        assert r.key == item["key"]
        t = item_time(item)
        if "start" in q:
            assert t is not None and t >= q["start"]
        if "end" in q:
            assert t is not None and t <= q["end"]
        if "with" in q:
            assert item.get("with") == q["with"]


@pytest.mark.interop
@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_find_matches_prosody(oracle: Any, data: Any) -> None:
    items, in_order = data.draw(archives(), label="archive")
    with tempfile.TemporaryDirectory() as d:
        dm = write(d, items)
        prosody = Prosody(oracle, d)
        with dm.list_open(USER, HOST, STORE) as view:
            assert len(view) == len(items)
            for _ in range(data.draw(st.integers(1, 6), label="queries")):
                q = data.draw(queries(items), label="query")
                extra = hints(data.draw, items, q)
                if data.draw(st.integers(0, 5), label="time_ordered") == 0:
                    extra["time_ordered"] = False
                expected = prosody.find(**{**q, "total": True})
                got = ours(view, **q, **extra)
                if "error" in expected:
                    assert expected == {"error": "item-not-found"}
                    assert got == expected, (q, extra)
                    event("item-not-found")
                    continue
                assert "error" not in got, (q, extra, expected)
                res = got["result"]
                timed = "start" in q or "end" in q
                event("in order" if in_order else "linear" if res.linear
                      else "not timed" if not timed else "disorder unseen")
                if extra.get("after_at") is not None or extra.get("before_at") is not None:
                    event("hinted")
                if in_order or not timed or res.linear:
                    assert got["keys"] == expected["keys"], (q, extra)
                    if q["total"]:
                        assert got["count"] is not None
                    if got["count"] is not None:
                        assert got["count"] == expected["count"], (q, extra)
                    if in_order and extra.get("time_ordered") is not False:
                        assert not res.linear
                else:
                    check_rows_match(items, q, res)


@pytest.mark.interop
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_pages_match_mod_mam(oracle: Any, data: Any) -> None:
    """query_archive is mod_mam's paging over archive:find (limit max+1, reverse
    for before, the page in chronological order, complete, RSM count)."""
    items, in_order = data.draw(archives(ordered=True), label="archive")
    assert in_order
    with tempfile.TemporaryDirectory() as d:
        dm = write(d, items)
        prosody = Prosody(oracle, d)
        with dm.list_open(USER, HOST, STORE) as view:
            for _ in range(data.draw(st.integers(1, 4), label="queries")):
                q = data.draw(queries(items), label="query")
                max_items = data.draw(st.integers(0, 6), label="max")
                before = q.get("before")
                if before is None and data.draw(st.booleans(), label="last page"):
                    before = ""
                with_jid = q.get("with")
                if with_jid is not None and data.draw(st.booleans(), label="full jid"):
                    node, host = with_jid.split("@")
                    with_jid = f"{node.capitalize()}@{host.upper()}/Phone"
                reverse = before is not None
                expected = prosody.find(
                    start=q.get("start"), end=q.get("end"),
                    **({"with": q["with"]} if "with" in q else {}),
                    after=q.get("after"), before=before or None, reverse=reverse,
                    limit=max_items + 1 if max_items else 0, total=True)
                try:
                    page = query_archive(view, max_items=max_items, start=q.get("start"),
                                         end=q.get("end"), with_jid=with_jid,
                                         after=q.get("after"), before=before,
                                         count=data.draw(st.booleans(), label="count"))
                except ItemNotFoundError:
                    assert expected == {"error": "item-not-found"}
                    continue
                assert "error" not in expected
                keys = expected["keys"][:max_items]
                more = len(expected["keys"]) > max_items
                if reverse:
                    keys.reverse()
                assert page.keys == keys
                assert page.complete == (not more)
                assert page.total is None or page.total == expected["count"]
                if reverse:
                    assert page.has_previous == more
                    assert page.has_next == (bool(keys) and bool(before))
                else:
                    assert page.has_next == more
                    assert page.has_previous == (bool(keys) and q.get("after") is not None)
                assert page.items == [items[p] for p in page.positions]
                assert page.first == (keys[0] if keys else None)
                assert page.last == (keys[-1] if keys else None)


@pytest.mark.interop
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_paging_through_with_cursors_gives_everything(oracle: Any, data: Any) -> None:
    """Following has_next/has_previous links (with position hints) from the first
    page forwards, and from the last page backwards, visits exactly what Prosody
    finds without paging."""
    items, in_order = data.draw(archives(ordered=True), label="archive")
    assume(len({i["key"] for i in items}) == len(items))
    with tempfile.TemporaryDirectory() as d:
        dm = write(d, items)
        q = data.draw(queries(items), label="query")
        flt = {k: q[k] for k in ("start", "end") if k in q}
        with_jid = q.get("with")
        everything = Prosody(oracle, d).find(**flt, **({"with": with_jid} if with_jid else {}))
        size = data.draw(st.integers(1, 5), label="page size")
        with dm.list_open(USER, HOST, STORE) as view:
            seen: list[str | None] = []
            page = query_archive(view, max_items=size, with_jid=with_jid, **flt)
            seen += page.keys
            while page.has_next:
                page = query_archive(view, max_items=size, with_jid=with_jid, **flt,
                                     after=page.last, after_at=page.last_at)
                seen += page.keys
            assert seen == everything["keys"]
            back: list[str | None] = []
            page = query_archive(view, max_items=size, with_jid=with_jid, before="", **flt)
            back = page.keys + back
            while page.has_previous:
                page = query_archive(view, max_items=size, with_jid=with_jid, **flt,
                                     before=page.first, before_at=page.first_at)
                back = page.keys + back
            assert back == everything["keys"]


# ---------------------------------------------------------------------------
# Out-of-order archives


@pytest.mark.interop
def test_out_of_order_at_the_ends_falls_back(oracle: Any, data_path: str) -> None:
    items = simple_archive(200)
    items[-1]["when"] = T0 - 50  # imported late: the last item is the oldest
    dm = write(data_path, items)
    prosody = Prosody(oracle, data_path)
    with dm.list_open(USER, HOST, STORE) as view:
        for q in ({"start": T0 - 60, "end": T0 + 10}, {"start": T0 + 100, "limit": 5},
                  {"end": T0 + 3, "reverse": True, "limit": 3}):
            got = ours(view, **q, total=True)
            assert got["result"].linear
            expected = prosody.find(**q, total=True)
            assert got["keys"] == expected["keys"] and got["count"] == expected["count"]
        page = query_archive(view, max_items=5, end=T0 + 3, before="")
        # In list order, as Prosody's list_load gives the items.
        assert page.linear and page.keys == ["key-000000", "key-000001", "key-000002",
                                             "key-000003", "key-000199"]


@pytest.mark.interop
def test_out_of_order_within_the_page_falls_back(oracle: Any, data_path: str) -> None:
    items = simple_archive(1000)
    # Two neighbours swapped in the middle of the window: seen by a probe or
    # by the page, which checks every item it reads.
    items[500]["when"], items[501]["when"] = items[501]["when"], items[500]["when"]
    dm = write(data_path, items)
    prosody = Prosody(oracle, data_path)
    with dm.list_open(USER, HOST, STORE) as view:
        q = {"start": T0 + 495, "end": T0 + 505, "total": True}
        got = ours(view, **q)
        assert got["result"].linear
        expected = prosody.find(**q)
        assert got["keys"] == expected["keys"] and got["count"] == expected["count"] == 11
        # A page that does not read the swapped pair stays on the fast path.
        got = ours(view, start=T0 + 100, end=T0 + 110)
        assert not got["result"].linear and got["keys"] == [f"key-{i:06d}" for i in
                                                             range(100, 111)]


@pytest.mark.interop
def test_disorder_between_probes_seen_by_the_page(oracle: Any, data_path: str) -> None:
    items = simple_archive(1000)
    # Neighbours swapped where no binary-search probe of this window reads
    # (probes near 594 and 625): the page sees one item earlier than the one
    # before it.
    items[600]["when"], items[601]["when"] = items[601]["when"], items[600]["when"]
    dm = write(data_path, items)
    with dm.list_open(USER, HOST, STORE) as view:
        got = ours(view, start=T0 + 590, end=T0 + 700, total=True)
        assert got["result"].linear
        expected = Prosody(oracle, data_path).find(start=T0 + 590, end=T0 + 700, total=True)
        assert got["keys"] == expected["keys"] and got["count"] == expected["count"] == 111


@pytest.mark.interop
def test_nan_time_at_a_probe(oracle: Any, data_path: str) -> None:
    items = simple_archive(1000)
    items[500]["when"] = math.nan  # the first probe of the binary searches
    dm = write(data_path, items)
    with dm.list_open(USER, HOST, STORE) as view:
        got = ours(view, start=T0 + 400, end=T0 + 600, total=True)
        assert got["result"].linear
        expected = Prosody(oracle, data_path).find(start=T0 + 400, end=T0 + 600, total=True)
        assert got["keys"] == expected["keys"] and got["count"] == expected["count"] == 200


@pytest.mark.interop
def test_cursor_outside_the_window(oracle: Any, data_path: str) -> None:
    """A late import: item 900 has an old time.  As a cursor it matches the
    filters but lies outside the window the binary search finds."""
    items = simple_archive(1000)
    items[900]["when"] = T0 + 100.5
    dm = write(data_path, items)
    prosody = Prosody(oracle, data_path)
    with dm.list_open(USER, HOST, STORE) as view:
        for q, hint in (({"before": "key-000900", "reverse": True, "limit": 3}, {}),
                        ({"before": "key-000900", "reverse": True}, {"before_at": 900}),
                        ({"after": "key-000900"}, {}), ({"after": "key-000900"}, {"after_at": 900})):
            q = {**q, "start": T0 + 50, "end": T0 + 150, "total": True}
            got = ours(view, **q, **hint)
            assert got["result"].linear
            expected = prosody.find(**q)
            assert got["keys"] == expected["keys"] and got["count"] == expected["count"] == 102
        assert expected["keys"] == []  # nothing after item 900 in the window


def test_index_that_does_not_match_the_view(data_path: str) -> None:
    """The .lidx on disk changed under the view (same list file): the byte
    search finds the key in an item the view does not agree on, so it reads
    the view instead of answering item-not-found."""
    items = simple_archive(100)
    dm = write(data_path, items)
    index = dm.getpath(USER, HOST, STORE, "lidx")
    with dm.list_open(USER, HOST, STORE) as view:
        with open(index, "rb") as f:
            data = bytearray(f.read())
        from prosody_store import lidx
        offsets = lidx.parse_index(bytes(data))
        assert offsets is not None and len(offsets) == 100
        offsets[0] = offsets[0] // 3  # item 0 now "ends" before its key field
        with open(index, "wb") as f:
            f.write(lidx.encode_index(offsets))
        res = find(view, after="key-000000", limit=1)
        assert [r.key for r in res.rows] == ["key-000001"]


@pytest.mark.interop
def test_disorder_in_probes_detected(oracle: Any, data_path: str) -> None:
    items = simple_archive(64)
    items[32]["when"] = T0 + 1000  # the first probe of any binary search
    dm = write(data_path, items)
    with dm.list_open(USER, HOST, STORE) as view:
        got = ours(view, start=T0 + 10, end=T0 + 12)
        assert got["result"].linear
        assert got["keys"] == Prosody(oracle, data_path).find(start=T0 + 10, end=T0 + 12)["keys"]
        assert got["keys"] == ["key-000010", "key-000011", "key-000012"]


def test_time_ordered_false_scans(data_path: str) -> None:
    dm = write(data_path, simple_archive(50))
    with dm.list_open(USER, HOST, STORE) as view:
        fast = find(view, start=T0 + 10, limit=3)
        slow = find(view, start=T0 + 10, limit=3, time_ordered=False)
        assert not fast.linear and slow.linear
        assert fast.rows == slow.rows
        assert slow.examined >= 50 > fast.examined


def test_item_without_time_matches_no_window(data_path: str) -> None:
    """Prosody fails such a query; we leave the item out (a documented deviation)."""
    items = simple_archive(10)
    del items[4]["when"]
    items[4]["attr"]["stamp"] = "yesterday"
    items[6]["when"] = "soon"
    dm = write(data_path, items)
    with dm.list_open(USER, HOST, STORE) as view:
        res = find(view, start=T0, total=True)
        assert res.linear and res.count == 8
        assert [r.key for r in res.rows] == [f"key-{i:06d}" for i in range(10) if i not in (4, 6)]
        assert len(find(view).rows) == 10  # no time filter: no time needed


# ---------------------------------------------------------------------------
# Legacy items


@pytest.mark.interop
def test_legacy_items_with_stamp_only(oracle: Any, data_path: str) -> None:
    items = simple_archive(300)
    for i, item in enumerate(items):
        if i % 2:
            del item["when"]  # attr.stamp (whole seconds) is all the time they have
    dm = write(data_path, items)
    prosody = Prosody(oracle, data_path)
    with dm.list_open(USER, HOST, STORE) as view:
        for q in ({"start": T0 + 101, "end": T0 + 120}, {"start": T0 + 250, "reverse": True},
                  {"end": T0 + 7, "limit": 3, "reverse": True}):
            got = ours(view, **q, total=True)
            assert not got["result"].linear
            expected = prosody.find(**q, total=True)
            assert got["keys"] == expected["keys"] and got["count"] == expected["count"]
        assert find(view, start=T0 + 101, end=T0 + 101).rows[0].item == items[101]


# ---------------------------------------------------------------------------
# Cursors


@pytest.mark.interop
def test_unknown_key_is_item_not_found(oracle: Any, data_path: str) -> None:
    dm = write(data_path, simple_archive(500))
    prosody = Prosody(oracle, data_path)
    with dm.list_open(USER, HOST, STORE) as view:
        for q in ({"after": "key-9"}, {"before": "no-such", "reverse": True},
                  {"after": "key-000010", "start": T0 + 20},  # exists, but filtered out
                  {"after": "key-000010", "with": JIDS[0]}):  # item 10 is with JIDS[1]
            assert prosody.find(**q) == {"error": "item-not-found"}
            with pytest.raises(ItemNotFoundError) as info:
                find(view, **{("with_" if k == "with" else k): v for k, v in q.items()})
            assert info.value.condition == "item-not-found"
            assert info.value.key == q.get("after", q.get("before"))
        res = None
        try:
            find(view, after="zzzz-not-there")
        except ItemNotFoundError as err:
            res = err
        assert isinstance(res, Error) and isinstance(res, LookupError)
        assert pickle.loads(pickle.dumps(res)).key == "zzzz-not-there"
        # A stop key that is not met is no error (Prosody's find).
        assert prosody.find(before="nope", limit=2)["keys"] == ["key-000000", "key-000001"]
        assert [r.key for r in find(view, before="nope", limit=2).rows] == [
            "key-000000", "key-000001"]
        with pytest.raises(ItemNotFoundError):
            query_archive(view, max_items=5, before="nope")


def test_unknown_key_costs_no_parse(data_path: str) -> None:
    dm = write(data_path, simple_archive(3000))
    with dm.list_open(USER, HOST, STORE) as view:
        # An error carries no count of the items read: time it against a parse.
        t = time.perf_counter()
        for _ in range(5):
            with pytest.raises(ItemNotFoundError):
                find(view, after="never-seen-key")
        search = (time.perf_counter() - t) / 5
        t = time.perf_counter()
        list(view)
        parse = time.perf_counter() - t
        assert search < parse / 5, (search, parse)


@pytest.mark.interop
def test_missing_list(oracle: Any, data_path: str) -> None:
    dm = DataManager(data_path, durable=False)
    prosody = Prosody(oracle, data_path, user="nobody")
    with dm.list_open("nobody", HOST, STORE) as view:
        assert not view.exists
        assert prosody.find(total=True) == {"keys": [], "count": 0}
        assert find(view, total=True).count == 0
        for q in ({"after": "x"}, {"before": "x", "reverse": True},
                  {"after": "x", "reverse": True}):  # Prosody: any cursor on no list
            assert prosody.find(**q) == {"error": "item-not-found"}
            with pytest.raises(ItemNotFoundError):
                find(view, **q)
        page = query_archive(view, max_items=10, before="")
        assert page.keys == [] and page.complete and not page.has_next and page.total == 0


def test_hints(data_path: str) -> None:
    items = simple_archive(2000)
    dm = write(data_path, items)
    with dm.list_open(USER, HOST, STORE) as view:
        right = query_archive(view, max_items=10, after="key-001000", after_at=1000)
        assert right.keys == [f"key-{i:06d}" for i in range(1001, 1011)]
        assert right.positions == list(range(1001, 1011)) and right.last_at == 1010
        assert right.examined == 11 + 1  # the hinted item, the page and one more
        for wrong in (999, 0, 1999, 5000):
            page = query_archive(view, max_items=10, after="key-001000", after_at=wrong)
            assert page.keys == right.keys and not page.linear
        back = query_archive(view, max_items=10, before="key-001000", before_at=1000)
        assert back.keys == [f"key-{i:06d}" for i in range(990, 1000)]
        assert back.has_previous and back.has_next and back.first_at == 990
        # A hinted item that does not match the filters is not the cursor.
        with pytest.raises(ItemNotFoundError):
            query_archive(view, max_items=10, after="key-001000", after_at=1000,
                          with_jid=JIDS[0])  # item 1000 is with JIDS[1]
        os.replace(_copy_of(view.path, data_path), view.path)
        # The list was replaced under the open view: the view is a snapshot,
        # and the byte search reads the view's own open file, so both the hint
        # and the search still find the cursor without reading the list.
        hinted = query_archive(view, max_items=10, after="key-001500", after_at=1500)
        assert hinted.examined == 12
        unhinted = query_archive(view, max_items=10, after="key-001500")
        assert unhinted.keys == hinted.keys and unhinted.examined == 12


def _copy_of(path: str, directory: str) -> str:
    copy = os.path.join(directory, "copy.list")
    with open(path, "rb") as src, open(copy, "wb") as dst:
        dst.write(src.read())
    return copy


@pytest.mark.interop
def test_byte_search_false_hits(oracle: Any, data_path: str) -> None:
    """The key's bytes in bodies, in a nested "key" field and in another
    item's body spelled as the field is, are not the item."""
    target = 'k"1\\é\n'
    items = simple_archive(40)
    items[3][1][1] = '["key"] = "' + target + '";'  # a body: escaped in the file
    items[5][2] = {"name": "x", "attr": {"key": target}}  # a nested key field
    items[7][1][1] = "k\"1 and k"  # the plain run of the key
    items[30]["key"] = target
    dm = write(data_path, items)
    prosody = Prosody(oracle, data_path)
    with dm.list_open(USER, HOST, STORE) as view:
        for q in ({"after": target, "limit": 3}, {"before": target, "reverse": True, "limit": 2}):
            assert [r.key for r in find(view, **q).rows] == prosody.find(**q)["keys"]
        res = find(view, after=target, limit=1)
        assert res.rows[0].position == 31 and res.examined <= 3


@pytest.mark.interop
def test_duplicate_keys_first_and_last(oracle: Any, data_path: str) -> None:
    items = simple_archive(30)
    for i in (5, 12, 20):
        items[i]["key"] = "dup"
    dm = write(data_path, items)
    prosody = Prosody(oracle, data_path)
    with dm.list_open(USER, HOST, STORE) as view:
        for q in ({"after": "dup", "limit": 2}, {"before": "dup", "reverse": True, "limit": 2},
                  {"after": "dup", "start": T0 + 6, "limit": 2},
                  {"before": "dup", "end": T0 + 19, "reverse": True, "limit": 2}):
            assert [r.key for r in find(view, **q).rows] == prosody.find(**q)["keys"]


@pytest.mark.interop
def test_many_candidates_fall_back_to_reading(oracle: Any, data_path: str) -> None:
    """A key written in another layout, whose text is in every item: more than
    MAX_CANDIDATES items to confirm, so the list is read to find it."""
    n = MAX_CANDIDATES * 3
    items = simple_archive(n)
    for item in items:
        item[1][1] = "ab"  # every body holds the key's text
    chunks = [dump_item(item) for item in items]
    chunks[-10] = b"item{key = 'ab', when = %d, name = 'message', attr = {}}\n" % (T0 + n - 10)
    directory = os.path.join(data_path, "example%2ecom", STORE)
    os.makedirs(directory)
    with open(os.path.join(directory, "alice.list"), "wb") as f:
        f.write(b"".join(chunks))
    dm = DataManager(data_path, durable=False)
    prosody = Prosody(oracle, data_path)
    with dm.list_open(USER, HOST, STORE) as view:
        res = find(view, after="ab", limit=2)
        assert [r.key for r in res.rows] == prosody.find(after="ab", limit=2)["keys"]
        assert res.rows[0].position == n - 9 and res.examined >= n - 9  # read up to it
        with pytest.raises(ItemNotFoundError):
            find(view, after="b")
        # The field as Prosody writes it is found at once.
        res = find(view, after=items[50]["key"], limit=1)
        assert res.rows[0].position == 51 and res.examined == 2


@pytest.mark.interop
def test_unusual_layout(oracle: Any, data_path: str) -> None:
    """A hand-written list: several items on a line, bare-name keys, single
    quotes, a key spelled with an escape Prosody would not write."""
    directory = os.path.join(data_path, "example%2ecom", STORE)
    os.makedirs(directory)
    m = "name='message', attr={}"  # what Prosody's find needs to return an item
    lines = [
        "item{key='a1', when=%d, with='bob@example.com', %s} item{key=[[a2]], when=%d, %s}"
        % (T0, m, T0 + 1, m),
        'item({ ["key"]="a3"; ["when"]=%d; ["with"]="bob@example.com"; '
        '["name"]="message"; ["attr"]={} })' % (T0 + 2),
        "item{key = 'q\"uote\\n', when = %d, %s}" % (T0 + 3, m),
        "item{key = 'caf\u00e9', when = %d, %s}" % (T0 + 4, m),
        "item{key = '\\97\\98', when = %d, %s}" % (T0 + 5, m),
        "-- a comment\nitem{key='a7', when=%d, %s}" % (T0 + 6, m),
    ]
    with open(os.path.join(directory, "alice.list"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    dm = DataManager(data_path, durable=False)
    prosody = Prosody(oracle, data_path)
    with dm.list_open(USER, HOST, STORE) as view:
        assert [item_key(i) for i in view] == ["a1", "a2", "a3", 'q"uote\n', "caf\u00e9", "ab",
                                               "a7"]
        for key in ("a1", "a2", "a3", 'q"uote\n', "caf\u00e9", "a7"):
            for q in ({"after": key}, {"before": key, "reverse": True},
                      {"after": key, "start": T0 + 1, "end": T0 + 5}):
                expected = prosody.find(**q, total=True)
                got = ours(view, **q, total=True)
                got.pop("result", None)
                assert got == expected, q
        # "\97\98" is "ab" with needless escapes: documented as not found by key.
        assert prosody.find(after="ab")["keys"] == ["a7"]
        with pytest.raises(ItemNotFoundError):
            find(view, after="ab")


@pytest.mark.interop
def test_index_appended_or_missing(oracle: Any, data_path: str) -> None:
    items = simple_archive(500)
    dm = write(data_path, items)
    with dm.list_open(USER, HOST, STORE) as view:
        for i in range(500, 510):  # appended after the view opened (index kept current)
            dm.list_append(USER, HOST, STORE, stanza(f"key-{i:06d}", T0 + i, JIDS[0]))
        res = find(view, after="key-000400", limit=2)
        assert [r.key for r in res.rows] == ["key-000401", "key-000402"]
        assert res.examined <= 3
        with pytest.raises(ItemNotFoundError):  # not in the view's snapshot
            find(view, after="key-000505")
    # A Prosody 0.12 append leaves the .lidx stale; a read-only store builds
    # the offsets itself.
    oracle.call("dm_oracle.list_append", json.dumps({
        "path": data_path, "user": USER.encode().hex(), "host": HOST.encode().hex(),
        "store": STORE.encode().hex(), "items": [{"table": [
            [{"raw": b"key".hex()}, {"raw": b"from-prosody".hex()}],
            [{"raw": b"when".hex()}, {"int": str(T0 + 600)}]]}]}))
    ro = DataManager(data_path, durable=False, write_index=False)
    with ro.list_open(USER, HOST, STORE) as view:
        assert len(view) == 511
        res = find(view, before="from-prosody", reverse=True, limit=1)
        assert [r.key for r in res.rows] == ["key-000509"] and res.examined <= 2
        os.unlink(dm.getpath(USER, HOST, STORE, "lidx"))
        res = find(view, after="key-000100", limit=1)
        assert [r.key for r in res.rows] == ["key-000101"] and res.examined <= 2


# ---------------------------------------------------------------------------
# Cost: items read for a page, not for the archive


def test_page_cost(data_path: str) -> None:
    n = 20000
    dm = write(data_path, simple_archive(n))
    log_n = math.ceil(math.log2(n))
    with dm.list_open(USER, HOST, STORE) as view:
        last = query_archive(view, max_items=50, before="")
        assert last.keys[-1] == f"key-{n - 1:06d}" and len(last.keys) == 50
        assert last.examined == 51 and last.total == n and last.has_previous
        window = query_archive(view, max_items=50, start=T0 + 9000, end=T0 + 9999)
        assert window.keys[0] == "key-009000" and window.total == 1000 and window.has_next
        assert window.examined <= 2 * log_n + 2 + 51
        nxt = query_archive(view, max_items=50, start=T0 + 9000, end=T0 + 9999,
                            after=window.last)
        assert nxt.keys[0] == "key-009050" and nxt.examined <= 2 * log_n + 2 + 52
        # with: reading stops when the page is full; one JID in three matches.
        w = query_archive(view, max_items=50, with_jid=JIDS[2], before="")
        assert len(w.keys) == 50 and w.total is None
        assert 3 * 50 <= w.examined <= 2 * 3 * 51 + 16  # read in slices that double
        counted = query_archive(view, max_items=50, with_jid=JIDS[2], before="", count=True)
        assert counted.total == n // 3 and counted.keys == w.keys


# ---------------------------------------------------------------------------
# Parsers and arguments


@pytest.mark.parametrize("text, expected", [
    ("2024-01-31T12:00:00Z", 1706702400),
    ("2024-01-31T13:00:00+01:00", 1706702400),
    ("2024-01-31T11:30:00-00:30", 1706702400),
    ("2024-01-31T12:00:00.999Z", 1706702400),  # fraction dropped, as mod_mam
    ("2024-02-29T00:00:00Z", 1709164800),
    ("1970-01-01T00:00:00Z", 0),
    ("1706702400", 1706702400),
    ("1706702400.25", 1706702400.25),
    ("-5", -5),
    ("0", 0),
])
def test_parse_time(text: str, expected: float) -> None:
    got = parse_time(text)
    assert got == expected and type(got) is type(expected)


@pytest.mark.parametrize("text", [
    "", " 1706702400", "1706702400 ", "1e9", "0x10", "inf", "nan", "+5", "1.", ".5",
    "\u0661\u0662", "1234567890123456", "2024-01-31", "2024-01-31T12:00:00",
    "2024-01-31 12:00:00Z", "2024-01-31t12:00:00z", "20240131T12:00:00Z",
    "2024-13-01T00:00:00Z", "2023-02-29T00:00:00Z", "2024-01-31T24:00:00Z",
    "2024-01-31T12:60:00Z", "2024-01-31T12:00:60Z", "2024-01-31T12:00:00+0100",
    "2024-01-31T12:00:00+24:00", "0000-01-01T00:00:00Z", "2024-01-31T12:00:00Z trailing",
    "yesterday",
])
def test_parse_time_refuses(text: str) -> None:
    with pytest.raises(ArchiveQueryError) as info:
        parse_time(text)
    assert isinstance(info.value, Error) and isinstance(info.value, ValueError)
    assert "time" in str(info.value)


STAMP_PIECES = st.sampled_from([
    "2024", "01", "31", "-", "T", "12", ":", "00", ".", "5", "Z", "+", "01:00", "0130", "99",
    "13", "00:30", "x", " ", "-05"])


@settings(max_examples=300, deadline=None)
@given(st.one_of(
    st.lists(STAMP_PIECES, max_size=12).map("".join),
    st.builds(lambda d, z: time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(d)) + z,
              st.integers(-10**10, 10**11), st.sampled_from(
                  ["Z", "", ".123Z", "+05:30", "-0800", "+01", "Zjunk", "-03:", "+1"])),
    st.builds(lambda d: time.strftime("%Y%m%dT%H:%M:%S", time.gmtime(d)),
              st.integers(0, 4 * 10**9)),
))
@pytest.mark.interop
@example("2024-01-31T12:00:00+01:3")
@example("2024-01-31T12:00:00+01:300")
@example("2024-01-31T12:00:00-0130")
@example("2024-01-31T12:00:00.5+01")
@example("2024-01-31T12:00:00Z+02:00")
@example("20240131T12:00:00")
def test_parse_stamp_matches_prosody(oracle: Any, text: str) -> None:
    expected = oracle.call("archive_oracle.parse_stamp", text).decode()
    got = parse_stamp(text)
    assert ("nil" if got is None else str(got)) == expected


def test_parse_stamp_carries_over() -> None:
    assert parse_stamp("2023-13-01T00:00:00Z") == parse_time("2024-01-01T00:00:00Z")
    assert parse_stamp("2024-03-00T00:00:00Z") == parse_time("2024-02-29T00:00:00Z")
    assert parse_stamp("2024-01-31T12:00:00+01") == parse_time("2024-01-31T11:00:00Z")
    assert parse_stamp("nope") is None and parse_stamp("2024-01-31T12:00:00Q") is None


def test_bare_jid() -> None:
    assert bare_jid("Bob@Example.COM/Phone") == "bob@example.com"
    assert bare_jid("example.com/res") == "example.com"
    assert bare_jid("Room@Conference.Example.com.") == "room@conference.example.com"
    for bad in ("", "@example.com", "a@b/", "a b@example.com", "x" * 2000):
        with pytest.raises(ArchiveQueryError):
            bare_jid(bad)


def test_bad_arguments(data_path: str) -> None:
    dm = write(data_path, simple_archive(5))
    with dm.list_open(USER, HOST, STORE) as view:
        for kwargs in ({"start": "2024-01-01T00:00:00Z"}, {"end": True}, {"after": 5},
                       {"before": b"k"}, {"limit": -1}, {"limit": 1.5}, {"after_at": -1},
                       {"with_": 3}):
            with pytest.raises(ArchiveQueryError):
                find(view, **kwargs)
        for kwargs in ({"max_items": -1}, {"max_items": True}, {"max_items": 5, "with_jid": "@"},
                       {"max_items": 5, "before": 1}):
            with pytest.raises(ArchiveQueryError):
                query_archive(view, **kwargs)


def test_nan_and_infinite_bounds(data_path: str) -> None:
    dm = write(data_path, simple_archive(20))
    with dm.list_open(USER, HOST, STORE) as view:
        for q, count in (({"start": math.inf}, 0), ({"end": math.inf}, 20),
                         ({"start": -math.inf, "end": T0 + 5}, 6), ({"end": -math.inf}, 0)):
            got = find(view, **q, total=True)
            assert not got.linear and got.count == count == len(got.rows)
        assert find(view, start=math.nan, total=True).count == 0  # as Lua: nan >= x is false
        assert find(view, end=math.nan).rows == []


def test_max_items_zero_gives_count_only(data_path: str) -> None:
    dm = write(data_path, simple_archive(100))
    with dm.list_open(USER, HOST, STORE) as view:
        page = query_archive(view, max_items=0, with_jid=JIDS[0], start=T0 + 10)
        assert page.keys == [] and page.total == 30 and page.complete
        assert not page.has_next and not page.has_previous


def test_page_values_are_the_views(data_path: str) -> None:
    items = simple_archive(30)
    dm = write(data_path, items)
    with dm.list_open(USER, HOST, STORE) as view:
        page = query_archive(view, max_items=4, after="key-000010", start=T0 + 5)
        assert page.items == view[11:15] == items[11:15]
        assert page.keys == [item_key(i) for i in items[11:15]]
        dump_item(page.items[0])  # still a storable item
