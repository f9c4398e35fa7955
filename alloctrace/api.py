"""The library face of alloctrace: load a trace file into a Trace."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field

from analyzers.symbols import ResolvedFrame, Symbolizer
from tracer.records import Event, Footer, Frame, Header, Module, Syscall
from tracer.traceformat import TraceData, read_trace

_SYMBOLIZER: Symbolizer | None = None


def _symbolizer() -> Symbolizer:
    """One Symbolizer for the whole process: symbol tables are shared between traces."""
    global _SYMBOLIZER  # noqa: PLW0603 - a lazily built, process-wide cache
    if _SYMBOLIZER is None:
        _SYMBOLIZER = Symbolizer()
    return _SYMBOLIZER


@dataclass
class Trace:
    """A recorded trace: its header, its events in order, and how it ended."""

    data: TraceData
    _resolved: dict[int, tuple[ResolvedFrame, ...]] = field(
        default_factory=dict, init=False, repr=False
    )

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

    def frames(self, event: Syscall) -> tuple[ResolvedFrame, ...]:
        """The call stack that made ``event``, innermost first, with names (empty without stacks).

        Each frame has ``object`` (path), ``function`` (None when no symbol covers it),
        ``offset`` (in the function, else in the object), ``address`` (pc - bias), ``pc`` and
        ``how`` it was found (regs, cfi, fp, scan).
        """
        if event.stack is None:
            return ()
        resolved = self._resolved.get(event.stack)
        if resolved is None:
            stack = self.data.stacks.get(event.stack)
            if stack is None:
                return ()
            resolved = _symbolizer().resolve_all(stack.frames, self.data.modules)
            self._resolved[event.stack] = resolved
        return resolved

    def raw_frames(self, event: Syscall) -> tuple[Frame, ...]:
        """The recorded frames of ``event`` (pc, module id, how), without names."""
        if event.stack is None or event.stack not in self.data.stacks:
            return ()
        return self.data.stacks[event.stack].frames

    def module(self, frame: Frame | ResolvedFrame) -> Module | None:
        """The object a frame's address lies in."""
        return None if frame.module is None else self.data.modules.get(frame.module)


def load(path: str | os.PathLike[str]) -> Trace:
    """Read a trace file; raises AlloctraceError (one precise line) if it is malformed."""
    return Trace(read_trace(path))
