"""Every exception class of prosody_store derives from ``prosody_store.Error``."""
from __future__ import annotations

import importlib
import inspect
import pkgutil


import prosody_store


def public_exception_classes() -> list[type]:
    found = {}
    for info in pkgutil.walk_packages(prosody_store.__path__, "prosody_store."):
        if info.name.rpartition(".")[2].startswith("_"):
            continue
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if (not name.startswith("_") and inspect.isclass(obj) and issubclass(obj, BaseException)
                    and obj.__module__.startswith("prosody_store")):
                found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return [found[k] for k in sorted(found)]


def test_there_are_exception_classes():
    names = {cls.__name__ for cls in public_exception_classes()}
    assert {"StoreError", "LuaSyntaxError", "JSONDecodeError", "JIDError", "ConfigError",
            "CommandError"} <= names


def qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def test_every_public_exception_is_an_error():
    outside = [qualified(cls) for cls in public_exception_classes()
               if not issubclass(cls, prosody_store.Error)]
    assert outside == []


def test_existing_bases_are_kept():
    from prosody_store.config import ConfigError
    from prosody_store.jid import JIDError
    from prosody_store.json import JSONDecodeError
    from prosody_store.paths import InvalidNameError, NameTooLongError
    for cls in (prosody_store.LuaSyntaxError, JSONDecodeError, JIDError, ConfigError, InvalidNameError):
        assert issubclass(cls, ValueError)
    assert issubclass(NameTooLongError, OSError)
    assert issubclass(prosody_store.CorruptFileError, prosody_store.StoreError)
