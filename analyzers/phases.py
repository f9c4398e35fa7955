"""Phases of each process: ``startup`` (exec until main), ``main``, ``exit`` (after exit starts).

The tracer's Phase records (breakpoints on main and exit) decide where they exist: the
classifier follows them as it replays the events. Traces without them (an older trace, an
imported strace log) fall back to stacks, here: the first event with ``main`` on its stack
starts ``main``; an event made under ``exit`` or the exit handlers starts ``exit``. Upfront cost
is what happens in ``startup``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from analyzers.symbols import ResolvedFrame
from tracer.records import Exec, Phase, Syscall
from tracer.traceformat import TraceData

STARTUP, MAIN, EXIT = "startup", "main", "exit"
_EXIT_FUNCTIONS = re.compile(r"exit|__run_exit_handlers|_dl_fini|__libc_atexit|_IO_cleanup")


def has_phase_records(trace: TraceData) -> bool:
    """Did the tracer record where each process reached main and exit?"""
    return any(isinstance(e, Phase) for e in trace.events)


def phases_from_stacks(
    trace: TraceData, frames_of: Callable[[Syscall], Sequence[ResolvedFrame]]
) -> list[str]:
    """The phase of every syscall event, in trace order, told by the stacks alone."""
    current: dict[int, str] = {}
    out: list[str] = []
    # stack id -> (an exit function is on it, main is on it): looked for once per stack, as
    # the frames are the stack's (the classifier decides once per stack too)
    marks: dict[int | None, tuple[bool, bool]] = {}
    for event in trace.events:
        if isinstance(event, Syscall):  # nearly every event: tested first
            phase = current.get(event.pid, STARTUP)
            if phase != EXIT:
                found = marks.get(event.stack)
                if found is None:
                    names = [f.function for f in frames_of(event) if f.function]
                    found = marks[event.stack] = (
                        any(_EXIT_FUNCTIONS.fullmatch(n) for n in names),
                        "main" in names,
                    )
                if found[0]:
                    phase = EXIT
                elif phase == STARTUP and found[1]:
                    phase = MAIN
                current[event.pid] = phase
            out.append(phase)
        elif isinstance(event, Exec):
            current[event.pid] = STARTUP
    return out
