"""Typed records of a trace: what the tracer saw, field names as in the trace file.

Every record is a frozen dataclass with a ``kind`` that names it in the file, but for Syscall, the
record of nearly every line: a frozen msgspec Struct, which msgspec decodes straight from the
file and builds in C. Field names are
flat and follow ``man 2``; numbers stay raw (flags as integers, addresses as integers). See
docs/trace-format.md for the contract.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeAlias

import msgspec

Address: TypeAlias = int
Bytes: TypeAlias = int
Nanoseconds: TypeAlias = int

FORMAT_NAME = "alloctrace"
FORMAT_VERSION = 1

# The memory syscalls the tracer records (x86-64 numbers, arch/x86/entry/syscalls/syscall_64.tbl).
MEMORY_SYSCALLS: dict[int, str] = {
    9: "mmap",
    10: "mprotect",
    11: "munmap",
    12: "brk",
    25: "mremap",
    28: "madvise",
    157: "prctl",  # only PR_SET_VMA / PR_SET_VMA_ANON_NAME, which names anonymous mappings
}


@dataclass(frozen=True, slots=True)
class Header:
    """First line: what was traced, how, and on what machine."""

    KIND: ClassVar[str] = "header"
    format: str
    version: int
    program: str
    argv: list[str]
    cwd: str = ""
    # Environment variables that change allocator behaviour (LD_PRELOAD, MALLOC_CONF, ...).
    env: dict[str, str] = field(default_factory=dict)
    allocator: str | None = None
    machine: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    started_at: str = ""
    tracer_version: str = ""
    attached: bool = False


# A msgspec Struct, not a dataclass: there is one per line of a big trace, and msgspec.json
# decodes the lines straight into it, 0.74 us a line against 1.29 us for decoding into a Struct
# and then building a dataclass of these 20 fields (measured). gc=False: it holds only numbers
# and strings, so the cycle collector need not track it. Frozen: it hashes by value, like the
# other records.
class Syscall(msgspec.Struct, frozen=True, gc=False, tag_field="kind", tag="syscall"):
    """One memory syscall: arguments at entry, result at exit.

    ``addr``/``length`` are the first two arguments of every call (for mremap: old_address and
    old_size; for brk: the requested break, no length). ``result`` is the raw return value
    (an address for mmap/mremap/brk, 0 for the others) or None when the call failed, with
    ``errno`` set.
    """

    KIND: ClassVar[str] = "syscall"
    seq: int
    ts_ns: Nanoseconds
    dur_ns: Nanoseconds
    pid: int
    tid: int
    syscall: str
    addr: Address | None = None
    length: Bytes | None = None
    prot: int | None = None
    flags: int | None = None
    fd: int | None = None
    offset: int | None = None
    path: str | None = None
    new_length: Bytes | None = None
    new_addr: Address | None = None
    advice: int | None = None
    name: str | None = None
    result: int | None = None
    errno: int | None = None
    stack: int | None = None

    @property
    def returned_ns(self) -> Nanoseconds:
        """When the tracer saw the call return: the program cannot have named an address the
        call gave before then (analyzers.addrspace.AddressSpace.remove)."""
        return self.ts_ns + self.dur_ns


@dataclass(frozen=True, slots=True)
class Spawn:
    """A new thread (clone with CLONE_THREAD) or process (fork, vfork, clone) was created."""

    KIND: ClassVar[str] = "spawn"
    seq: int
    ts_ns: Nanoseconds
    pid: int
    tid: int
    parent_pid: int
    parent_tid: int
    how: str  # "thread" | "fork" | "vfork" | "clone"


@dataclass(frozen=True, slots=True)
class Exec:
    """A successful execve: the process now runs ``path``."""

    KIND: ClassVar[str] = "exec"
    seq: int
    ts_ns: Nanoseconds
    pid: int
    tid: int
    path: str
    argv: list[str]
    former_tid: int | None = None


@dataclass(frozen=True, slots=True)
class Exit:
    """A thread ended; when ``tid == pid`` and it was the last, the process ended."""

    KIND: ClassVar[str] = "exit"
    seq: int
    ts_ns: Nanoseconds
    pid: int
    tid: int
    status: int | None = None  # exit status, when it exited
    signal: int | None = None  # terminating signal, when killed
    core: bool = False


@dataclass(frozen=True, slots=True)
class Phase:
    """A process entered ``main`` or began to exit (``exit`` was called or main returned).

    The tracer sets a one-shot breakpoint on ``main`` (or the entry point when the executable
    has no symbol for it) at exec, and on ``exit`` once main is reached.
    """

    KIND: ClassVar[str] = "phase"
    seq: int
    ts_ns: Nanoseconds
    pid: int
    tid: int
    phase: str  # "main" | "exit"
    how: str = "breakpoint"  # "breakpoint" on main/exit, "entry" on the ELF entry point


@dataclass(frozen=True, slots=True)
class Module:
    """An ELF object mapped in a process: frames refer to it by ``id``.

    ``bias`` is the load bias (runtime address minus ELF virtual address), so a frame's address
    in the file is ``pc - bias``.
    """

    KIND: ClassVar[str] = "module"
    id: int
    pid: int
    path: str
    start: Address
    end: Address
    bias: Address
    build_id: str | None = None
    seq: int | None = None


@dataclass(frozen=True, slots=True)
class Frame:
    """One frame of a call stack: the instruction pointer, its module and how it was found."""

    pc: Address
    module: int | None  # Module.id, None when no mapped object contains pc
    how: str  # "regs" (the stop's ip), "cfi", "fp" (frame pointer), "scan" (stack scanning)


@dataclass(frozen=True, slots=True)
class Stack:
    """An interned call stack, innermost frame first; events refer to it by ``id``."""

    KIND: ClassVar[str] = "stack"
    id: int
    frames: tuple[Frame, ...]


@dataclass(frozen=True, slots=True)
class Mapping:
    """One line of /proc/PID/smaps with the sizes alloctrace uses (bytes)."""

    start: Address
    end: Address
    perms: str
    offset: int
    path: str
    rss: Bytes = 0
    pss: Bytes = 0
    anonymous: Bytes = 0
    swap: Bytes = 0


@dataclass(frozen=True, slots=True)
class Memory:
    """What was mapped and resident in a process when it exited (from /proc/PID/smaps)."""

    KIND: ClassVar[str] = "memory"
    seq: int
    ts_ns: Nanoseconds
    pid: int
    mappings: tuple[Mapping, ...]


@dataclass(frozen=True, slots=True)
class Footer:
    """Last line: how the traced program ended, and whether the trace is complete."""

    KIND: ClassVar[str] = "footer"
    outcome: str  # "exited" | "killed" | "interrupted" | "detached" | "error"
    duration_ns: Nanoseconds
    events: int
    status: int | None = None
    signal: int | None = None
    message: str | None = None


Event: TypeAlias = Syscall | Spawn | Exec | Exit | Memory | Phase
Record: TypeAlias = Header | Event | Module | Stack | Footer


def field_names(record_type: type[Record] | type[Frame] | type[Mapping]) -> tuple[str, ...]:
    """The fields of a record type, in order (dataclass or, for Syscall, msgspec Struct)."""
    if issubclass(record_type, msgspec.Struct):
        return record_type.__struct_fields__
    return tuple(f.name for f in dataclasses.fields(record_type))
