"""Mapping lifetimes: each mapping from the call that made it to the call that removed it.

A mapping is what one successful ``mmap``, ``mremap`` or break-raising ``brk`` created, with the
classification of that call. It ends when the last of its pages goes: ``munmap``, a
``MAP_FIXED`` mmap or mremap over it, a ``brk`` that lowers the break, ``exec``, or the end of
its process; a partial munmap (glibc trimming an arena reservation) only shrinks it. A forked
child starts with copies of its parent's live mappings. Pure Python over classified events, so
the plots and the notebook's ``Trace.mappings`` share it without pandas.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from analyzers.addrspace import pages
from analyzers.model import Classified
from tracer.flags import MAP_FIXED, MAP_FIXED_NOREPLACE
from tracer.records import Event, Exec, Exit, Spawn, Syscall


@dataclass
class Lifetime:
    """One mapping: where, made by which call (and its classification), and when it went."""

    pid: int
    start: int
    end: int  # at creation; ``size`` is what is still mapped at the end
    size: int
    created_seq: int
    created_ns: int
    tid: int
    syscall: str
    category: str
    owner: str
    role: str
    object: str | None
    segment: str | None
    phase: str
    removed_seq: int | None = None
    removed_ns: int | None = None
    removed_by: str | None = None  # munmap, mmap, mremap, brk, exec, exit


class _Space:
    """Live pieces of one process's mappings: sorted, non-overlapping (start, end, index)."""

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.pieces: list[tuple[int, int, int]] = []

    def cut(
        self, start: int, end: int, spare: Callable[[int], bool] | None = None
    ) -> list[tuple[int, int, int]]:
        """Remove [start, end); return the removed pieces. Pieces of the mappings ``spare``
        names (by index) stay whole."""
        i = max(bisect.bisect_right(self.starts, start) - 1, 0)
        j = i
        keep: list[tuple[int, int, int]] = []
        removed: list[tuple[int, int, int]] = []
        while j < len(self.pieces) and self.pieces[j][0] < end:
            lo, hi, index = self.pieces[j]
            if hi <= start or (spare is not None and spare(index)):
                keep.append(self.pieces[j])
            else:
                if lo < start:
                    keep.append((lo, start, index))
                if hi > end:
                    keep.append((end, hi, index))
                removed.append((max(lo, start), min(hi, end), index))
            j += 1
        self.pieces[i:j] = keep
        self.starts[i:j] = [p[0] for p in keep]
        return removed

    def add(self, start: int, end: int, index: int) -> None:
        i = bisect.bisect_left(self.starts, start)
        self.starts.insert(i, start)
        self.pieces.insert(i, (start, end, index))

    def copy(self) -> _Space:
        other = _Space()
        other.starts = list(self.starts)
        other.pieces = list(self.pieces)
        return other


class _Replay:
    def __init__(self) -> None:
        self.out: list[Lifetime] = []
        self.returned: list[int] = []  # per lifetime: when the call that made it returned
        self.spaces: dict[int, _Space] = {}
        self.breaks: dict[int, int] = {}
        # Per process: pieces an mmap without MAP_FIXED found still mapped. The kernel never
        # gives such an mmap a mapped range: a munmap recorded later had freed it (see
        # remove). (lo, hi, lifetime index, the mmap's seq, ts and return time.)
        self.displaced: dict[int, list[tuple[int, int, int, int, int, int]]] = {}

    def space(self, pid: int) -> _Space:
        found = self.spaces.get(pid)
        if found is None:
            found = self.spaces[pid] = _Space()
        return found

    def remove(
        self, pid: int, start: int, end: int, seq: int, ts: int, how: str, entered: bool = False
    ) -> None:
        """``entered``: ``ts`` is when a munmap (or mremap) was seen entering, and mappings made
        by calls seen returning after it are not its (analyzers.addrspace.AddressSpace.remove)."""
        spare = (lambda index: self.returned[index] > ts) if entered else None
        for lo, hi, index in self.space(pid).cut(start, end, spare):
            self._shrink(index, hi - lo, seq, ts, how)
        if entered and pid in self.displaced:
            self._claim_displaced(pid, start, end, seq, ts, how)

    def _shrink(self, index: int, size: int, seq: int, ts: int, how: str) -> None:
        life = self.out[index]
        life.size -= size
        if life.size <= 0 and life.removed_seq is None:
            life.size = 0
            life.removed_seq, life.removed_ns, life.removed_by = seq, ts, how

    def _claim_displaced(self, pid: int, start: int, end: int, seq: int, ts: int, how: str) -> None:
        """The munmap that freed displaced pieces: it covers them and entered before the mmap
        that found them mapped returned."""
        left: list[tuple[int, int, int, int, int, int]] = []
        for lo, hi, index, by_seq, by_ts, returned in self.displaced[pid]:
            if hi <= start or lo >= end or ts >= returned:
                left.append((lo, hi, index, by_seq, by_ts, returned))
                continue
            left += [
                (a, b, index, by_seq, by_ts, returned) for a, b in ((lo, start), (end, hi)) if a < b
            ]
            self._shrink(index, min(hi, end) - max(lo, start), seq, ts, how)
        self.displaced[pid] = left

    def settle_displaced(self, pid: int) -> None:
        """Displaced pieces no munmap claimed: ended by the mmap that found them."""
        for lo, hi, index, seq, ts, _returned in self.displaced.pop(pid, []):
            self._shrink(index, hi - lo, seq, ts, "mmap")

    def end_all(self, pid: int, seq: int, ts: int, how: str) -> None:
        self.settle_displaced(pid)
        space = self.spaces.pop(pid, None)
        if space is None:
            return
        for index in {p[2] for p in space.pieces}:
            life = self.out[index]
            if life.removed_seq is None:
                life.removed_seq, life.removed_ns, life.removed_by = seq, ts, how

    def create(self, c: Classified, start: int, end: int) -> None:
        e = c.event
        returned = e.returned_ns
        if e.syscall == "mmap" and not (e.flags or 0) & (MAP_FIXED | MAP_FIXED_NOREPLACE):
            held = self.displaced.setdefault(e.pid, [])
            for lo, hi, index in self.space(e.pid).cut(start, end):
                held.append((lo, hi, index, e.seq, e.ts_ns, returned))
        else:
            self.remove(e.pid, start, end, e.seq, e.ts_ns, e.syscall)
        index = len(self.out)
        self.returned.append(returned)
        self.out.append(
            Lifetime(
                e.pid,
                start,
                end,
                end - start,
                e.seq,
                e.ts_ns,
                e.tid,
                e.syscall,
                c.category,
                c.owner,
                c.role,
                c.object,
                c.segment,
                c.phase,
            )
        )
        self.space(e.pid).add(start, end, index)

    def fork(self, spawn: Spawn) -> None:
        parent = self.spaces.get(spawn.parent_pid)
        if parent is None:
            return
        child = self.spaces[spawn.pid] = _Space()
        copies: dict[int, int] = {}
        for lo, hi, index in parent.pieces:
            if index not in copies:
                source = self.out[index]
                copies[index] = len(self.out)
                self.returned.append(self.returned[index])
                self.out.append(
                    Lifetime(
                        spawn.pid,
                        source.start,
                        source.end,
                        0,
                        spawn.seq,
                        spawn.ts_ns,
                        spawn.tid,
                        source.syscall,
                        source.category,
                        source.owner,
                        source.role,
                        source.object,
                        source.segment,
                        source.phase,
                    )
                )
            self.out[copies[index]].size += hi - lo
            child.add(lo, hi, copies[index])
        if spawn.parent_pid in self.breaks:
            self.breaks[spawn.pid] = self.breaks[spawn.parent_pid]

    def syscall(self, c: Classified) -> None:
        e = c.event
        if e.result is None:
            return
        if e.syscall == "mmap":
            self.create(c, e.result, e.result + pages(e.length))
        elif e.syscall == "munmap" and e.addr is not None:
            end = e.addr + pages(e.length)
            self.remove(e.pid, e.addr, end, e.seq, e.ts_ns, "munmap", entered=True)
        elif e.syscall == "mremap" and e.addr is not None:
            end = e.addr + pages(e.length)
            self.remove(e.pid, e.addr, end, e.seq, e.ts_ns, "mremap", entered=True)
            self.create(c, e.result, e.result + pages(e.new_length))
        elif e.syscall == "brk":
            current = self.breaks.get(e.pid)
            self.breaks[e.pid] = e.result
            if current is None or e.result == current:
                return
            if e.result > current:
                self.create(c, current, e.result)
            else:
                self.remove(e.pid, e.result, current, e.seq, e.ts_ns, "brk")


def lifetimes(events: Iterable[Event], classified: Sequence[Classified]) -> list[Lifetime]:
    """Every mapping the syscalls of a trace created, in order of creation."""
    by_seq = {c.event.seq: c for c in classified}
    replay = _Replay()
    for event in events:
        if isinstance(event, Syscall):
            found = by_seq.get(event.seq)
            if found is not None:
                replay.syscall(found)
        elif isinstance(event, Exec):
            replay.end_all(event.pid, event.seq, event.ts_ns, "exec")
            replay.breaks.pop(event.pid, None)
        elif isinstance(event, Spawn) and event.how != "thread":
            replay.fork(event)
        elif isinstance(event, Exit) and event.tid == event.pid:
            replay.end_all(event.pid, event.seq, event.ts_ns, "exit")
    for pid in list(replay.displaced):
        replay.settle_displaced(pid)
    return replay.out
