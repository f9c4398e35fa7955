"""The library face of alloctrace: load a trace file into a Trace."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

from tracer.records import Event, Footer, Frame, Header, Module, Syscall
from tracer.traceformat import TraceData, read_trace


@dataclass
class Trace:
    """A recorded trace: its header, its events in order, and how it ended."""

    data: TraceData

    @property
    def path(self) -> str:
        """The file it was read from."""
        return self.data.path

    @property
    def header(self) -> Header:
        """What was traced, how, and where."""
        return self.data.header

    @property
    def records(self) -> list[Event]:
        """Every event (syscalls, spawns, execs, exits, memory snapshots) in order."""
        return self.data.events

    @property
    def footer(self) -> Footer | None:
        """How the program ended; None when the trace was cut short."""
        return self.data.footer

    @property
    def complete(self) -> bool:
        """False when the trace has no footer (the tracer did not finish it)."""
        return self.data.complete

    def syscalls(self) -> Iterator[Syscall]:
        """The memory syscalls, in order."""
        return self.data.syscalls()

    def frames(self, event: Syscall) -> tuple[Frame, ...]:
        """The call stack that made ``event``, innermost first (empty without stacks)."""
        if event.stack is None:
            return ()
        return self.data.stacks[event.stack].frames

    def module(self, frame: Frame) -> Module | None:
        """The object a frame's address lies in."""
        return None if frame.module is None else self.data.modules.get(frame.module)


def load(path: str | os.PathLike[str]) -> Trace:
    """Read a trace file; raises AlloctraceError (one precise line) if it is malformed."""
    return Trace(read_trace(path))
