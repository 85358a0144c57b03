"""Progress for the command line: a tqdm bar on a terminal, sparse lines in a log.

:class:`Progress` shows nothing until the first unit of work is done (a
command that fails at once prints its error and no bar).  On a terminal it
is a tqdm bar.  On anything else (a pipe, a file, a service's log) a bar's
redraws would fill the log, so it writes one plain line at most every
``interval`` seconds, and one when the work ends.
"""

from __future__ import annotations

import time
from typing import Any, TextIO

LOG_INTERVAL = 30.0  # seconds between progress lines when the output is not a terminal


class Progress:
    """``update(done, total=None)`` as work advances; ``close()`` (or ``with``) at the end."""

    def __init__(self, desc: str, unit: str, file: TextIO, *, interval: float = LOG_INTERVAL) -> None:
        self.desc = desc
        self.unit = unit
        self.file = file
        self.interval = interval
        self.tty = _isatty(file)
        self.done = 0
        self.total: int | None = None
        self._bar: Any = None
        self._started: float | None = None  # monotonic time of the first unit of work
        self._written = 0.0  # monotonic time of the last line (not a terminal)

    def update(self, done: int, total: int | None = None) -> None:
        """``done`` units of ``total`` (None: unknown) are done."""
        if total is not None:
            self.total = total
        self.done = done
        if done <= 0 and self._started is None:
            return  # nothing done yet: nothing to show
        now = time.monotonic()
        if self._started is None:
            self._started = self._written = now
        if self.tty:
            self._draw()
        elif now - self._written >= self.interval:
            self._line()
            self._written = now

    def close(self) -> None:
        if self._started is None:
            return
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif not self.tty:
            self._line(finished=True)
        self._started = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _draw(self) -> None:
        if self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(desc=self.desc, unit=self.unit, total=self.total, file=self.file)
        if self.total is not None and self._bar.total != self.total:
            self._bar.total = self.total
        self._bar.update(self.done - self._bar.n)

    def _line(self, *, finished: bool = False) -> None:
        assert self._started is not None
        of = f" of {self.total}" if self.total is not None else ""
        elapsed = time.monotonic() - self._started
        when = f"in {elapsed:.1f} s" if finished else f"so far ({elapsed:.0f} s)"
        print(f"{self.desc}: {self.done}{of}{self.unit} {when}", file=self.file, flush=True)


def _isatty(file: TextIO) -> bool:
    try:
        return bool(file.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False
