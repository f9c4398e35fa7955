"""What classification produces (Classified) and the per-process state it replays."""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec

from analyzers.addrspace import AddressSpace
from tracer.records import Syscall

CATEGORIES = ("loader", "allocator", "thread-stack", "runtime", "user", "other")


# A msgspec Struct, like Syscall: one is built per event, in C (0.16 us for these ten fields,
# against 0.47 us for a slotted dataclass and 2.6 us for a frozen one; measured). gc=False: it
# holds a Syscall and strings, none of which can lead back to it.
class Classified(msgspec.Struct, frozen=True, gc=False):
    """A syscall with its classification and the reason that decided it."""

    event: Syscall
    category: str
    owner: str
    role: str
    reason: str
    decided_by: str  # "stack" | "region" | "heuristic"
    object: str | None = None  # the file a loader call maps, else the decider's object
    function: str | None = None  # the decider frame's function
    segment: str | None = None  # loader calls: align, span, text, rodata, data, bss, relro, gap
    phase: str = "main"  # startup | main | exit (analyzers/phases.py)


@dataclass
class ProcessState:
    """What classification remembers about one process while replaying its events."""

    pid: int
    exe: str = ""
    space: AddressSpace = field(default_factory=AddressSpace)
    spans: dict[str, tuple[int, int]] = field(default_factory=dict)  # object -> mapped span
    libraries: set[str] = field(default_factory=set)  # file names of the objects mapped
    seen_mmap: bool = False
    brk_calls: int = 0
    phase: str = "startup"  # the phase of the call being classified (analyzers/phases.py)
    loader_done: bool = False  # ld.so unmapped ld.so.cache: start-up loading is over
    static: bool = False  # no PT_INTERP: libc's own start-up stands in for ld.so
    static_musl: bool = False  # static, and the libc it carries is musl's
    # ld.so's reservation for an object whose p_align exceeds the page (start, end, index of
    # its classified call), until the object's first segment is mapped into it
    align: tuple[int, int, int] | None = None
    # allocator's answer, kept until another object is mapped (it is asked for at every call)
    _allocator: str | None = field(default=None, init=False, repr=False, compare=False)

    def add_library(self, name: str) -> None:
        """Note that an object whose file name is ``name`` was mapped."""
        if name not in self.libraries:
            self.libraries.add(name)
            self._allocator = None

    def forget_spans(self, start: int, end: int, *, overlapping: bool = False) -> None:
        """[start, end) was unmapped: an object unmapped (ld.so.cache, dlclose) must not claim
        what is mapped there later. Spans inside it go, spans it cuts at an edge shrink (the
        excess of an alignment reservation); ``overlapping``: any span meeting it goes."""
        for path, (lo, hi) in list(self.spans.items()):
            if hi <= start or end <= lo:
                continue
            if overlapping or (start <= lo and hi <= end):
                del self.spans[path]
            elif start <= lo:
                self.spans[path] = (end, hi)
            elif hi <= end:
                self.spans[path] = (lo, start)

    def loading_span(self, addr: int) -> bool:
        """Is ``addr`` inside the span of an object the loader mapped?"""
        return any(start <= addr < end for start, end in self.spans.values())

    def has_library(self, prefix: str) -> bool:
        """Has an object whose file name starts with ``prefix`` been mapped?"""
        return any(name.startswith(prefix) for name in self.libraries)

    @property
    def allocator(self) -> str:
        """The malloc the mapped objects suggest (for judging calls without stacks)."""
        if self._allocator is None:
            self._allocator = self._find_allocator()
        return self._allocator

    def _find_allocator(self) -> str:
        for prefix, name in (
            ("libjemalloc", "jemalloc"),
            ("libtcmalloc", "tcmalloc"),
            ("libmimalloc", "mimalloc"),
            ("ld-musl", "musl"),
        ):
            if self.has_library(prefix):
                return name
        return "musl" if self.static_musl else "glibc"
