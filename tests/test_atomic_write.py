"""``datamanager.atomic_write``: the store's crash-safe whole-file write, public."""
from __future__ import annotations

import os
import stat

import pytest

from prosody_store.datamanager import TEMP_PREFIX, atomic_write


def test_writes_the_chunks(tmp_path):
    target = tmp_path / "out.jsonl"
    atomic_write(target, iter([b"one\n", b"", b"two\n"]))
    assert target.read_bytes() == b"one\ntwo\n"
    assert os.listdir(tmp_path) == ["out.jsonl"]


def test_replaces_keeping_the_mode(tmp_path):
    target = tmp_path / "private"
    target.write_bytes(b"old")
    target.chmod(0o600)
    atomic_write(str(target), [b"new"], durable=False)
    assert target.read_bytes() == b"new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_a_failing_source_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "data"
    target.write_bytes(b"old")

    def chunks():
        yield b"half of the new"
        raise RuntimeError("the source broke")

    with pytest.raises(RuntimeError):
        atomic_write(target, chunks())
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["data"]


def test_a_relative_name_in_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    atomic_write("here.txt", [b"x"])
    assert (tmp_path / "here.txt").read_bytes() == b"x"
    assert not [n for n in os.listdir(tmp_path) if n.startswith(TEMP_PREFIX)]


def test_a_missing_directory_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        atomic_write(tmp_path / "nope" / "file", [b"x"])
