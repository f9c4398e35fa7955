"""The live status line: elapsed time, events, processes and threads, on the terminal's last row.

The traced program writes to the same terminal, so the line must never land inside its
output. Like apt's progress bar, the display reserves the bottom row with a scroll region
(DECSTBM): the program's lines scroll above it, and each redraw saves the cursor, paints the
bottom row and restores the cursor, in one write. It is shown only when stderr is a terminal,
redrawn four times a second from a background thread (the tracer's loop is never asked to do
anything), and cleared, with the scroll region restored, when the run ends.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tracer.session import Progress

_INTERVAL_S = 0.25


def format_progress(progress: Progress) -> str:
    """``alloctrace: 3.2 s · 12,034 events · 2 processes · 9 threads``."""
    plural = "" if progress.processes == 1 else "es"
    threads = "" if progress.threads == 1 else "s"
    return (
        f"alloctrace: {progress.elapsed_ns / 1e9:.1f} s · {progress.events:,} events · "
        f"{progress.processes} process{plural} · {progress.threads} thread{threads}"
    )


class LiveStatus:
    """A context manager drawing ``read()``'s progress on the bottom row of a terminal."""

    def __init__(self, read: Callable[[], Progress], fd: int = 2) -> None:
        self._read = read
        self._fd = fd
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._refresh, name="alloctrace-status", daemon=True)
        self._rows = 0

    def _write(self, text: str) -> None:
        try:
            os.write(self._fd, text.encode())
        except OSError:  # the terminal went away: stop drawing
            self._stop.set()

    def _size(self) -> tuple[int, int]:
        size = os.get_terminal_size(self._fd)
        return size.lines, size.columns

    def __enter__(self) -> LiveStatus:
        self._rows, _ = self._size()
        if self._rows < 2:
            return self
        # A fresh line for the program, then the scroll region above the bottom row.
        self._write(f"\n\x1b[1A\x1b7\x1b[1;{self._rows - 1}r\x1b8")
        self._thread.start()
        return self

    def _refresh(self) -> None:
        while not self._stop.wait(_INTERVAL_S):
            rows, columns = self._size()
            if rows != self._rows:  # the terminal was resized: move the region with it
                self._rows = rows
                self._write(f"\x1b7\x1b[1;{rows - 1}r\x1b8")
            line = format_progress(self._read())[: max(columns - 1, 0)]
            self._write(f"\x1b7\x1b[{rows};1H\x1b[2K{line}\x1b8")

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._rows < 2:
            return
        self._stop.set()
        self._thread.join()
        # Clear the bottom row and give the whole screen back to scrolling.
        self._write(f"\x1b7\x1b[{self._rows};1H\x1b[2K\x1b[r\x1b8")


def live_status(enabled: bool) -> Callable[[Callable[[], Progress]], LiveStatus] | None:
    """The watcher for tracer.recording when a live status is wanted and stderr is a terminal."""
    if not enabled or not os.isatty(2) or os.environ.get("TERM") == "dumb":
        return None
    return LiveStatus
