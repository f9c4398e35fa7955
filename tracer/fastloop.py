"""The C half of the recording loop (tracer/_fastloop.c), loaded with ctypes.

tracer.session hands the waiting to :class:`FastLoop`: the C code takes the two stops of each
traced memory syscall itself and writes the trace line of a call that needs nothing from Python
(an anonymous mmap, munmap, mprotect, madvise, brk, mremap). Every other stop comes back to
Python, as ``waitpid`` would have returned it. With stacks on, such a call needs nothing from
Python when a walk Python remembered (:meth:`FastLoop.remember`) answers its stack.
"""

from __future__ import annotations

import ctypes
import enum
import functools
import importlib.machinery
import itertools
import os
from collections.abc import Sequence
from pathlib import Path

from tracer import ptrace_adapter as pt
from tracer import seccomp
from tracer.errors import not_built

# Lines written between two returns to Python; the loop returns when less than 512 bytes are
# left (and after 50 ms of stops), so a full buffer holds about 5,000 calls.
_BUFFER_BYTES = 1 << 20
# Thread table slots to start with (grown to the largest tid): the default pid_max is 32768 or
# 4,194,304 (with many CPUs), tids are handed out upwards from 300 and wrap.
_FIRST_TABLE_SIZE = 1 << 16


class Returned(enum.IntEnum):
    """Why fast_run came back (the FAST_* values of _fastloop.c)."""

    STOP = 0  # a stop (or death) for Python: ``tid`` and ``status`` as waitpid gave them
    EXIT_STOP = 1  # a memory syscall's exit stop: ``registers`` filled, ``entry_ns`` set
    FLUSH = 2  # the buffer is full or 50 ms went by: take the lines
    NO_CHILD = 3  # waitpid: no tracee left (ECHILD)
    EINTR = 4  # waitpid was interrupted by a signal for alloctrace itself


class _Context(ctypes.Structure):
    _fields_ = (
        ("t0", ctypes.c_int64),
        ("stacks", ctypes.c_int32),
        ("tid", ctypes.c_int32),
        ("status", ctypes.c_int32),
        ("entry_ns", ctypes.c_int64),
        ("seq", ctypes.c_uint64),
        ("buf", ctypes.c_void_p),
        ("cap", ctypes.c_uint64),
        ("used", ctypes.c_uint64),
        ("regs", ctypes.POINTER(pt.Registers)),
    )
    t0: int
    stacks: int
    tid: int
    status: int
    entry_ns: int
    seq: int
    buf: int
    cap: int
    used: int


def _library_path() -> Path:
    return locate_library(Path(__file__).parent)


def locate_library(here: Path) -> Path:
    """The built C loop in directory ``here``; AlloctraceError when it is not there."""
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        candidate = here / f"_fastloop{suffix}"
        if candidate.exists():
            return candidate
    raise not_built(f"tracer/_fastloop.c in {here}")


def require() -> None:
    """Load the C loop now: AlloctraceError (one line, naming the fix) when it is not built."""
    _library()


@functools.cache
def _library() -> ctypes.CDLL:
    lib = ctypes.CDLL(str(_library_path()))
    lib.fast_new.restype = ctypes.c_void_p
    lib.fast_new.argtypes = (ctypes.c_int32,)
    lib.fast_free.argtypes = (ctypes.c_void_p,)
    lib.fast_add.argtypes = (ctypes.c_void_p, ctypes.c_int32, ctypes.c_int32)
    lib.fast_add.restype = ctypes.c_int
    lib.fast_drop.argtypes = (ctypes.c_void_p, ctypes.c_int32)
    lib.fast_run.argtypes = (ctypes.c_void_p, ctypes.POINTER(_Context))
    lib.fast_run.restype = ctypes.c_int
    lib.fast_modules.argtypes = (
        ctypes.c_void_p, ctypes.c_int32, ctypes.c_uint32, ctypes.POINTER(ctypes.c_uint64),
    )  # fmt: skip
    lib.fast_modules.restype = ctypes.c_int
    lib.fast_forget.argtypes = (ctypes.c_void_p, ctypes.c_int32)
    lib.fast_forget.restype = None
    lib.fast_remember.argtypes = (
        ctypes.c_void_p, ctypes.c_int32, ctypes.c_uint64, ctypes.c_uint64, ctypes.c_uint64,
        ctypes.c_uint32, ctypes.POINTER(ctypes.c_uint32), ctypes.POINTER(ctypes.c_uint64),
    )  # fmt: skip
    lib.fast_remember.restype = ctypes.c_int
    lib.fast_watch_signals.restype = None
    lib.fast_unwatch_signals.restype = None
    lib.fast_exec.argtypes = (
        ctypes.c_int, ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p,
        ctypes.POINTER(ctypes.c_char_p), ctypes.POINTER(ctypes.c_char_p),
    )  # fmt: skip
    lib.fast_exec.restype = None
    return lib


class FilteredExec:
    """An execve under a seccomp filter, every argument laid out in C before fork.

    The forked child calls :meth:`run` once the tracer may seize it: from there on nothing in
    Python runs in the child (see fast_exec in tracer/_fastloop.c for why).
    """

    def __init__(
        self, path: str, argv: Sequence[str], env: dict[str, str], bpf: seccomp.Filter
    ) -> None:
        def strings(items: Sequence[bytes]) -> ctypes.Array[ctypes.c_char_p]:
            return (ctypes.c_char_p * (len(items) + 1))(*items, None)

        self._lib = _library()
        self._path = os.fsencode(path)
        self._argv = strings([os.fsencode(a) for a in argv])
        self._envp = strings([os.fsencode(k) + b"=" + os.fsencode(v) for k, v in env.items()])
        self._bpf = bpf  # alive as long as this: the C code reads it

    def run(self, go_fd: int, err_fd: int) -> None:
        """Wait for the tracer's go on ``go_fd``, install the filter, exec. Returns only if
        ctypes could not call the C function; failures are reported on ``err_fd`` as
        ``S<errno>`` (filter refused) and ``E<errno>`` (exec failed)."""
        self._lib.fast_exec(go_fd, err_fd, self._bpf.address, self._path, self._argv, self._envp)


class FastLoop:
    """One session's C loop: its thread table, its line buffer and the registers it fills."""

    def __init__(self, t0: int, stacks: bool, registers: pt.Registers) -> None:
        lib = _library()
        table = lib.fast_new(_FIRST_TABLE_SIZE)
        if not table:
            raise MemoryError("no memory for the tracer's thread table")
        self._lib = lib
        self._table: int | None = table
        self._buffer = ctypes.create_string_buffer(_BUFFER_BYTES)
        self.context = _Context(
            t0=t0,
            stacks=int(stacks),
            buf=ctypes.addressof(self._buffer),
            cap=_BUFFER_BYTES,
            regs=ctypes.pointer(registers),
        )
        self._context_ref = ctypes.byref(self.context)
        lib.fast_watch_signals()

    def add(self, tid: int, pid: int) -> None:
        """Trace ``tid`` (a thread of process ``pid``) in the C loop."""
        if self._lib.fast_add(self._table, tid, pid) != 0:
            raise MemoryError("no memory for the tracer's thread table")

    def drop(self, tid: int) -> None:
        """``tid`` is gone: its stops go to Python (and a reused tid starts clean)."""
        self._lib.fast_drop(self._table, tid)

    def modules(self, pid: int, intervals: Sequence[tuple[int, int]]) -> None:
        """Process ``pid``'s module map is now ``intervals`` ([start, end), by address): the
        walks remembered for it are forgotten. A call that changes the map comes to Python."""
        flat = (ctypes.c_uint64 * (2 * len(intervals)))(*itertools.chain.from_iterable(intervals))
        if self._lib.fast_modules(self._table, pid, len(intervals), flat) != 0:
            raise MemoryError("no memory for the tracer's module maps")

    def forget(self, pid: int) -> None:
        """Process ``pid`` is gone: drop its module map and remembered walks."""
        self._lib.fast_forget(self._table, pid)

    def remember(
        self, pid: int, rip: int, rsp: int, sid: int, offsets: Sequence[int], words: Sequence[int]
    ) -> None:
        """At a stop of ``pid`` at (rip, rsp) whose stack holds ``words`` at ``offsets`` from
        rsp, the stack is ``sid`` (a walk of tracer.unwind, made in the map given last to
        :meth:`modules`). Not kept when out of memory: those stops then come to Python."""
        n = len(offsets)
        self._lib.fast_remember(
            self._table, pid, rip, rsp, sid, n,
            (ctypes.c_uint32 * n)(*offsets), (ctypes.c_uint64 * n)(*words),
        )  # fmt: skip

    def run(self, seq: int) -> int:
        """Wait and handle stops until one needs Python; ``seq`` is the last sequence number.
        Returns a :class:`Returned` value (a plain int: an enum call per stop costs 1 us)."""
        self.context.seq = seq
        return int(self._lib.fast_run(self._table, self._context_ref))

    def take_lines(self) -> str:
        """The trace lines written since the last call, without the final newline."""
        used = self.context.used
        if not used:
            return ""
        self.context.used = 0
        return ctypes.string_at(self._buffer, used - 1).decode()

    def close(self) -> None:
        """Free the thread table, put Python's signal handlers back in front."""
        if self._table is not None:
            self._lib.fast_unwatch_signals()
            self._lib.fast_free(self._table)
            self._table = None
