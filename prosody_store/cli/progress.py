"""The progress bar of every long command (export, import, migrate, ...)."""
from __future__ import annotations

import sys
import time
from typing import Sequence, TextIO

from prosody_store.datamanager import DataManager, StoreFile

WIDTH = 30
"""Characters of the bar itself."""

INTERVAL = 0.25
"""Seconds between two redraws: at most four a second, however often it is updated."""


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


class Progress:
    """A one-line progress bar on stderr, the same for every long command::

        export [#########                     ]  31%  12.3/39.6 MB  4.1 MB/s  0:00:06 left

    ``unit`` ``"bytes"`` counts megabytes, ``"rows"`` rows, None files or
    items.  Drawn only when ``enabled`` (default: when stderr is a terminal,
    so never in cron), at most every :data:`INTERVAL` seconds; :meth:`close`
    clears the line.  The time left is the rate so far applied to what is
    left.

    Either count with :meth:`update` (``total`` known up front), or pass the
    bar as a ``progress(done, total)`` callback: calling it sets both.
    """

    def __init__(self, total: int, label: str, enabled: bool | None = None, *,
                 unit: str | None = None, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.total = total
        self.label = label
        self.unit = unit
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.done = 0
        self._start = time.monotonic()
        self._last = -INTERVAL
        self._drawn = False

    def update(self, done: int | None = None, step: int = 1) -> None:
        """Set the amount done, or add ``step`` to it; redraw if it is time."""
        self.done = self.done + step if done is None else done
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last < INTERVAL:
            return
        self._last = now
        self._draw(now)

    def __call__(self, done: int, total: int) -> None:
        self.total = total
        self.update(done)

    def line(self, now: float) -> str:
        """The text of the bar at time ``now`` (``time.monotonic()``)."""
        frac = min(self.done / self.total, 1.0) if self.total > 0 else 0.0
        bar = "#" * int(frac * WIDTH)
        elapsed = max(now - self._start, 1e-9)
        rate = self.done / elapsed
        if self.unit == "bytes":
            amount = f"{self.done / 1e6:,.1f}/{self.total / 1e6:,.1f} MB  {rate / 1e6:,.1f} MB/s"
        elif self.unit == "rows":
            amount = f"{self.done:,}/{self.total:,} rows  {rate:,.0f} rows/s"
        else:
            amount = f"{self.done:,}/{self.total:,}"
        left = ""
        if 0 < self.done < self.total:
            left = f"  {_duration((self.total - self.done) / rate)} left"
        return f"{self.label} [{bar:<{WIDTH}}] {frac:4.0%}  {amount}{left}"

    def _draw(self, now: float) -> None:
        # Clear to the end of the line: the previous line may have been longer.
        self.stream.write("\r" + self.line(now) + "\x1b[K")
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        """Clear the bar's line (if it was drawn)."""
        if self._drawn:
            self.stream.write("\r\x1b[K")
            self.stream.flush()


def file_sizes(dm: DataManager, files: Sequence[StoreFile]) -> list[int]:
    """The size of each store file (0 for one gone since it was listed), for a
    bar that counts the bytes of a directory's files rather than the files."""
    return [dm.file_size(f.user, f.host, f.store, f.ext) or 0 for f in files]
