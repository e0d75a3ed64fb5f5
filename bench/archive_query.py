"""Benchmark: MAM-style archive queries (prosody_store.archive_query) against reading the archive.

Usage: ``python bench/archive_query.py [--items 1000000] [--reps 20] [--list-load]``

Builds once, and caches under ``bench/out/`` (gitignored; the name carries
the parameters and a hash of the generator), a message archive laid out as
Prosody 0.12's mod_storage_internal writes it for mod_mam: one ``item`` per
message (``prosody_store.serialization.dump_item``), each a stored stanza
with a body, an origin-id and a receipt request, ``key`` (24 characters, as
``util.id.medium``), ``when`` (a float, rising by about a minute per
message) and ``with`` (one of 40 contacts), plus its ``.lidx``.  Then times,
on that archive:

(a) the last page of 50 items (``before=""``),
(b) a ``start``/``end`` window of 50 items in the middle (binary search),
(c) the page after a key in the middle, with and without the position hint
    (without: a byte search of half the file),
(d) an unknown key (two byte searches of the whole file, then item-not-found),
(e) the last page of 50 items ``with`` a frequent contact (about one message
    in two) and with a rare one (about one in 500): the items read
    grow as the matches thin out,

each on an open view and with ``list_open`` included (what a request pays),
against reading the whole archive once (``list(view)``; ``--list-load``
adds ``DataManager.list_load``).  Ratios are the whole read's time divided
by the query's.
"""
from __future__ import annotations

import argparse
import hashlib
import inspect
import os
import random
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from prosody_store import lidx  # noqa: E402
from prosody_store.archive_query import ItemNotFoundError, query_archive  # noqa: E402
from prosody_store.datamanager import DataManager  # noqa: E402
from prosody_store.serialization import dump_item  # noqa: E402

HOST, STORE, USER = "example.com", "archive", "alice"
T0 = 1_600_000_000.0
SEED = 20240601
OUT = Path(__file__).resolve().parent / "out"
KEY_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
WORDS = ("hello", "see", "you", "tomorrow", "the", "deploy", "is", "done", "lunch", "?", "!",
         "caf\u00e9", "na\u00efve", "\u4e2d\u6587", "\U0001f600", "meeting", "ok", "thanks",
         "server", "prosody", "release", "later", "\u041f\u0440\u0438\u0432\u0435\u0442")
CONTACTS = [f"contact{i}@example.net" for i in range(40)]


def items(n: int, seed: int) -> Iterator[dict[Any, Any]]:
    """The archive's items, as mod_storage_internal stores mod_mam's messages."""
    rnd = random.Random(seed)
    when = T0
    for i in range(n):
        when += round(rnd.expovariate(1 / 60), 4) + 0.001
        with_ = CONTACTS[int(rnd.paretovariate(1.2)) % len(CONTACTS)]
        outgoing = rnd.random() < 0.5
        msg_id = "".join(rnd.choices(KEY_ALPHABET, k=16))
        body = " ".join(rnd.choices(WORDS, k=rnd.randint(2, 30)))
        yield {
            1: {"name": "body", "attr": {}, 1: body},
            2: {"name": "origin-id", "attr": {"id": msg_id, "xmlns": "urn:xmpp:sid:0"}},
            3: {"name": "request", "attr": {"xmlns": "urn:xmpp:receipts"}},
            "attr": {
                "type": "chat", "id": msg_id, "xmlns": "jabber:client",
                "to": with_ if outgoing else "alice@example.com",
                "from": "alice@example.com/laptop" if outgoing else with_ + "/phone",
                "stamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when)),
            },
            "key": "".join(rnd.choices(KEY_ALPHABET, k=24)),
            "when": round(when, 4),
            "name": "message",
            "with": with_,
        }


def data_dir(n: int) -> Path:
    source = inspect.getsource(items) + repr((WORDS, CONTACTS, T0, KEY_ALPHABET))
    digest = hashlib.sha256(source.encode()).hexdigest()[:10]
    return OUT / f"archive-query-n{n}-seed{SEED}-{digest}"


def build(path: Path, n: int) -> None:
    """Write the archive and its .lidx (into a temporary directory, renamed when done)."""
    tmp = path.with_name(path.name + ".tmp")
    if tmp.exists():
        for f in sorted(tmp.rglob("*"), reverse=True):
            f.unlink() if f.is_file() else f.rmdir()
    dm = DataManager(tmp, durable=False)
    offsets = lidx.new_offsets()

    def chunks() -> Iterator[bytes]:
        pos, batch = 0, []
        for item in items(n, SEED):
            line = dump_item(item)
            pos += len(line)
            offsets.append(pos)
            batch.append(line)
            if len(batch) == 4096:
                yield b"".join(batch)
                batch = []
        yield b"".join(batch)

    dm.list_store_chunks(USER, HOST, STORE, chunks(), offsets)
    os.rename(tmp, path)


def timed(fn: Callable[[], Any], reps: int, budget: float = 2.0) -> float:
    """The best of ``reps`` runs (the least disturbed), in seconds; fewer runs
    when one takes more than ``budget / reps``."""
    best = float("inf")
    spent = 0.0
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        took = time.perf_counter() - t0
        best = min(best, took)
        spent += took
        if spent > budget:
            break
    return best


def fmt(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:8.1f} us"
    if seconds < 1:
        return f"{seconds * 1e3:8.2f} ms"
    return f"{seconds:8.3f} s "


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--list-load", action="store_true",
                        help="also time DataManager.list_load of the whole archive")
    args = parser.parse_args()
    n = args.items
    path = data_dir(n)
    if not path.exists():
        print(f"building {path} ({n:,} items) ...", flush=True)
        t0 = time.perf_counter()
        build(path, n)
        print(f"built in {time.perf_counter() - t0:.1f} s")
    dm = DataManager(path, durable=False)
    list_path = dm.getpath(USER, HOST, STORE, "list")
    size = os.path.getsize(list_path)
    index_size = os.path.getsize(dm.getpath(USER, HOST, STORE, "lidx"))
    print(f"archive: {n:,} items, {size / 1e6:.1f} MB (.lidx {index_size / 1e6:.1f} MB)\n")

    open_time = timed(lambda: dm.list_open(USER, HOST, STORE).close(), args.reps)
    with dm.list_open(USER, HOST, STORE) as view:
        assert len(view) == n
        mid = n // 2
        mid_item = view[mid]
        window_start = mid_item["when"]
        window_end = view[mid + 49]["when"]
        frequent, rare = CONTACTS[1], CONTACTS[len(CONTACTS) // 2]

        cases: list[tuple[str, dict[str, Any], int]] = [
            ("(a) last page, before=\"\"", {"before": ""}, n - 50),
            ("(b) start/end window of 50, middle", {"start": window_start, "end": window_end},
             mid),
            ("(c) after=KEY (middle), hint at=N", {"after": mid_item["key"], "after_at": mid},
             mid + 1),
            ("(c) after=KEY (middle), no hint", {"after": mid_item["key"]}, mid + 1),
            ("(d) unknown key (item-not-found)", {"after": "no-such-key-in-the-archive"}, -1),
            (f"(e) last page, with={frequent}", {"before": "", "with_jid": frequent}, -2),
            (f"(e) last page, with={rare}", {"before": "", "with_jid": rare}, -2),
        ]

        def run(kwargs: dict[str, Any]) -> Any:
            try:
                return query_archive(view, max_items=50, **kwargs)
            except ItemNotFoundError:
                return None

        def run_opened(kwargs: dict[str, Any]) -> Any:
            with dm.list_open(USER, HOST, STORE) as v:
                try:
                    return query_archive(v, max_items=50, **kwargs)
                except ItemNotFoundError:
                    return None

        results = []
        for label, kwargs, first_at in cases:
            page = run(kwargs)
            if first_at >= 0:
                assert page is not None and page.first_at == first_at and len(page.items) == 50, \
                    (label, page and page.first_at)
            elif first_at == -1:
                assert page is None
            else:
                assert page is not None and len(page.items) == 50
            examined = page.examined if page is not None else 0
            results.append((label, timed(lambda kw=kwargs: run(kw), args.reps),
                            timed(lambda kw=kwargs: run_opened(kw), args.reps), examined))

        print("reading the whole archive (once) ...", flush=True)
        t0 = time.perf_counter()
        count = sum(1 for _ in view)
        whole = time.perf_counter() - t0
        assert count == n
    print(f"  list(view), whole archive            {fmt(whole)}   "
          f"({size / whole / 1e6:.0f} MB/s)")
    if args.list_load:
        t0 = time.perf_counter()
        loaded = dm.list_load(USER, HOST, STORE)
        print(f"  DataManager.list_load               {fmt(time.perf_counter() - t0)}")
        assert loaded is not None and len(loaded) == n
        del loaded
    print(f"  list_open (load and check .lidx)     {fmt(open_time)}\n")
    print(f"  {'query (max 50)':<42} {'open view':>11} {'ratio':>9}   {'+list_open':>11} "
          f"{'ratio':>9}   items read")
    for label, t_view, t_open, examined in results:
        print(f"  {label:<42} {fmt(t_view)} {whole / t_view:8.0f}x   {fmt(t_open)} "
              f"{whole / t_open:8.0f}x   {examined:>6}")


if __name__ == "__main__":
    main()
