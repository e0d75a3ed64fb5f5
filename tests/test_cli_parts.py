"""The CLI package's own pieces: the progress bar and the formats of get/put/append."""
from __future__ import annotations

import io
import math
import time

from prosody_store.cli.data import COMMAND_FORMATS
from prosody_store.cli.progress import INTERVAL, Progress
from prosody_store.formats import FORMATS


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_draws_on_a_terminal_and_clears_its_line():
    stream = Terminal()
    bar = Progress(4, "export", stream=stream)
    bar.update()
    bar.close()
    text = stream.getvalue()
    assert text.startswith("\rexport [" + "#" * 7 + " " * 23 + "]  25%  1/4")
    assert text.endswith("\r\x1b[K")


def test_progress_redraws_at_most_four_times_a_second():
    stream = Terminal()
    bar = Progress(10 ** 6, "import", stream=stream, unit="bytes")
    start = time.monotonic()
    for _ in range(10 ** 5):
        bar.update(step=10)
    elapsed = time.monotonic() - start
    assert 1 <= stream.getvalue().count("\r") <= 1 + elapsed / INTERVAL + 1


def test_progress_line_has_amount_rate_and_time_left():
    bar = Progress(40_000_000, "verify", enabled=False, unit="bytes")
    bar.update(10_000_000)
    line = bar.line(bar._start + 2.0)  # 10 MB in 2 s: 5 MB/s, 30 MB left
    assert line == ("verify [#######                       ]  25%  10.0/40.0 MB  5.0 MB/s"
                    "  0:00:06 left")
    bar.update(40_000_000)
    assert bar.line(bar._start + 8.0).endswith("] 100%  40.0/40.0 MB  5.0 MB/s")


def test_progress_is_silent_off_a_terminal():
    stream = io.StringIO()
    bar = Progress(4, "verify", stream=stream)
    bar.update()
    bar.close()
    assert stream.getvalue() == ""


def test_progress_as_a_callback_with_a_unit():
    stream = io.StringIO()
    bar = Progress(0, "migrate", enabled=True, unit="rows", stream=stream)
    bar(10, 10)
    assert "10/10 rows" in stream.getvalue() and "] 100%" in stream.getvalue()


def test_every_format_of_the_table_is_offered():
    assert list(COMMAND_FORMATS) == list(FORMATS)


def test_the_cli_writes_prosodys_json_and_the_same_lua():
    value = {"a": [1, 2.5, math.inf]}
    assert COMMAND_FORMATS["json"].encode(value) == b'{"a":[1,2.5,inf]}'
    assert COMMAND_FORMATS["lua"].encode(value) == FORMATS["lua"].encode(value)
    items = [{"n": 1}, "two"]
    for fmt in COMMAND_FORMATS.values():
        assert b"".join(fmt.encode_list(items)) == fmt.encode(items)


def test_lua_input_may_start_with_return():
    assert COMMAND_FORMATS["lua"].decode(b"\n return {1, 2};\n", 10) == [1, 2]


def test_version_is_the_package_version(capsys):
    import pytest
    from importlib.metadata import version

    import prosody_store
    from prosody_store.cli import main

    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out == (f"prosody-store {prosody_store.__version__} "
                                       f"(codec: {prosody_store.IMPLEMENTATION})\n")
    assert version("prosody-store") == prosody_store.__version__


def test_import_progress_follows_the_records_not_the_read_ahead(tmp_path):
    """The import bar used to reach 100% at the first read of a 1 MiB chunk."""
    import io as _io

    from prosody_store.datamanager import DataManager
    from prosody_store.export import import_records

    lines = b"".join(b'{"host":"localhost","user":"u%d","store":"notes","type":"keyval",'
                     b'"value":{"text":"%s"}}\n' % (i, b"x" * 200) for i in range(10_000))
    seen: list[int] = []
    import_records(DataManager(tmp_path / "d", durable=False), _io.BytesIO(lines),
                   progress=seen.append)
    assert len(seen) == 10_000 and seen == sorted(seen)
    assert seen[0] < 1000 and seen[len(seen) // 2] < len(lines) * 0.6
    assert seen[-1] == len(lines)
