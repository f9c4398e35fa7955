"""A process's address space replayed from its syscalls: which owner holds each range."""

from __future__ import annotations

from bisect import bisect_left, bisect_right

import msgspec
from msgspec.structs import replace

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


class AddressSpace:
    """Non-overlapping regions kept sorted by start; new mappings replace what they cover."""

    def __init__(self) -> None:
        self._starts: list[int] = []
        self._regions: list[Region] = []

    def copy(self) -> AddressSpace:
        """A fork's child starts with the same regions."""
        other = AddressSpace()
        other._starts = list(self._starts)
        other._regions = list(self._regions)
        return other

    def find(self, addr: int) -> Region | None:
        """The region containing ``addr``."""
        i = bisect_right(self._starts, addr) - 1
        if i >= 0 and self._regions[i].end > addr:
            return self._regions[i]
        return None

    def overlapping(self, start: int, end: int) -> list[Region]:
        """Regions that intersect [start, end)."""
        i = max(bisect_right(self._starts, start) - 1, 0)
        out = []
        while i < len(self._regions) and self._regions[i].start < end:
            if self._regions[i].end > start:
                out.append(self._regions[i])
            i += 1
        return out

    def remove(self, start: int, end: int, entered_ns: int | None = None) -> None:
        """Forget [start, end): regions that straddle the edges are cut.

        ``entered_ns``: when the munmap was seen entering. A region whose call was seen
        returning after that is kept: the program cannot have named an address before its mmap
        returned, so that munmap ran first and freed the range the mmap then got. The tracer
        reports the stops of threads stopped at once in its waitpid order, not the kernel's,
        so such a munmap can be recorded after the mmap.
        """
        if end <= start:
            return
        i = bisect_right(self._starts, start) - 1
        if (
            i >= 0
            and self._starts[i] == start
            and self._regions[i].end == end
            and (entered_ns is None or self._regions[i].made_ns <= entered_ns)
        ):
            # The whole of one region (munmap undoing its mmap): nothing else to cut.
            del self._starts[i], self._regions[i]
            return
        i = max(i, 0)
        keep_before: list[Region] = []
        j = i
        while j < len(self._regions) and self._regions[j].start < end:
            region = self._regions[j]
            if entered_ns is not None and region.made_ns > entered_ns:
                keep_before.append(region)
            elif region.end > start:
                if region.start < start:
                    keep_before.append(replace(region, end=start))
                if region.end > end:
                    keep_before.append(replace(region, start=end))
            else:
                keep_before.append(region)
            j += 1
        self._regions[i:j] = keep_before
        self._starts[i:j] = [r.start for r in keep_before]

    def add(self, region: Region) -> None:
        """Map ``region``, replacing whatever it covers (as mmap with MAP_FIXED does)."""
        if region.end <= region.start:
            return
        i = bisect_left(self._starts, region.start)
        if (i == len(self._starts) or self._starts[i] >= region.end) and (
            i == 0 or self._regions[i - 1].end <= region.start
        ):
            # Nothing mapped there (the usual case): nothing to cut.
            self._starts.insert(i, region.start)
            self._regions.insert(i, region)
            return
        self.remove(region.start, region.end)
        i = bisect_left(self._starts, region.start)
        self._starts.insert(i, region.start)
        self._regions.insert(i, region)

    def reprotect(self, start: int, end: int, prot: int) -> None:
        """mprotect: the covered parts keep their owner and take the new protection."""
        for region in self.overlapping(start, end):
            lo, hi = max(region.start, start), min(region.end, end)
            self.add(replace(region, start=lo, end=hi, prot=prot))
