"""The progress bar of every long command (export, import, migrate, ...)."""
from __future__ import annotations

import sys
import time
from typing import TextIO

WIDTH = 30
"""Characters of the bar itself."""

INTERVAL = 0.1
"""Seconds between two redraws (the last one is always drawn)."""


class Progress:
    """A one-line progress bar on stderr: ``label [#####     ]  17%``.

    With ``unit`` ``"bytes"`` or ``"rows"`` the line also shows the amount
    done and the rate (``12.3/45.6 MB  1.2 MB/s``).  Drawn only when
    ``enabled`` (default: when stderr is a terminal, so never in cron), at
    most every :data:`INTERVAL` seconds; :meth:`close` clears the line.

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
        self._last = 0.0
        self._drawn = False

    def update(self, done: int | None = None, step: int = 1) -> None:
        """Set the amount done, or add ``step`` to it; redraw if it is time."""
        self.done = self.done + step if done is None else done
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last < INTERVAL and self.done < self.total:
            return
        self._last = now
        self._draw(now)

    def __call__(self, done: int, total: int) -> None:
        self.total = total
        self.update(done)

    def _draw(self, now: float) -> None:
        frac = min(self.done / self.total, 1.0) if self.total > 0 else 1.0
        bar = "#" * int(frac * WIDTH)
        line = f"\r{self.label} [{bar:<{WIDTH}}] {frac:4.0%}{self._amount(now)}"
        self.stream.write(line)
        self.stream.flush()
        self._drawn = True

    def _amount(self, now: float) -> str:
        """``  done/total unit  rate  `` for bars with a unit, else nothing (the
        trailing blanks cover the end of a longer previous line)."""
        rate = self.done / max(now - self._start, 1e-9)
        if self.unit == "bytes":
            return (f"  {self.done / 1e6:,.1f}/{self.total / 1e6:,.1f} MB  "
                    f"{rate / 1e6:,.1f} MB/s  ")
        if self.unit == "rows":
            return f"  {self.done:,}/{self.total:,} rows  {rate:,.0f} rows/s  "
        return ""

    def close(self) -> None:
        """Clear the bar's line (if it was drawn)."""
        if self._drawn:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
