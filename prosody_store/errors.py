"""The base class of every exception prosody_store raises on purpose.

This module imports nothing, so that every other module can import it.
Each exception class keeps its other bases too (``ValueError``,
``OSError``), so ``except ValueError`` goes on working.
"""

__all__ = ["Error", "StorageError"]


class Error(Exception):
    """Base of all of prosody_store's own exceptions: ``except prosody_store.Error``."""


class StorageError(Error, OSError):
    """The file system refused what the data directory needs: permission
    denied, a read-only file system, no space left, a path component that is
    not a directory, and the like.  Never "no data": only a missing file or
    directory is that.

    An ``OSError`` with the system's ``errno`` and ``strerror``; ``filename``
    is always text (``os.fsdecode``), and ``action`` says what could not be
    done (``"list"``, ``"access"``, ``"read"``, ``"write"``...).  ``str()`` is
    one line: ``cannot list /var/lib/prosody/example%2ecom: Permission denied``.
    """

    def __init__(self, errno: int | None, strerror: str, filename: str,
                 action: str = "access") -> None:
        OSError.__init__(self, errno, strerror, filename)
        self.action = action

    def __str__(self) -> str:
        return f"cannot {self.action} {self.filename}: {self.strerror}"

    def __reduce__(self) -> "tuple[type[StorageError], tuple[int | None, str | None, str, str]]":
        return (type(self), (self.errno, self.strerror, self.filename, self.action))
