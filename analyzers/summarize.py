"""Summaries: every figure the report shows, computed from an Analysis, and sentences stating them.

Pure functions over :class:`analyzers.analysis.Analysis`. The figures:

* **calls** per syscall kind, for each phase x category, object, allocator role, thread;
* **reserved**: address space the calls mapped with no access (``PROT_NONE``), as asked for,
  before any trimming ``munmap``;
* **committed**: address space the calls made accessible: ``mmap`` with a protection, the
  ``PROT_NONE`` pages an ``mprotect`` opened, ``brk`` growth, ``mremap`` growth;
* **resident** at exit: the ``Rss`` of ``/proc/PID/smaps`` (the trace's Memory records), given to
  whoever created each range in the replayed address space. Where one kernel mapping covers
  ranges of several calls (adjacent anonymous mappings merge), its Rss is shared out by size.
  What no traced call created (the executable, ld.so, the stack and vDSO, mapped by the kernel
  at ``execve``) is the ``kernel`` row.

The sentences (:func:`sentences`) are generated from these figures, never canned.
"""

from __future__ import annotations

import itertools
import os
import signal
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from msgspec.structs import replace

from analyzers.addrspace import PAGE, AddressSpace, Region, pages
from analyzers.analysis import Analysis
from analyzers.model import CATEGORIES, Classified
from analyzers.phases import has_phase_records
from tracer import elf, flags
from tracer.records import Exec, Memory, Spawn, Syscall

SYSCALL_KINDS = ("mmap", "munmap", "mprotect", "brk", "mremap", "madvise", "prctl")
PHASES = ("startup", "main", "exit")
KERNEL = "kernel"  # the row of what the kernel mapped at execve (no syscall of the program)
ROW_CATEGORIES = (*CATEGORIES, KERNEL)
KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB
LD_SO_CACHE = "/etc/ld.so.cache"


# ---- the Summary ---------------------------------------------------------------------------


@dataclass
class AllocatorFact:
    """The malloc serving one process (analyzers/allocators.py), flattened for the report."""

    pid: int
    name: str
    how: str
    path: str | None
    version: str | None
    runtime: str | None
    description: str


@dataclass
class HeaderFacts:
    """What was traced and how it ended."""

    trace: str
    program: str
    argv: list[str]
    allocators: list[AllocatorFact]
    env: dict[str, str]
    outcome: str  # one phrase: "exited with status 0", "killed by SIGSEGV", ...
    status: int | None
    signal: int | None
    complete: bool
    wall_ns: int | None  # traced wall time (the footer's duration)
    processes: int
    threads: int
    syscalls: int
    failed: int
    decided_by: dict[str, int]  # stack | region | heuristic -> calls
    stacks: bool  # the trace has call stacks
    phases_known: bool  # phase records (or stacks) say where main began
    resident_known: bool  # every process left an exit snapshot (smaps)
    machine: dict[str, str]


@dataclass
class Figures:
    """Calls per syscall kind and the address-space figures of a group of calls."""

    calls: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SYSCALL_KINDS, 0))
    total: int = 0
    reserved: int = 0
    committed: int = 0
    resident: int = 0

    def add_call(self, syscall: str) -> None:
        """Count one call."""
        self.calls[syscall] = self.calls.get(syscall, 0) + 1
        self.total += 1

    def merge(self, other: Figures) -> None:
        """Add another group's figures to this one."""
        for kind, n in other.calls.items():
            self.calls[kind] = self.calls.get(kind, 0) + n
        self.total += other.total
        self.reserved += other.reserved
        self.committed += other.committed
        self.resident += other.resident


@dataclass
class PhaseRow:
    """One row of the phase x category table."""

    phase: str
    category: str
    figures: Figures


@dataclass
class ObjectRow:
    """What the loader did for one object (analyzers/loader.py), with what stayed resident."""

    pid: int
    name: str  # soname when the object has one (libstdc++.so.6), else the file name
    path: str
    how: str  # kernel | DT_NEEDED | LD_PRELOAD | dlopen
    needed_by: str | None  # name of the object that needed it (or dlopen'd it)
    mmaps: int
    mprotects: int
    munmaps: int
    mapped: int  # bytes of all its mmaps
    span: int  # length of its first mapping, which reserves the whole object
    segments: list[str]
    resident: int
    startup: bool  # mapped before main


@dataclass
class RoleRow:
    """The calls of one owner in one role and phase (allocator, loader data, own calls...)."""

    category: str
    owner: str
    role: str
    phase: str
    figures: Figures
    sizes: dict[str, list[int]]  # syscall -> size of each call (brk: growth), in order


@dataclass
class CallRow:
    """One call, as a line of a listing."""

    seq: int
    pid: int
    tid: int
    phase: str
    category: str
    owner: str
    role: str
    syscall: str
    size: int  # length (mremap: new length; brk: growth of the break, 0 for a query)
    prot: str | None
    flags: str | None
    path: str | None
    ok: bool
    decided_by: str


@dataclass
class ArenaRow:
    """Arenas (heaps, segments, blocks) of one kind, and the threads whose work made them."""

    owner: str
    kind: str
    count: int
    reserved: int
    threads: int  # distinct threads that created one
    by_main: int  # created by a process's main thread
    per_thread_min: int
    per_thread_max: int
    phases: list[str]

    @property
    def other_threads(self) -> int:
        """Threads other than a main thread that created one."""
        return self.threads - (1 if self.by_main else 0)


@dataclass
class ThreadRow:
    """One thread: its calls and the arenas its work created."""

    pid: int
    tid: int
    main: bool
    calls: int
    arenas: dict[str, int]  # kind -> created
    reserved: int  # bytes of those arenas


@dataclass
class StackFigures:
    """Thread stacks: how many, their size, what they cost."""

    threads: int  # threads started (Spawn records)
    stacks: int  # stack reservations (mmap)
    sizes: list[int]  # distinct reservation sizes (stack + guard)
    figures: Figures
    released: int  # bytes given back with madvise at thread exit
    freed: int  # bytes munmapped (stack cache trimmed)


@dataclass
class Upfront:
    """What happened before main: the program's upfront cost."""

    figures: Figures
    by_category: dict[str, int]  # category -> calls
    objects: int  # objects the loader mapped
    share: float  # of all calls


@dataclass
class Summary:
    """Every figure of the report, and the sentences that state them."""

    header: HeaderFacts
    table: list[PhaseRow]
    totals: Figures
    upfront: Upfront
    objects: list[ObjectRow]
    loader_data: list[RoleRow]  # loader calls not for an object (cache, minimal malloc, TLS)
    allocator_roles: list[RoleRow]
    allocator_startup: list[CallRow]  # the allocators' own calls before main
    stacks: StackFigures | None
    arenas: list[ArenaRow]
    threads: list[ThreadRow]
    own: list[RoleRow]  # the program's own calls (category user)
    others: list[RoleRow]  # runtime and unclassified calls
    sentences: list[str]


# ---- words and sizes -----------------------------------------------------------------------


def size_text(n: int) -> str:
    """``512 B``, ``4 KiB``, ``34.1 KiB``, ``2 MiB``, ``8 MiB + 4 KiB`` (guard), ``896 MiB``."""
    if n < 0:
        return "-" + size_text(-n)
    if n < KIB:
        return f"{n} B"
    if n < MIB:
        return f"{n // KIB} KiB" if n % KIB == 0 else f"{n / KIB:.1f} KiB"
    unit, name = (GIB, "GiB") if n >= GIB else (MIB, "MiB")
    whole, rest = divmod(n, unit)
    if rest == 0:
        return f"{whole} {name}"
    if name == "MiB" and rest == PAGE:
        return f"{whole} MiB + {rest // KIB} KiB"
    return f"{n / unit:.1f} {name}" if n < 100 * unit else f"{n / unit:.0f} {name}"


def plural(n: int, word: str, words: str | None = None) -> str:
    """``1 mmap``, ``3 mmaps``."""
    return f"{n} {word if n == 1 else (words or word + 's')}"


def join_words(items: Sequence[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    if not items:
        return ""
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + " and " + items[-1]


def call_breakdown(calls: dict[str, int]) -> str:
    """``33 mmap, 3 munmap, 7 mprotect`` in the usual order, zeros left out."""
    return ", ".join(f"{calls[k]} {k}" for k in SYSCALL_KINDS if calls.get(k))


def object_name(path: str) -> str:
    """The name an object is known by: its soname (``libstdc++.so.6``), else its file name."""
    obj = elf.open_elf(path)
    if obj is not None:
        soname, _ = obj.dynamic()
        if soname:
            return soname
    return os.path.basename(path)


# ---- the address-space replay --------------------------------------------------------------


class _Origin(Region, frozen=True, gc=False):
    """A replayed region, remembering the phase and call that created it."""

    phase: str = "main"
    seq: int = 0


@dataclass
class _Process:
    space: AddressSpace = field(default_factory=AddressSpace)
    brk: int | None = None  # the current break


class _Key(NamedTuple):
    """Where a byte figure goes: a call's (or region's) classification. A NamedTuple: one is
    made per call, and hashed for every table (a frozen dataclass took 1.5 us to build and
    hashed in Python; measured)."""

    phase: str
    category: str
    owner: str
    role: str
    object: str | None
    pid: int


def _key_of(c: Classified) -> _Key:
    return _Key(c.phase, c.category, c.owner, c.role, c.object, c.event.pid)


def _key_of_region(region: Region, pid: int) -> _Key:
    phase = region.phase if isinstance(region, _Origin) else "main"
    return _Key(phase, region.category, region.owner, region.role, region.object, pid)


@dataclass
class _Bytes:
    """The byte figures of a whole trace summed per key, and each call's size. Summed as the
    replay goes: the tables then walk a few keys, not a figure per call."""

    reserved: Counter[_Key] = field(default_factory=Counter)
    committed: Counter[_Key] = field(default_factory=Counter)
    resident: Counter[_Key] = field(default_factory=Counter)
    kernel_resident: list[tuple[int, str, int]] = field(default_factory=list)  # pid, path, rss
    sizes: dict[int, int] = field(default_factory=dict)  # seq -> size of the call
    resident_known: bool = True


def _replay(analysis: Analysis, keys: Sequence[_Key]) -> _Bytes:
    """Replay every process's address space; say what each call reserved, committed, left.
    ``keys``: each classified call's key, in order."""
    out = _Bytes()
    # The classified calls are the trace's syscalls in the same order: walked alongside.
    classified = zip(analysis.events, keys, strict=True)
    ahead = next(classified, None)
    procs: dict[int, _Process] = {}
    memory: dict[int, Memory] = {}
    pids: set[int] = set()
    for event in analysis.trace.events:
        if isinstance(event, Syscall):  # nearly every event: tested first
            pids.add(event.pid)
            if ahead is not None and ahead[0].event is event:
                _apply(*ahead, procs.setdefault(event.pid, _Process()), out)
                ahead = next(classified, None)
        elif isinstance(event, Exec):
            procs[event.pid] = _Process()
            pids.add(event.pid)
        elif isinstance(event, Spawn) and event.how != "thread":
            parent = procs.get(event.parent_pid, _Process())
            procs[event.pid] = _Process(parent.space.copy(), parent.brk)
            pids.add(event.pid)
        elif isinstance(event, Memory):
            memory[event.pid] = event
    for pid, snapshot in memory.items():
        _attribute(snapshot, procs.get(pid, _Process()), out)
    out.resident_known = bool(pids) and pids <= set(memory)
    return out


def _apply(c: Classified, key: _Key, proc: _Process, out: _Bytes) -> None:
    e = c.event
    size = e.length or 0
    if e.syscall == "mremap":
        size = e.new_length or 0
    if e.result is None:
        out.sizes[e.seq] = size if e.syscall != "brk" else 0
        return
    space = proc.space
    if e.syscall == "mmap":
        start, end = e.result, e.result + pages(e.length)
        prot = e.prot or 0
        space.add(_origin(c, start, end, prot))
        (out.committed if prot else out.reserved)[key] += end - start
    elif e.syscall == "munmap" and e.addr is not None:
        space.remove(e.addr, e.addr + pages(e.length), e.ts_ns)
    elif e.syscall == "mprotect" and e.addr is not None:
        start, end = e.addr, e.addr + pages(e.length)
        prot = e.prot or 0
        if prot:
            opened = sum(
                min(r.end, end) - max(r.start, start)
                for r in space.overlapping(start, end)
                if r.prot == 0
            )
            if opened:
                out.committed[key] += opened
        space.reprotect(start, end, prot)
    elif e.syscall == "mremap" and e.addr is not None:
        old = space.find(e.addr)
        old_len, new_len = pages(e.length), pages(e.new_length)
        space.remove(e.addr, e.addr + old_len, e.ts_ns)
        start, end = e.result, e.result + new_len
        if old is not None:
            space.add(replace(old, start=start, end=end, made_ns=e.returned_ns))
        else:
            space.add(_origin(c, start, end, 0))
        if new_len > old_len:
            out.committed[key] += new_len - old_len
    elif e.syscall == "brk":
        size = 0
        if proc.brk is not None and e.result != proc.brk:
            if e.result > proc.brk:
                size = e.result - proc.brk
                rw = flags.PROT_READ | flags.PROT_WRITE
                space.add(_origin(c, proc.brk, e.result, rw))
                out.committed[key] += size
            else:
                size = e.result - proc.brk
                space.remove(e.result, proc.brk)
        proc.brk = e.result
    out.sizes[e.seq] = size


def _origin(c: Classified, start: int, end: int, prot: int) -> _Origin:
    """The region a call made, with its classification, phase and sequence number."""
    e = c.event
    return _Origin(
        start, end, c.category, c.owner, c.role, c.object, prot, e.returned_ns, c.phase, e.seq
    )


def _attribute(snapshot: Memory, proc: _Process, out: _Bytes) -> None:
    """Share each exit mapping's Rss among the regions inside it (by size; the rest: kernel)."""
    for m in snapshot.mappings:
        size = m.end - m.start
        if m.rss <= 0 or size <= 0:
            continue
        pieces: list[tuple[Region | None, int]] = []
        at = m.start
        for region in proc.space.overlapping(m.start, m.end):
            lo, hi = max(region.start, m.start), min(region.end, m.end)
            if lo > at:
                pieces.append((None, lo - at))
            pieces.append((region, hi - lo))
            at = hi
        if at < m.end:
            pieces.append((None, m.end - at))
        done = given = 0
        for owner, length in pieces:
            done += length
            share = m.rss * done // size - given
            given += share
            if not share:
                continue
            if owner is None:
                out.kernel_resident.append((snapshot.pid, m.path, share))
            else:
                out.resident[_key_of_region(owner, snapshot.pid)] += share


# ---- summarize -----------------------------------------------------------------------------


def summarize(analysis: Analysis) -> Summary:
    """Every figure of the report for one analyzed trace."""
    events = analysis.events
    keys = [_key_of(c) for c in events]
    replay = _replay(analysis, keys)
    # The calls of each key, found once for the four tables of roles: keys are few (a stack
    # decides a key) and a table walks only the calls of the keys it wants.
    calls_of: dict[_Key, list[int]] = {}
    for i, key in enumerate(keys):
        calls_of.setdefault(key, []).append(i)
    table, totals = _table(events, replay)
    objects = _objects(analysis, replay)
    summary = Summary(
        header=_header(analysis, replay),
        table=table,
        totals=totals,
        upfront=_upfront(table, events, objects),
        objects=objects,
        loader_data=_roles(events, calls_of, replay, _is_loader_data),
        allocator_roles=_roles(events, calls_of, replay, lambda k: k.category == "allocator"),
        allocator_startup=[
            _call_row(c, replay)
            for c in events
            if c.category == "allocator" and c.phase == "startup"
        ],
        stacks=_stacks(analysis, replay),
        arenas=_arenas(analysis),
        threads=_threads(analysis),
        own=_roles(events, calls_of, replay, lambda k: k.category == "user", by_owner=True),
        others=_roles(events, calls_of, replay, lambda k: k.category in ("runtime", "other")),
        sentences=[],
    )
    summary.sentences = sentences(summary)
    return summary


def _header(analysis: Analysis, replay: _Bytes) -> HeaderFacts:
    trace = analysis.trace
    footer = trace.footer
    allocators = [
        AllocatorFact(pid, a.name, a.how, a.path, a.version, a.runtime, a.describe())
        for pid, a in sorted(analysis.allocators.items())
    ]
    pids = {e.pid for e in trace.events}
    tids = {e.tid for e in trace.events if not isinstance(e, Memory)}
    syscalls = [c.event for c in analysis.events]
    return HeaderFacts(
        trace=trace.path,
        program=trace.header.program,
        argv=list(trace.header.argv),
        allocators=allocators,
        env=dict(trace.header.env),
        outcome=outcome_text(analysis),
        status=footer.status if footer else None,
        signal=footer.signal if footer else None,
        complete=trace.complete,
        wall_ns=footer.duration_ns if footer else None,
        processes=len(pids),
        threads=len(tids),
        syscalls=len(syscalls),
        failed=sum(1 for e in syscalls if e.result is None),
        decided_by=dict(Counter(c.decided_by for c in analysis.events)),
        stacks=bool(trace.header.options.get("stacks", bool(trace.stacks))),
        phases_known=has_phase_records(trace) or bool(trace.stacks),
        resident_known=replay.resident_known,
        machine={k: str(v) for k, v in trace.header.machine.items()},
    )


def outcome_text(analysis: Analysis) -> str:
    """How the traced program ended, as one phrase."""
    footer = analysis.trace.footer
    if footer is None:
        return "unknown: the trace is incomplete (the tracer did not finish it)"
    if footer.outcome == "exited":
        return f"exited with status {footer.status}"
    if footer.outcome == "killed" and footer.signal is not None:
        try:
            name = signal.Signals(footer.signal).name
        except ValueError:
            name = f"signal {footer.signal}"
        return f"killed by {name}"
    extra = f" ({footer.message})" if footer.message else ""
    return f"{footer.outcome}{extra}"


def _table(events: Sequence[Classified], replay: _Bytes) -> tuple[list[PhaseRow], Figures]:
    cells: dict[tuple[str, str], Figures] = defaultdict(Figures)
    for c in events:
        cells[c.phase, c.category].add_call(c.event.syscall)
    for key, n in replay.reserved.items():
        cells[key.phase, key.category].reserved += n
    for key, n in replay.committed.items():
        cells[key.phase, key.category].committed += n
    for key, n in replay.resident.items():
        cells[key.phase, key.category].resident += n
    for _, _, n in replay.kernel_resident:
        cells["startup", KERNEL].resident += n
    phase_rank = {p: i for i, p in enumerate(PHASES)}
    cat_rank = {c: i for i, c in enumerate(ROW_CATEGORIES)}
    order = sorted(
        cells,
        key=lambda pc: (phase_rank.get(pc[0], 9), pc[0], cat_rank.get(pc[1], 99), pc[1]),
    )
    rows = [PhaseRow(phase, category, cells[phase, category]) for phase, category in order]
    totals = Figures()
    for row in rows:
        totals.merge(row.figures)
    return rows, totals


def _for_object(key: _Key) -> bool:
    """A loader call (or region) for one object, as analyzers/loader.py counts them."""
    return key.category == "loader" and bool(key.object) and key.object != LD_SO_CACHE


def _is_loader_data(key: _Key) -> bool:
    """A loader call that serves ld.so itself: ld.so.cache, minimal malloc, TLS, the break."""
    return key.category == "loader" and not _for_object(key)


def _objects(analysis: Analysis, replay: _Bytes) -> list[ObjectRow]:
    resident: Counter[tuple[int, str]] = Counter()
    for key, n in replay.resident.items():
        if _for_object(key) and key.object:
            resident[key.pid, key.object] += n
    for pid, path, n in replay.kernel_resident:
        if path:
            resident[pid, path] += n
    names = {o.path: object_name(o.path) for o in analysis.objects}
    phase_of = {c.event.seq: c.phase for c in analysis.events}
    rows = []
    for o in analysis.objects:
        needer = None
        if o.needed_by is not None:
            needer = names.get(o.needed_by) or object_name(o.needed_by)
        rows.append(
            ObjectRow(
                pid=o.pid,
                name=names[o.path],
                path=o.path,
                how=o.how,
                needed_by=needer,
                mmaps=o.mmaps,
                mprotects=o.mprotects,
                munmaps=o.munmaps,
                mapped=o.mapped,
                span=o.reserved,
                segments=list(o.segments),
                resident=resident.get((o.pid, o.path), 0),
                startup=o.how == "kernel" or phase_of.get(o.first_seq, "startup") == "startup",
            )
        )
    return rows


def _roles(
    events: Sequence[Classified],
    calls_of: dict[_Key, list[int]],
    replay: _Bytes,
    wanted: Callable[[_Key], bool],
    by_owner: bool = False,
) -> list[RoleRow]:
    """Calls grouped by category, owner, role (unless ``by_owner``) and phase, with figures;
    ``calls_of``: the index in ``events`` of each key's calls, keys in order of first call."""
    idents: dict[tuple[str, str, str, str], list[list[int]]] = {}
    for key, calls in calls_of.items():  # a few keys: the wanted ones' calls alone are walked
        if wanted(key):
            ident = (key.category, key.owner, "own calls" if by_owner else key.role, key.phase)
            idents.setdefault(ident, []).append(calls)
    rows: dict[tuple[str, str, str, str], RoleRow] = {}
    ordered = [
        (parts[0] if len(parts) == 1 else sorted(itertools.chain(*parts)), ident)
        for ident, parts in idents.items()
    ]
    for calls, ident in sorted(ordered, key=lambda pair: pair[0][0]):  # by their first call
        made = rows[ident] = RoleRow(*ident, Figures(), {})
        for i in calls:  # in trace order, as the sizes are listed
            e = events[i].event
            made.figures.add_call(e.syscall)
            made.sizes.setdefault(e.syscall, []).append(replay.sizes.get(e.seq, 0))

    def row_of(key: _Key) -> RoleRow | None:
        if not wanted(key):
            return None
        return rows.get((key.category, key.owner, "own calls" if by_owner else key.role, key.phase))

    for key, n in replay.reserved.items():
        if (row := row_of(key)) is not None:
            row.figures.reserved += n
    for key, n in replay.committed.items():
        if (row := row_of(key)) is not None:
            row.figures.committed += n
    for key, n in replay.resident.items():
        if (row := row_of(key)) is not None:
            row.figures.resident += n
    return list(rows.values())


def _call_row(c: Classified, replay: _Bytes) -> CallRow:
    e = c.event
    prot = flag_text = None
    if e.syscall in ("mmap", "mprotect"):
        prot = flags.prot_names(e.prot or 0)
    if e.syscall == "mmap":
        flag_text = flags.map_names(e.flags or 0)
    elif e.syscall == "madvise":
        flag_text = flags.madvise_name(e.advice or 0)
    elif e.syscall == "mremap":
        flag_text = flags.mremap_names(e.flags or 0)
    return CallRow(
        seq=e.seq,
        pid=e.pid,
        tid=e.tid,
        phase=c.phase,
        category=c.category,
        owner=c.owner,
        role=c.role,
        syscall=e.syscall,
        size=replay.sizes.get(e.seq, e.length or 0),
        prot=prot,
        flags=flag_text,
        path=e.path,
        ok=e.result is not None,
        decided_by=c.decided_by,
    )


def _upfront(
    table: Sequence[PhaseRow], events: Sequence[Classified], objects: Sequence[ObjectRow]
) -> Upfront:
    figures = Figures()
    by_category: dict[str, int] = {}
    for row in table:
        # The kernel's row (what execve mapped) is no call's doing: not part of the upfront cost.
        if row.phase == "startup" and row.category != KERNEL:
            figures.merge(row.figures)
            if row.figures.total:
                by_category[row.category] = row.figures.total
    mapped = sum(1 for o in objects if o.startup and o.mmaps)
    share = figures.total / len(events) if events else 0.0
    return Upfront(figures, by_category, mapped, round(share, 4))


def _stacks(analysis: Analysis, replay: _Bytes) -> StackFigures | None:
    calls = [c for c in analysis.events if c.category == "thread-stack"]
    threads = sum(1 for e in analysis.trace.events if isinstance(e, Spawn) and e.how == "thread")
    if not calls and not threads:
        return None
    figures = Figures()
    sizes: list[int] = []
    released = freed = 0
    for c in calls:
        e = c.event
        figures.add_call(e.syscall)
        if e.syscall == "mmap" and e.result is not None:
            if (e.length or 0) not in sizes:
                sizes.append(e.length or 0)
        elif e.syscall == "madvise" and e.result is not None:
            released += e.length or 0
        elif e.syscall == "munmap" and e.result is not None:
            freed += e.length or 0
    for key, n in replay.reserved.items():
        if key.category == "thread-stack":
            figures.reserved += n
    for key, n in replay.committed.items():
        if key.category == "thread-stack":
            figures.committed += n
    for key, n in replay.resident.items():
        if key.category == "thread-stack":
            figures.resident += n
    stacks = sum(1 for c in calls if c.event.syscall == "mmap" and c.event.result is not None)
    return StackFigures(threads, stacks, sizes, figures, released, freed)


def _main_tids(analysis: Analysis) -> set[int]:
    mains = {e.pid for e in analysis.trace.events if isinstance(e, Exec)}
    mains |= {e.pid for e in analysis.trace.events if isinstance(e, Spawn) and e.how != "thread"}
    return mains | {c.event.pid for c in analysis.events}


def _arenas(analysis: Analysis) -> list[ArenaRow]:
    mains = _main_tids(analysis)
    groups: dict[tuple[str, str], list[tuple[int, int, str]]] = {}
    for a in analysis.arenas:
        if a.kind == "thread stack":
            continue
        groups.setdefault((a.owner, a.kind), []).append((a.tid, a.reserved, a.phase))
    rows = []
    for (owner, kind), items in groups.items():
        per_thread = Counter(tid for tid, _, _ in items)
        phases: list[str] = []
        for _, _, phase in items:
            if phase not in phases:
                phases.append(phase)
        rows.append(
            ArenaRow(
                owner=owner,
                kind=kind,
                count=len(items),
                reserved=sum(r for _, r, _ in items),
                threads=len(per_thread),
                by_main=sum(n for tid, n in per_thread.items() if tid in mains),
                per_thread_min=min(per_thread.values()),
                per_thread_max=max(per_thread.values()),
                phases=phases,
            )
        )
    return rows


def _threads(analysis: Analysis) -> list[ThreadRow]:
    mains = _main_tids(analysis)
    rows: dict[int, ThreadRow] = {}
    for e in analysis.trace.events:
        if isinstance(e, (Exec, Spawn)) and e.tid not in rows:  # not Exec | Spawn: built per test
            rows[e.tid] = ThreadRow(e.pid, e.tid, e.tid in mains, 0, {}, 0)
    calls = Counter(c.event.tid for c in analysis.events)
    if any(tid not in rows for tid in calls):  # threads seen by their calls alone (attached)
        first_pid: dict[int, int] = {}
        for c in analysis.events:
            first_pid.setdefault(c.event.tid, c.event.pid)
        for tid in calls:
            if tid not in rows:
                rows[tid] = ThreadRow(first_pid[tid], tid, tid in mains, 0, {}, 0)
    for tid, n in calls.items():
        rows[tid].calls += n
    for a in analysis.arenas:
        if a.kind == "thread stack":
            continue
        row = rows.setdefault(a.tid, ThreadRow(a.pid, a.tid, a.tid in mains, 0, {}, 0))
        row.arenas[a.kind] = row.arenas.get(a.kind, 0) + 1
        row.reserved += a.reserved
    return list(rows.values())


# ---- sentences -----------------------------------------------------------------------------


def sentences(summary: Summary) -> list[str]:
    """Plain sentences stating the upfront cost and its causes, built from the figures."""
    h = summary.header
    totals = summary.totals
    program = os.path.basename(h.program) or "the program"
    if not totals.total:
        return [f"{program} made no memory syscall that the trace recorded."]
    where = plural(h.processes, "process", "processes")
    if h.threads > h.processes:
        where += f" and {plural(h.threads, 'thread')}"
    out = [
        f"{program} made {plural(totals.total, 'memory syscall')} "
        f"({call_breakdown(totals.calls)}) in {where}."
    ]
    up = summary.upfront
    if not h.phases_known:
        out.append(
            "The trace has neither phase records nor call stacks, so where main began is "
            "unknown: every call counts as start-up below."
        )
    elif up.figures.total:
        parts = [f"{n} by {_category_word(cat, summary)}" for cat, n in up.by_category.items()]
        share = (
            f"All {totals.total} calls"
            if up.figures.total == totals.total
            else f"{up.figures.total} of the {totals.total} calls ({up.share:.0%})"
        )
        out.append(f"{share} came before main: {join_words(parts)}.")
    out.extend(_loader_sentences(summary))
    out.extend(_allocator_sentences(summary))
    out.extend(_arena_sentences(summary))
    out.extend(_stack_sentences(summary))
    out.extend(_own_sentences(summary, program))
    out.extend(_footprint_sentences(summary))
    return out


def _category_word(category: str, summary: Summary) -> str:
    if category == "loader":
        return "the loader"
    if category == "allocator":
        owners = [r.owner for r in summary.allocator_roles if r.phase == "startup"]
        return join_words(list(dict.fromkeys(owners))) or "the allocator"
    if category == "thread-stack":
        return "thread stacks"
    if category == "user":
        return "the program itself"
    return category


def _loader_sentences(summary: Summary) -> list[str]:
    loader_mmaps = sum(
        r.figures.calls["mmap"]
        for r in summary.table
        if r.category == "loader" and r.phase == "startup"
    )
    if not loader_mmaps:
        return []
    all_mmaps = summary.totals.calls["mmap"]
    objects = [o for o in summary.objects if o.startup and o.mmaps]
    exe_of = {
        o.pid: o.name
        for o in summary.objects
        if o.how == "kernel" and not o.name.startswith(("ld-linux", "ld-musl"))
    }
    if len({o.pid for o in objects}) > 1:  # say which process each object was mapped in
        listed = ", ".join(f"{o.name} in {exe_of.get(o.pid, o.pid)}: {o.mmaps}" for o in objects)
    else:
        listed = ", ".join(f"{o.name}: {o.mmaps}" for o in objects)
    share = (
        f"all {all_mmaps}" if loader_mmaps == all_mmaps else f"{loader_mmaps} of the {all_mmaps}"
    )
    text = (
        f"Before main, the loader made {share} mmaps, "
        f"{sum(o.mmaps for o in objects)} of them mapping "
        f"{plural(len(objects), 'shared object')} ({listed})"
    )
    clauses = []
    preloaded = [o.name for o in objects if o.how == "LD_PRELOAD"]
    if preloaded:
        clauses.append(f"LD_PRELOAD injected {join_words(preloaded)}")
    needers: dict[str, list[str]] = {}
    for o in objects:
        if o.how in ("DT_NEEDED", "dlopen") and o.needed_by:
            verb = "needed" if o.how == "DT_NEEDED" else "dlopen'd"
            needers.setdefault(f"{o.needed_by} {verb}", []).append(o.name)
    exe = {o.name for o in summary.objects if o.how == "kernel" and not o.name.startswith("ld-")}
    for who, names in needers.items():
        prefix = "the executable " if who.rsplit(" ", 1)[0] in exe else ""
        clauses.append(f"{prefix}{who} {join_words(names)}")
    if clauses:
        text += "; " + "; ".join(clauses)
    out = [text + "."]
    data = [r for r in summary.loader_data if r.figures.calls["mmap"]]
    if data:
        n = sum(r.figures.calls["mmap"] for r in data)
        own = _kind_text(data, "mmap")
        out.append(f"Its other {plural(n, 'mmap')} served ld.so itself: {own}.")
    return out


def _allocator_sentences(summary: Summary) -> list[str]:
    out = []
    owners = list(dict.fromkeys(r.owner for r in summary.allocator_roles))
    for owner in owners:
        rows = [r for r in summary.allocator_roles if r.owner == owner]
        early = [r for r in rows if r.phase == "startup"]
        later = [r for r in rows if r.phase != "startup"]
        if early:
            n = sum(r.figures.total for r in early)
            out.append(f"{owner} itself made {plural(n, 'call')} before main: {roles_text(early)}.")
        if later:
            n = sum(r.figures.total for r in later)
            first = "After main began" if early else "In main"
            if {r.phase for r in later} == {"exit"}:
                first = "At exit"
            out.append(f"{first}, {owner} made {plural(n, 'call')}: {roles_text(later)}.")
        calls = Figures()
        for r in rows:
            calls.merge(r.figures)
        mapped = mapped_bytes(rows)
        if mapped and summary.header.resident_known:
            out.append(
                f"Of the {size_text(mapped)} {owner} mapped or grew, "
                f"{size_text(calls.resident)} was resident at exit."
            )
        if calls.calls["brk"] and not calls.calls["mmap"]:
            out.append(
                f"None of {owner}'s calls is an mmap, so `strace -e mmap` shows none of them."
            )
    if not owners and summary.header.allocators:
        names = join_words(list(dict.fromkeys(a.name for a in summary.header.allocators)))
        out.append(f"The allocator ({names}) made no memory syscall of its own.")
    return out


def mapped_bytes(rows: Sequence[RoleRow]) -> int:
    """Address space the rows' calls mapped (mmap lengths) or grew (brk growth)."""
    return sum(
        sum(r.sizes.get("mmap", [])) + sum(n for n in r.sizes.get("brk", []) if n > 0) for r in rows
    )


def roles_text(rows: Sequence[RoleRow]) -> str:
    """``5 mmap: page probe x2 (4 KiB each), extent or base block x3 (2 MiB, ...); 1 brk: ...``."""
    parts = []
    for kind in SYSCALL_KINDS:
        n = sum(r.figures.calls.get(kind, 0) for r in rows)
        if n:
            parts.append(f"{n} {kind}: {_kind_text(rows, kind)}")
    return "; ".join(parts)


def _kind_text(rows: Sequence[RoleRow], kind: str) -> str:
    """The roles of the ``kind`` calls in ``rows`` with their sizes: ``TLS (12 KiB)``."""
    merged: dict[str, list[int]] = {}
    for r in rows:
        if r.sizes.get(kind):
            merged.setdefault(r.role, []).extend(r.sizes[kind])
    parts = []
    for role, sizes in merged.items():
        times = f" x{len(sizes)}" if len(sizes) > 1 else ""
        if kind == "brk":
            grown = sum(s for s in sizes if s > 0)
            what = f"+{size_text(grown)}" if grown else "no growth"
        else:
            what = sizes_text(sizes)
        parts.append(f"{role}{times} ({what})")
    return ", ".join(parts)


def noun(n: int, what: str) -> str:
    """``1 arena heap``, ``2 arena heaps``, ``2 thread data``, ``3 extent or base blocks``."""
    if n == 1 or what.endswith((")", "data", "s")):
        return f"{n} {what}"
    return f"{n} {what}s"


def sizes_text(sizes: Sequence[int]) -> str:
    """``4 KiB each``, ``2 MiB, 2 MiB and 4 MiB``, ``9.5 MiB in all``."""
    if len(set(sizes)) == 1:
        return size_text(sizes[0]) + (" each" if len(sizes) > 1 else "")
    if len(sizes) > 4:
        return f"{size_text(sum(sizes))} in all"
    return join_words([size_text(s) for s in sizes])


def _arena_sentences(summary: Summary) -> list[str]:
    out = []
    workers = [t for t in summary.threads if not t.main]
    for row in summary.arenas:
        kind = row.kind.removeprefix(row.owner + " ")
        text = f"{row.owner} created {noun(row.count, kind)} ({size_text(row.reserved)} in all)"
        clauses = []
        if row.by_main:
            when = " before main" if row.phases == ["startup"] else ""
            clauses.append(f"{row.by_main} for the main thread{when}")
        others = row.count - row.by_main
        if others:
            made = row.other_threads
            spread = (
                f"{row.per_thread_min}"
                if row.per_thread_min == row.per_thread_max
                else f"{row.per_thread_min} to {row.per_thread_max}"
            )
            clauses.append(
                f"{others} for {made} of the {plural(len(workers), 'other thread')} ({spread} each)"
            )
        out.append(f"{text}: {join_words(clauses)}.")
    return out


def _stack_sentences(summary: Summary) -> list[str]:
    s = summary.stacks
    if s is None or not s.stacks:
        return []
    if len(s.sizes) == 1:
        each = f"{size_text(s.sizes[0])} (stack and guard page, PROT_NONE)"
    else:  # e.g. the JVM's threads: some with a guard page, some without (guardsize 0)
        sizes = [size_text(n) for n in s.sizes]
        each = f"{', '.join(sizes[:-1])} or {sizes[-1]} (the stack, and a guard page if it has one)"
    text = (
        f"{plural(s.threads, 'thread')} started; each of the {plural(s.stacks, 'stack')} "
        f"reserved {each}, and {size_text(s.figures.committed)} was made accessible in all"
    )
    if summary.header.resident_known:
        text += f"; {size_text(s.figures.resident)} of stack was resident at exit"
    return [text + "."]


def _own_sentences(summary: Summary, program: str) -> list[str]:
    own = Figures()
    for r in summary.own:
        own.merge(r.figures)
    if not own.total:
        return [f"{program} made no memory syscall of its own."]
    owners = join_words([r.owner for r in summary.own])
    return [
        f"Code outside the loader and the allocator ({owners}) made "
        f"{plural(own.total, 'call')} ({call_breakdown(own.calls)})."
    ]


def _footprint_sentences(summary: Summary) -> list[str]:
    t = summary.totals
    reserved = (
        f"reserved {size_text(t.reserved)} of address space (PROT_NONE)"
        if t.reserved
        else "reserved no address space PROT_NONE"
    )
    text = f"In all, the calls {reserved} and made {size_text(t.committed)} accessible"
    if not summary.header.resident_known:
        return [text + "; what was resident at exit is unknown (no exit snapshot)."]
    by_cat: Counter[str] = Counter()
    for r in summary.table:
        by_cat[r.category] += r.figures.resident
    parts = [f"{size_text(n)} {_resident_word(cat)}" for cat, n in by_cat.most_common(3) if n]
    out = [f"{text}; {size_text(t.resident)} was resident at exit ({join_words(parts)})."]
    up = summary.upfront.figures
    if up.total and summary.header.phases_known:
        out.append(
            f"Upfront cost (before main): {plural(up.total, 'call')}, "
            f"{size_text(up.committed)} made accessible"
            + (f" and {size_text(up.reserved)} reserved" if up.reserved else "")
            + f"; {size_text(up.resident)} of it was still resident at exit."
        )
    return out


def _resident_word(category: str) -> str:
    return {
        "loader": "in what the loader mapped",
        "allocator": "in the allocator's memory",
        "thread-stack": "in thread stacks",
        "user": "in the program's own mappings",
        "runtime": "in runtime arenas",
        KERNEL: "in what the kernel mapped at exec",
    }.get(category, f"in {category}")


def phase_words(phase: str) -> str:
    """``before main``, ``in main``, ``at exit``."""
    return {"startup": "before main", "main": "in main", "exit": "at exit"}.get(phase, phase)
