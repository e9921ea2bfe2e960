"""Progress on stderr: a redrawn bar on a terminal, plain lines anywhere else."""

from __future__ import annotations

import shutil
import sys
import time
from typing import TextIO

BAR_MIN_WIDTH = 10
BAR_MAX_WIDTH = 30
LABEL_MAX = 32
REDRAW_SECONDS = 0.1


def human_size(count: float) -> str:
    """Return a byte count for people: 512 B, 1.5 KiB, 27.0 MiB, 1.2 GiB."""
    if count < 1024:
        return f"{int(count)} B"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        count /= 1024
        if count < 1024 or unit == "TiB":
            break
    return f"{count:.1f} {unit}"


def human_duration(seconds: float) -> str:
    """Return a duration for people: 0.4 s, 12 s, 3 min 05 s, 2 h 01 min."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def is_terminal(stream: TextIO) -> bool:
    """Tell whether ``stream`` is a terminal (so a bar can be redrawn on it)."""
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or closed
        return False


class Progress:
    """Show how far one transfer or conversion has come.

    ``unit="bytes"`` shows sizes and speed; ``unit="percent"`` shows a 0-100
    value such as a job's progress. On a terminal the bar is redrawn in place
    (at most every 0.1 s); elsewhere nothing is drawn and ``finish`` writes
    one plain line, so logs stay readable.
    """

    def __init__(
        self,
        label: str,
        total: int | None,
        *,
        unit: str = "bytes",
        stream: TextIO | None = None,
    ) -> None:
        self.label = label
        self.total = total
        self.unit = unit
        self.stream = stream if stream is not None else sys.stderr
        self.tty = is_terminal(self.stream)
        self.done = 0
        self._done_before = 0  # done by an earlier run (a resumed upload): not this one's speed
        self.detail = ""  # shown after a percent bar, e.g. a job's status
        self._started = time.monotonic()
        self._moved_at = self._started
        self._drawn_at = 0.0
        self._drawn = False
        self._closed = False

    def update(self, done: int) -> None:
        """Record that ``done`` units are complete and redraw if it is time."""
        if done != self.done:
            self._moved_at = time.monotonic()
        self.done = done
        if self.tty and time.monotonic() - self._drawn_at >= REDRAW_SECONDS:
            self._draw()

    def resume_from(self, done: int) -> None:
        """Start from ``done`` units that an earlier run completed; speed counts only the rest."""
        self._done_before = done
        self._started = self._moved_at = time.monotonic()
        self.update(done)

    def note(self, text: str) -> None:
        """Write a line of text without garbling the bar."""
        if self.tty and self._drawn:
            self.stream.write("\r\x1b[K")
        self.stream.write(text + "\n")
        if self.tty and self._drawn:
            self._draw()
        self.stream.flush()

    def finish(self, summary: str | None = None) -> None:
        """Complete the bar (or, off a terminal, write ``label: summary``)."""
        if self._closed:
            return
        self._closed = True
        if self.tty:
            if self.total is not None:
                self.done = self.total
            self._draw()
            self.stream.write("\n")
        elif summary:
            self.stream.write(f"{self.label}: {summary}\n")
        self.stream.flush()

    def abort(self) -> None:
        """Leave the bar where it stopped and move to a new line."""
        if self._closed:
            return
        self._closed = True
        if self.tty and self._drawn:
            self.stream.write("\n")
            self.stream.flush()

    @property
    def elapsed(self) -> float:
        """Return the seconds since the bar was made."""
        return time.monotonic() - self._started

    def summary(self) -> str:
        """Return what was done, e.g. "27.0 MiB in 3.1 s (8.7 MiB/s)"; a resumed run says so."""
        if self.unit != "bytes":
            return f"{self.done}% in {human_duration(self.elapsed)}"
        moved = self.done - self._done_before
        resumed = f" (resumed at {human_size(self._done_before)})" if self._done_before else ""
        return f"{human_size(moved)} in {human_duration(self.elapsed)} ({self._rate()}){resumed}"

    def _rate(self) -> str:
        # Up to the last progress, so waiting for the server's answer does not count.
        moved = self.done - self._done_before
        return human_size(moved / max(self._moved_at - self._started, 1e-3)) + "/s"

    def render(self, width: int) -> str:
        """Return the bar's line for a terminal ``width`` columns wide."""
        if self.unit == "bytes":
            rate = self._rate()
            if self.total:
                figures = f"{human_size(self.done)} / {human_size(self.total)}  {rate}"
            else:
                figures = f"{human_size(self.done)}  {rate}"
        else:
            figures = self.detail
        fraction = min(max(self.done / self.total, 0.0), 1.0) if self.total else None
        percent = f"{int(fraction * 100):3d}%" if fraction is not None else ""
        label = self.label if len(self.label) <= LABEL_MAX else self.label[: LABEL_MAX - 1] + "…"
        bar_width = min(BAR_MAX_WIDTH, width - len(label) - len(percent) - len(figures) - 8)
        bar = ""
        if fraction is not None and bar_width >= BAR_MIN_WIDTH:
            filled = round(bar_width * fraction)
            bar = "[" + "#" * filled + "-" * (bar_width - filled) + "]"
        line = "  ".join(part for part in (label, bar, percent, figures) if part)
        return line[: max(width - 1, 1)]

    def _draw(self) -> None:
        width = shutil.get_terminal_size((80, 24)).columns
        self.stream.write("\r\x1b[K" + self.render(width))
        self.stream.flush()
        self._drawn = True
        self._drawn_at = time.monotonic()
