"""Per-process module map: which mapped ELF object (path, bias, build-id) holds an address.

Seeded from /proc/PID/maps at exec (the kernel maps the executable, ld.so and the vDSO), then
kept current from the session's successful mmap/munmap calls, so a stop never reads /proc for
what bookkeeping already knows. A pc in no known object triggers one re-read of the maps
(something mapped before we looked, or by a call we do not trace). Copied on fork.

An object is one loaded instance of a file: ld.so reserves the whole span with its first mmap
(file offset 0), then maps the other segments MAP_FIXED inside it; the kernel maps the
executable and ld.so segment by segment, adjacent. Both become one module. Its load bias comes
from the ELF program headers the first time the module is needed.
"""

from __future__ import annotations

import bisect
import itertools
import struct
from collections.abc import Callable, Iterable

from tracer import elf, procfs

_DELETED = " (deleted)"
_PAGE = 4096

# What tracer.unwind caches per pc: (module id, kind, CFA register, CFA offset, RA offset,
# saved registers as (register, offset from CFA), the full CfiRow or None, lowest and highest
# offset from the CFA that the frame reads).
PcEntry = tuple[int | None, int, int, int, int, tuple[tuple[int, int], ...], object, int, int]
# A remembered walk (tracer.unwind): the reader of the return-address words, their offsets from
# rsp, the words it read, and the walk's result.
Walk = tuple[struct.Struct, tuple[int, ...], tuple[int, ...], tuple[int, ...]]
_layouts = itertools.count(1)


class LoadedModule:
    """One mapped ELF object in one address space (shared by forks: ids stay the same)."""

    __slots__ = ("_bias", "_opened", "end", "id", "map_addr", "map_offset", "obj", "path", "start")

    def __init__(self, module_id: int, path: str, start: int, end: int, offset: int) -> None:
        self.id = module_id
        self.path = path
        self.start = start
        self.end = end
        self.map_addr = start  # the mapping the bias is computed from, and its file offset
        self.map_offset = offset
        self.obj: elf.ElfObject | None = None
        self._opened = False
        self._bias: int | None = None

    def elf(self) -> elf.ElfObject | None:
        """The object's ELF file (opened and cached on first use)."""
        if not self._opened:
            self._opened = True
            path = self.path.removesuffix(_DELETED)
            self.obj = elf.open_elf(path) if path.startswith("/") else None
        return self.obj

    @property
    def bias(self) -> int:
        """Runtime address minus ELF virtual address."""
        if self._bias is None:
            obj = self.elf()
            self._bias = (
                obj.bias_for(self.map_addr, self.map_offset)
                if obj is not None
                else self.map_addr - self.map_offset
            )
        return self._bias

    @property
    def build_id(self) -> str | None:
        """The object's GNU build-id, when it has one and the file could be read."""
        obj = self.elf()
        return None if obj is None else obj.build_id

    def __repr__(self) -> str:
        return f"LoadedModule({self.id}, {self.path!r}, {self.start:#x}-{self.end:#x})"


class ProcessModules:
    """The modules of one address space as sorted, non-overlapping intervals."""

    def __init__(self, pid: int, new_id: Callable[[], int]) -> None:
        self.pid = pid
        self._new_id = new_id
        self._starts: list[int] = []
        self._ivals: list[tuple[int, int, LoadedModule]] = []
        # Per-pc unwinding data (see tracer.unwind); dropped whenever the map changes.
        self.pc_cache: dict[int, PcEntry] = {}
        self.refreshed_misses: set[int] = set()
        self.call_sites: dict[int, bool] = {}  # address → follows a call instruction
        self.walks: dict[tuple[int, int], Walk] = {}  # (rip, rsp) → a remembered walk
        self.generation = 0
        # Names this map's contents: equal in a fork's copy, new at every change. Interned
        # stacks are keyed by it, so equal pcs in different maps are never confused.
        self.layout = next(_layouts)
        self.read_hint = 4096  # bytes of stack the last unwind needed (tracer.unwind)

    # -- lookups ------------------------------------------------------------------------------

    def find(self, addr: int) -> LoadedModule | None:
        """The module mapped at ``addr`` (None when no known ELF object is there)."""
        i = bisect.bisect_right(self._starts, addr) - 1
        if i >= 0:
            _start, end, module = self._ivals[i]
            if addr < end:
                return module
        return None

    def modules(self) -> list[LoadedModule]:
        """Every module with at least one mapped range, by address."""
        seen: dict[int, LoadedModule] = {}
        for _, _, module in self._ivals:
            seen.setdefault(module.id, module)
        return list(seen.values())

    def intervals(self) -> list[tuple[int, int, LoadedModule]]:
        """The mapped ranges (start, end, module), by address."""
        return list(self._ivals)

    # -- changes ------------------------------------------------------------------------------

    def _changed(self) -> None:
        self._starts = [iv[0] for iv in self._ivals]
        self.pc_cache.clear()
        self.refreshed_misses.clear()
        self.call_sites.clear()
        self.walks.clear()
        self.generation += 1
        self.layout = next(_layouts)

    def add_file(self, addr: int, length: int, offset: int, path: str) -> None:
        """A file was mapped at [addr, addr+length) from file ``offset``."""
        if length <= 0:
            return
        end = (addr + length + _PAGE - 1) & ~(_PAGE - 1)
        # Part of an object already here (ld.so's segments inside its reservation, the
        # kernel's adjacent segments)? Then extend that module.
        owner = self._same_object(addr, end, offset, path)
        self._cut(addr, end)
        if owner is None:
            owner = LoadedModule(self._new_id(), path, addr, end, offset)
        else:
            owner.start = min(owner.start, addr)
            owner.end = max(owner.end, end)
        i = bisect.bisect_left(self._starts, addr)
        self._ivals.insert(i, (addr, end, owner))
        self._merge_adjacent()
        self._changed()

    def _same_object(self, addr: int, end: int, offset: int, path: str) -> LoadedModule | None:
        i = bisect.bisect_right(self._starts, end) - 1
        while i >= 0:
            _start, iv_end, module = self._ivals[i]
            if iv_end < addr:
                break
            if module.path == path and module.start <= end and addr <= module.end:
                return module
            i -= 1
        # Inside the span of an object (its .bss was cut out, say), or a segment beyond a hole
        # (the kernel leaves gaps between segments): same file, same load bias.
        for _, _, module in self._ivals:
            if module.path != path:
                continue
            if module.start <= addr and end <= module.end:
                return module
            obj = module.elf()
            if obj is not None and obj.bias_for(addr, offset) == module.bias:
                return module
        return None

    def remove(self, addr: int, length: int) -> None:
        """[addr, addr+length) was unmapped or replaced by an anonymous mapping."""
        end = (addr + length + _PAGE - 1) & ~(_PAGE - 1)
        # Intervals do not overlap, so their ends are sorted too: only the last interval that
        # starts before ``end`` can reach past ``addr``. Most munmaps (anonymous memory) stop here.
        j = bisect.bisect_left(self._starts, end) - 1
        if j < 0 or self._ivals[j][1] <= addr:
            return
        if self._cut(addr, end):
            self._changed()

    def _cut(self, addr: int, end: int) -> bool:
        out: list[tuple[int, int, LoadedModule]] = []
        cut = False
        for start, iv_end, module in self._ivals:
            if iv_end <= addr or start >= end:
                out.append((start, iv_end, module))
                continue
            cut = True
            if start < addr:
                out.append((start, addr, module))
            if iv_end > end:
                out.append((end, iv_end, module))
        if cut:
            self._ivals = out
            self._starts = [iv[0] for iv in out]
        return cut

    def _merge_adjacent(self) -> None:
        merged: list[tuple[int, int, LoadedModule]] = []
        for iv in self._ivals:
            if merged and merged[-1][2] is iv[2] and merged[-1][1] == iv[0]:
                merged[-1] = (merged[-1][0], iv[1], iv[2])
            else:
                merged.append(iv)
        self._ivals = merged

    def seed(self, maps: Iterable[tuple[int, int, str, int, str]]) -> None:
        """Add the file mappings of /proc/PID/maps lines (start, end, perms, offset, path)."""
        for start, end, _perms, offset, path in maps:
            if not path.startswith("/") and path != "[vdso]":
                continue
            known = self.find(start)
            if known is None or known.path != path:
                self.add_file(start, end - start, offset, path)

    def refresh(self) -> bool:
        """Re-read /proc/PID/maps for objects we missed; True when the map changed."""
        before = self.generation
        self.seed(procfs.maps(self.pid))
        return self.generation != before

    def copy(self, pid: int) -> ProcessModules:
        """The map of a forked child: same objects (and module ids), own future changes."""
        child = ProcessModules(pid, self._new_id)
        child._ivals = list(self._ivals)
        child._starts = list(self._starts)
        child.layout = self.layout
        return child
