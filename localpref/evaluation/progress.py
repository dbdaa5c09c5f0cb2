"""A one-line progress bar with the time left, on stderr.

On a terminal the line is redrawn in place; in a log file (``nohup``) a full line is written at
most every ``log_every`` seconds, so the log stays short. Rows found already done (resumed) are
counted as done but do not enter the speed estimate.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

#: Units of real work before the bar estimates the time left (fewer if the run has fewer).
ESTIMATE_AFTER = 3


def format_duration(seconds: float) -> str:
    """``1h 02m``, ``3m 05s`` or ``42s``."""
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


class Progress:
    """Counts finished units of work and shows the bar, the rate and the time left."""

    def __init__(
        self,
        total: int,
        *,
        label: str = "eval",
        stream: TextIO | None = None,
        enabled: bool = True,
        width: int = 24,
        log_every: float = 15.0,
    ) -> None:
        self.total = total
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.width = width
        self.log_every = log_every
        self.done = 0
        self.worked = 0
        self.started = time.perf_counter()
        self._last_draw = 0.0
        self._interactive = bool(getattr(self.stream, "isatty", lambda: False)())
        self._drawn = False

    def skip(self, count: int = 1) -> None:
        """Units found finished already (not timed)."""
        self.done += count

    def advance(self, note: str = "") -> None:
        """One unit of real work finished."""
        self.done += 1
        self.worked += 1
        self._draw(note)

    def seconds_left(self) -> float | None:
        """Estimated seconds to finish, from the units worked so far; None before
        :data:`ESTIMATE_AFTER` of them (the first few carry the start's costs and come in a
        burst when several run at once: a calibration's first estimate said 39 minutes for a
        run that took 12)."""
        if self.worked < min(ESTIMATE_AFTER, self.total - (self.done - self.worked)):
            return None
        per_unit = (time.perf_counter() - self.started) / self.worked
        return per_unit * max(self.total - self.done, 0)

    def line(self, note: str = "") -> str:
        """The progress line as text."""
        fraction = self.done / self.total if self.total else 1.0
        filled = int(round(fraction * self.width))
        bar = "#" * filled + "-" * (self.width - filled)
        left = self.seconds_left()
        eta = "ETA --" if left is None else f"ETA {format_duration(left)}"
        elapsed = format_duration(time.perf_counter() - self.started)
        text = (f"{self.label} [{bar}] {self.done}/{self.total} {fraction:4.0%}  "
                f"{elapsed} elapsed, {eta}")
        return f"{text}  {note}" if note else text

    def _draw(self, note: str) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        finished = self.done >= self.total
        if self._interactive:
            if now - self._last_draw < 0.1 and not finished:
                return
            self.stream.write("\r\x1b[2K" + self.line(note)[:200])
            self._drawn = True
        else:
            if now - self._last_draw < self.log_every and not finished:
                return
            self.stream.write(self.line(note) + "\n")
        self._last_draw = now
        self.stream.flush()

    def close(self) -> None:
        """End the line on a terminal."""
        if self.enabled and self._interactive and self._drawn:
            self.stream.write("\n")
            self.stream.flush()
