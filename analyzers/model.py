"""What classification produces (Classified) and the per-process state it replays."""

from __future__ import annotations

from dataclasses import dataclass, field

from analyzers.addrspace import AddressSpace
from tracer.records import Syscall

CATEGORIES = ("loader", "allocator", "thread-stack", "runtime", "user", "other")


@dataclass(frozen=True, slots=True)
class Classified:
    """A syscall with its classification and the reason that decided it."""

    event: Syscall
    category: str
    owner: str
    role: str
    reason: str
    decided_by: str  # "stack" | "region" | "heuristic"
    object: str | None = None  # the file a loader call maps, else the decider's object
    function: str | None = None  # the decider frame's function
    segment: str | None = None  # loader calls: span, text, rodata, data, bss, relro, gap
    phase: str = "main"  # startup | main | exit (analyzers/phases.py)


@dataclass
class ProcessState:
    """What classification remembers about one process while replaying its events."""

    pid: int
    exe: str = ""
    space: AddressSpace = field(default_factory=AddressSpace)
    loading: str | None = None  # the object ld.so is mapping right now
    spans: dict[str, tuple[int, int]] = field(default_factory=dict)  # object -> mapped span
    seen_mmap: bool = False
    brk_calls: int = 0

    @property
    def seen_main_heap(self) -> bool:
        """malloc has grown the main heap (ld.so's own brk(0) is the first brk call)."""
        return self.brk_calls >= 2

    def loading_span(self, addr: int) -> bool:
        """Is ``addr`` inside the span of an object the loader mapped?"""
        return any(start <= addr < end for start, end in self.spans.values())
