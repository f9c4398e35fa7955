"""What classification produces (Classified) and the per-process state it replays."""

from __future__ import annotations

from dataclasses import dataclass, field

from analyzers.addrspace import AddressSpace
from tracer.records import Syscall

CATEGORIES = ("loader", "allocator", "thread-stack", "runtime", "user", "other")


# Not frozen (one is built per event): a frozen dataclass sets each field through
# object.__setattr__, 2.6 us against 0.5 us for these ten fields (measured). Treat it as
# read-only all the same; it hashes by value, as it did frozen.
@dataclass(slots=True, unsafe_hash=True)
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
    spans: dict[str, tuple[int, int]] = field(default_factory=dict)  # object -> mapped span
    libraries: set[str] = field(default_factory=set)  # file names of the objects mapped
    seen_mmap: bool = False
    brk_calls: int = 0
    phase: str = "startup"  # from the tracer's Phase records, when the trace has them
    loader_done: bool = False  # ld.so unmapped ld.so.cache: start-up loading is over
    static: bool = False  # no PT_INTERP: libc's own start-up stands in for ld.so
    # allocator's answer, kept until another object is mapped (it is asked for at every call)
    _allocator: str | None = field(default=None, init=False, repr=False, compare=False)

    def add_library(self, name: str) -> None:
        """Note that an object whose file name is ``name`` was mapped."""
        if name not in self.libraries:
            self.libraries.add(name)
            self._allocator = None

    def forget_spans(self, start: int, end: int, *, overlapping: bool = False) -> None:
        """Drop the spans inside [start, end) (or, ``overlapping``, any that meet it): an object
        unmapped (ld.so.cache, dlclose) must not claim what is mapped there later."""
        if overlapping:
            gone = [p for p, (lo, hi) in self.spans.items() if lo < end and start < hi]
        else:
            gone = [p for p, (lo, hi) in self.spans.items() if start <= lo and hi <= end]
        for path in gone:
            del self.spans[path]

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
        return "glibc"
