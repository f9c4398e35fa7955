"""Arenas, heaps, segments and stacks: each creation tied to the thread that triggered it.

A glibc arena heap is one 128 MiB PROT_NONE reservation made by the first malloc of a thread
that found no free arena; a jemalloc arena shows as its base block and first extent; a mimalloc
segment is a 32 MiB reservation; a thread stack is the stack + guard reservation made by the
thread that called pthread_create. The creating event's tid says which thread it was for.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from analyzers.addrspace import pages
from analyzers.model import Classified
from tracer.records import Syscall

# (owner, role) of the event that creates each kind of arena.
_KINDS: dict[tuple[str, str], str] = {
    ("glibc", "reserve arena heap"): "glibc arena heap",
    ("jemalloc", "base block"): "jemalloc base block",
    ("jemalloc", "extent"): "jemalloc extent",
    ("jemalloc", "extent or base block"): "jemalloc extent or base block",
    ("mimalloc", "segment"): "mimalloc segment",
    ("mimalloc", "thread data"): "mimalloc thread data",
    ("pymalloc", "arena"): "pymalloc arena",
}

_OWNERS = frozenset(owner for owner, _role in _KINDS)


@dataclass(frozen=True)
class Arena:
    """One reservation an allocator (or nptl) made, and the thread whose work caused it."""

    pid: int
    tid: int
    owner: str
    kind: str
    seq: int
    addr: int
    reserved: int
    phase: str


def arenas(classified: Sequence[Classified]) -> list[Arena]:
    """Every arena, heap, segment and thread stack created in the trace, in order."""
    out: list[Arena] = []
    # tid -> the glibc heap reservation its last glibc call made
    heaps: dict[int, Arena] = {}
    for c in classified:
        if c.category != "thread-stack" and c.owner not in _OWNERS:
            continue  # most calls: the program's own, the loader's
        e = c.event
        heap = heaps.pop(e.tid, None) if c.owner == "glibc" else None
        if heap is not None and c.role == "align arena heap" and _whole(e, heap):
            # alloc_new_heap first tries a heap at the address after the last one and unmaps
            # it at once when it is not aligned: the reservation it makes next is the heap.
            out.remove(heap)
            continue
        if e.syscall != "mmap" or e.result is None:
            continue
        if c.category == "thread-stack":
            kind = "thread stack"
        else:
            found = _KINDS.get((c.owner, c.role))
            if found is None:
                continue
            kind = found
        arena = Arena(e.pid, e.tid, c.owner, kind, e.seq, e.result, e.length or 0, c.phase)
        out.append(arena)
        if kind == "glibc arena heap":
            heaps[e.tid] = arena
    return out


def _whole(munmap: Syscall, arena: Arena) -> bool:
    """Does ``munmap`` unmap all of ``arena``'s reservation?"""
    return munmap.syscall == "munmap" and (munmap.addr, pages(munmap.length)) == (
        arena.addr,
        pages(arena.reserved),
    )
