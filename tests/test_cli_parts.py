"""The CLI package's own pieces: the progress bar and the formats of get/put/append."""
from __future__ import annotations

import io
import math

from prosody_store.cli.data import COMMAND_FORMATS
from prosody_store.cli.progress import Progress
from prosody_store.formats import FORMATS


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_draws_on_a_terminal_and_clears_its_line():
    stream = Terminal()
    bar = Progress(4, "export", stream=stream)
    for _ in range(4):
        bar.update()
    bar.close()
    text = stream.getvalue()
    assert "\rexport [" + "#" * 30 + "] 100%" in text
    assert text.endswith("\r\x1b[K")


def test_progress_is_silent_off_a_terminal():
    stream = io.StringIO()
    bar = Progress(4, "verify", stream=stream)
    bar.update()
    bar.close()
    assert stream.getvalue() == ""


def test_progress_as_a_callback_with_a_unit():
    stream = io.StringIO()
    bar = Progress(0, "migrate", enabled=True, unit="rows", stream=stream)
    bar(5, 10)
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
