"""A process's address space replayed from its syscalls: which owner holds each range."""

from __future__ import annotations

import msgspec

from tracer.errors import not_built

try:  # in C (analyzers/_addrspace.c says why); its regions are the Regions below
    from analyzers._addrspace import AddressSpace
except ImportError as exc:  # an install that skipped the C build
    raise not_built("analyzers/_addrspace.c") from exc

__all__ = ["PAGE", "AddressSpace", "Region", "pages"]

PAGE = 4096


def pages(length: int | None) -> int:
    """The bytes a call of ``length`` maps or unmaps: whole pages (the kernel rounds up)."""
    return ((length or 0) + PAGE - 1) & ~(PAGE - 1)


# A msgspec Struct, like Classified: one is built per mapping call. Its fields are numbers and
# strings (gc=False).
class Region(msgspec.Struct, frozen=True, gc=False):
    """A range of addresses created by one classified call, with what it is for."""

    start: int
    end: int
    category: str
    owner: str
    role: str
    object: str | None = None
    prot: int = 0
    # When the call that made it was seen returning (0: unknown). A munmap seen entering before
    # that cannot have removed it (see AddressSpace.remove).
    made_ns: int = 0
