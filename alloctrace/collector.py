"""The cycle collector kept off the objects made by imports at start-up: the CLI's own
(alloctrace/cli.py) and those of a command that loads the tracer or the analyzers.

Such imports create objects that live as long as the process (modules, classes, functions; some
30,000 for typer and the CLI), and the collector's passes over them find nothing: 4-5 ms of every
start, and 4-5 ms more of a record's (measured). So the collector is off while they are made,
and they are then frozen out of its way (enabling it alone would make its next pass walk them
all). Nothing here imports more than the standard library: the CLI pauses it before importing
typer.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


def pause() -> bool:
    """Stop the collector; whether it was running (for :func:`freeze_and_resume`)."""
    running = gc.isenabled()
    gc.disable()
    return running


def freeze_and_resume(running: bool) -> None:
    """Freeze every object made so far out of the collector's way, then restart the collector
    if it was ``running`` before :func:`pause`."""
    gc.freeze()
    if running:
        gc.enable()


@contextlib.contextmanager
def imports_frozen() -> Iterator[None]:
    """:func:`pause`, then :func:`freeze_and_resume` on the way out: for a command's imports."""
    running = pause()
    try:
        yield
    finally:
        freeze_and_resume(running)
