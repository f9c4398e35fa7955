"""``alloctrace report TRACE --stacks``: every event, strace style, with its named call stack.

    1234  mmap(NULL, 8192, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = 0x7f2a...
     > ld-linux-x86-64.so.2(__minimal_malloc+0xa1) [0x20ca3]

Like ``strace -k``, one `` > object(function+offset) [address in the object]`` line per frame,
innermost first; unlike it, functions are named from debug symbols and each frame may end with
how it was found when that was a guess (``fp``, ``scan``).
"""

from __future__ import annotations

import errno
import json
import os
import signal
from collections.abc import Iterator

from alloctrace.api import Trace
from analyzers.symbols import ResolvedFrame
from tracer import flags
from tracer.records import Event, Exec, Exit, Memory, Spawn, Syscall

_PR_SET_VMA = 0x53564D41  # include/uapi/linux/prctl.h


def _hex(value: int | None) -> str:
    return "NULL" if not value else f"{value:#x}"


def call_text(event: Syscall) -> str:
    """The call as strace writes it: ``name(arguments) = result``."""
    name = event.syscall
    addr = _hex(event.addr)
    length = event.length or 0
    if name == "mmap":
        args = (
            f"{addr}, {length}, {flags.prot_names(event.prot or 0)}, "
            f"{flags.map_names(event.flags or 0)}, {event.fd if event.fd is not None else -1}, "
            f"{_hex(event.offset) if event.offset else 0}"
        )
    elif name == "mprotect":
        args = f"{addr}, {length}, {flags.prot_names(event.prot or 0)}"
    elif name == "madvise":
        args = f"{addr}, {length}, {flags.madvise_name(event.advice or 0)}"
    elif name == "munmap":
        args = f"{addr}, {length}"
    elif name == "brk":
        args = addr
    elif name == "mremap":
        args = f"{addr}, {length}, {event.new_length or 0}, {flags.mremap_names(event.flags or 0)}"
        if event.new_addr is not None:
            args += f", {_hex(event.new_addr)}"
    else:  # prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME, addr, len, name)
        label = json.dumps(event.name) if event.name is not None else "NULL"
        args = f"PR_SET_VMA, PR_SET_VMA_ANON_NAME, {addr}, {length}, {label}"
    return f"{name}({args}) = {result_text(event)}"


def result_text(event: Syscall) -> str:
    """``0x7f...``, ``0`` or ``-1 ENOMEM (Cannot allocate memory)``."""
    if event.errno is not None:
        code = errno.errorcode.get(event.errno, str(event.errno))
        return f"-1 {code} ({os.strerror(event.errno)})"
    if event.result is None:
        return "?"
    if event.syscall in ("mmap", "mremap", "brk"):
        return f"{event.result:#x}"
    return str(event.result)


def frame_text(frame: ResolvedFrame) -> str:
    """`` > libc.so.6(sysmalloc+0x3a1) [0x96ec1]`` (plus ``scan``/``fp`` when guessed)."""
    if frame.object is None:
        line = f" > ?() [{frame.pc:#x}]"
    else:
        where = f"{frame.function}+{frame.offset:#x}" if frame.function else ""
        line = f" > {frame.object_name}({where}) [{frame.address or 0:#x}]"
    if frame.how in ("fp", "scan"):
        line += f" ({frame.how})"
    return line


def event_text(event: Event) -> str | None:
    """The line of a non-syscall event (None for those not shown)."""
    if isinstance(event, Spawn):
        what = "thread" if event.how == "thread" else "process"
        return f"{event.parent_tid}  --- {event.how}: new {what} {event.tid} ---"
    if isinstance(event, Exec):
        return f"{event.tid}  --- exec {event.path} {json.dumps(event.argv)} ---"
    if isinstance(event, Exit):
        if event.signal is not None:
            try:
                name = signal.Signals(event.signal).name
            except ValueError:
                name = str(event.signal)
            core = " (core dumped)" if event.core else ""
            return f"{event.tid}  +++ killed by {name}{core} +++"
        return f"{event.tid}  +++ exited with {event.status} +++"
    if isinstance(event, Memory):
        return f"{event.pid}  --- exit snapshot: {len(event.mappings)} mappings ---"
    return None


def report_lines(trace: Trace, stacks: bool = True) -> Iterator[str]:
    """Every event of the trace as text lines, syscalls followed by their frames."""
    for event in trace.records:
        if isinstance(event, Syscall):
            yield f"{event.tid}  {call_text(event)}"
            if stacks:
                for frame in trace.frames(event):
                    yield frame_text(frame)
        else:
            line = event_text(event)
            if line is not None:
                yield line
    if not trace.complete:
        yield "--- the trace is incomplete (no footer: the tracer did not finish it) ---"
