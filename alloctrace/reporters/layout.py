"""The layout of reports and diffs, shared by the text and markdown reporters.

A document is sections of facts, sentences and tables of already formatted cells (sizes in
KiB/MiB). The layout chooses what to show and formats it; it computes no figure. It also says
which titles, cells and headers stand for a category (``Section.category``,
``Table.category_column``, ``Table.header_categories``), so that a reporter may colour them
(the text reporter does on a terminal, with alloctrace.palette, the plots' colours).
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field

import tabulate as tabulate_module

from analyzers.diff import Diff, MetricRow, Sources
from analyzers.summarize import (
    SYSCALL_KINDS,
    AllocatorFact,
    ArenaRow,
    Figures,
    RoleRow,
    Summary,
    call_breakdown,
    phase_words,
    size_text,
    sizes_text,
)


@dataclass
class Facts:
    """``name  value`` lines."""

    pairs: list[tuple[str, str]]


@dataclass
class Bullets:
    """Sentences, one per item."""

    items: list[str]


@dataclass
class Table:
    """Formatted cells; ``numeric`` columns are right-aligned.

    ``category_column``: a column whose (non-empty) cells are category names;
    ``header_categories``: column -> the category its header stands for.
    """

    headers: list[str]
    rows: list[list[str]]
    numeric: set[int] = field(default_factory=set)
    category_column: int | None = None
    header_categories: dict[int, str] = field(default_factory=dict)


@dataclass
class Note:
    """One line of plain text."""

    text: str


Block = Facts | Bullets | Table | Note


@dataclass
class Section:
    """A titled part of the report; ``category``: the category it is about, if one."""

    title: str
    blocks: list[Block]
    category: str | None = None


@dataclass
class Document:
    """A whole report: a title, the facts under it, and sections."""

    title: str
    facts: Facts
    sections: list[Section]


def table_text(block: Table, tablefmt: str, escape: str = "") -> str:
    """``block`` drawn by tabulate, numbers right-aligned, columns two spaces apart."""
    align = ["right" if i in block.numeric else "left" for i in range(len(block.headers))]
    rows = [[c.replace(escape, "\\" + escape) if escape else c for c in r] for r in block.rows]
    headers = [h.replace(escape, "\\" + escape) if escape else h for h in block.headers]
    saved = tabulate_module.MIN_PADDING
    tabulate_module.MIN_PADDING = 0  # headers get no extra padding beyond the column gap
    try:
        return tabulate_module.tabulate(
            rows, headers=headers, tablefmt=tablefmt, colalign=align, disable_numparse=True
        )
    finally:
        tabulate_module.MIN_PADDING = saved


def size(n: int) -> str:
    """A byte figure for a table cell: ``-`` for nothing."""
    return size_text(n) if n else "-"


def count(n: int) -> str:
    """A count for a table cell: ``-`` for nothing."""
    return str(n) if n else "-"


def ms(ns: int) -> str:
    """Nanoseconds as milliseconds."""
    return f"{ns / 1e6:.1f} ms"


def _kinds_used(figures: Sequence[Figures]) -> list[str]:
    return [k for k in SYSCALL_KINDS if any(f.calls.get(k) for f in figures)]


def _role_sizes(row: RoleRow) -> str:
    """The sizes of a role's calls: its mmaps' if it made any, else its first kind's."""
    grown = sum(s for s in row.sizes.get("brk", []) if s > 0)
    if grown:
        return f"+{size_text(grown)}"
    for kind in ("mmap", *SYSCALL_KINDS):
        sizes = row.sizes.get(kind, [])
        if kind != "brk" and any(sizes):
            return sizes_text(sizes)
    return "-"


def _kind(owner: str, kind: str) -> str:
    return kind.removeprefix(owner + " ")


def _per_thread(row: ArenaRow) -> str:
    """How many each creating thread made: "2", or "1-3" when they differ."""
    if row.per_thread_min == row.per_thread_max:
        return str(row.per_thread_min)
    return f"{row.per_thread_min}-{row.per_thread_max}"


# ---- the report of one trace ---------------------------------------------------------------


def report_document(summary: Summary) -> Document:
    """Lay out the report of one trace."""
    h = summary.header
    facts: list[tuple[str, str]] = [("program", shlex.join(h.argv) or h.program)]
    for a in _distinct_allocators(summary):
        where = f"  {a.path}" if a.path else ""
        facts.append(("allocator", f"{a.description}{where}"))
    for name, value in h.env.items():
        facts.append(("environment", f"{name}={value}"))
    ended = h.outcome + (f", after {ms(h.wall_ns)} traced" if h.wall_ns is not None else "")
    facts.append(("ended", ended))
    facts.append(
        (
            "calls",
            f"{h.syscalls} memory syscalls in {h.processes} "
            f"{'process' if h.processes == 1 else 'processes'}, "
            f"{h.threads} {'thread' if h.threads == 1 else 'threads'}"
            + (f"; {h.failed} failed" if h.failed else ""),
        )
    )
    if h.decided_by:
        decided = ", ".join(f"by {k} {v}" for k, v in sorted(h.decided_by.items()))
        facts.append(("classified", decided + ("" if h.stacks else " (no call stacks recorded)")))
    machine = h.machine
    if machine:
        facts.append(
            (
                "machine",
                ", ".join(
                    f"{k} {machine[k]}"
                    for k in ("kernel", "cpus", "libc", "overcommit_memory", "thp")
                    if k in machine
                ),
            )
        )
    facts.append(("trace", h.trace))
    sections = [Section("In short", [Bullets(list(summary.sentences))])]
    sections.append(_phase_section(summary))
    sections.extend(_loader_sections(summary))
    sections.extend(_allocator_sections(summary))
    sections.extend(_thread_sections(summary))
    sections.append(_own_section(summary))
    if summary.others:
        sections.append(Section("Other calls", [_role_table(summary.others, owner=True)]))
    return Document(f"alloctrace report: {h.program}", Facts(facts), sections)


def _distinct_allocators(summary: Summary) -> list[AllocatorFact]:
    seen: dict[str, AllocatorFact] = {}
    for a in summary.header.allocators:
        seen.setdefault(a.description + (a.path or ""), a)
    return list(seen.values())


def _phase_section(summary: Summary) -> Section:
    rows = summary.table
    kinds = _kinds_used([r.figures for r in rows])
    headers = ["phase", "category", *kinds, "total", "reserved", "committed", "resident"]
    cells = []
    for r in rows:
        f = r.figures
        cells.append(
            [
                r.phase,
                r.category,
                *(count(f.calls.get(k, 0)) for k in kinds),
                count(f.total),
                size(f.reserved),
                size(f.committed),
                size(f.resident),
            ]
        )
    t = summary.totals
    cells.append(
        [
            "all",
            "",
            *(count(t.calls.get(k, 0)) for k in kinds),
            count(t.total),
            size(t.reserved),
            size(t.committed),
            size(t.resident),
        ]
    )
    numeric = set(range(2, len(headers)))
    blocks: list[Block] = [Table(headers, cells, numeric, category_column=1)]
    note = (
        "reserved: mapped PROT_NONE; committed: made accessible (mmap, mprotect, brk, mremap); "
        "resident: Rss at exit."
    )
    if not summary.header.resident_known:
        note += " No exit snapshot: resident is unknown."
    if any(r.category == "kernel" for r in rows):
        note += " kernel: what execve mapped (executable, ld.so, stack, vDSO)."
    blocks.append(Note(note))
    return Section("By phase and category", blocks)


def _loader_sections(summary: Summary) -> list[Section]:
    out = []
    if summary.objects:
        several = len({o.pid for o in summary.objects}) > 1
        headers = [
            *(["pid"] if several else []),
            "object",
            "how",
            "needed by",
            "mmaps",
            "mprotects",
            "mapped",
            "resident",
            "segments",
        ]
        cells = [
            [
                *([str(o.pid)] if several else []),
                o.name,
                o.how,
                o.needed_by or "-",
                count(o.mmaps),
                count(o.mprotects),
                size(o.mapped),
                size(o.resident),
                " ".join(o.segments) or "-",
            ]
            for o in summary.objects
        ]
        first = 1 if several else 0
        out.append(
            Section(
                "The loader, per object",
                [Table(headers, cells, {first + 3, first + 4, first + 5, first + 6})],
                "loader",
            )
        )
    if summary.loader_data:
        out.append(
            Section(
                "The loader, for itself",
                [_role_table(summary.loader_data, owner=False)],
                "loader",
            )
        )
    return out


def _role_table(rows: Sequence[RoleRow], owner: bool = True) -> Table:
    headers = [
        *(["owner"] if owner else []),
        "role",
        "phase",
        "calls",
        "sizes",
        "reserved",
        "committed",
        "resident",
    ]
    cells = [
        [
            *([r.owner] if owner else []),
            r.role,
            r.phase,
            call_breakdown(r.figures.calls),
            _role_sizes(r),
            size(r.figures.reserved),
            size(r.figures.committed),
            size(r.figures.resident),
        ]
        for r in rows
    ]
    first = 1 if owner else 0
    return Table(headers, cells, {first + 4, first + 5, first + 6})


def _allocator_sections(summary: Summary) -> list[Section]:
    out = []
    if summary.allocator_roles:
        out.append(
            Section(
                "The allocator, per role",
                [_role_table(summary.allocator_roles, owner=True)],
                "allocator",
            )
        )
    calls = summary.allocator_startup
    if calls:
        owners = sorted({c.owner for c in calls})
        several_tids = len({c.tid for c in calls}) > 1
        headers = [
            "seq",
            *(["tid"] if several_tids else []),
            "call",
            "size",
            "prot",
            "flags / advice",
            "role",
        ]
        cells = [
            [
                str(c.seq),
                *([str(c.tid)] if several_tids else []),
                c.syscall + ("" if c.ok else " (failed)"),
                _brk_or_size(c.syscall, c.size),
                c.prot or "",
                c.flags or "",
                c.role,
            ]
            for c in calls
        ]
        title = f"{' and '.join(owners)}: its own calls before main"
        out.append(Section(title, [Table(headers, cells, {0})], "allocator"))
    return out


def _thread_sections(summary: Summary) -> list[Section]:
    out = []
    blocks: list[Block] = []
    if summary.arenas:
        headers = [
            "owner",
            "kind",
            "created",
            "reserved",
            "main thread",
            "other threads",
            "per thread",
            "when",
        ]
        cells = []
        for a in summary.arenas:
            cells.append(
                [
                    a.owner,
                    _kind(a.owner, a.kind),
                    str(a.count),
                    size(a.reserved),
                    count(a.by_main),
                    count(a.other_threads),
                    _per_thread(a),
                    ", ".join(phase_words(p) for p in a.phases),
                ]
            )
        blocks.append(Table(headers, cells, {2, 3, 4, 5, 6}))
    workers = [t for t in summary.threads if not t.main]
    if workers and summary.arenas:
        kinds = list(dict.fromkeys(k for t in summary.threads for k in t.arenas))
        headers = ["tid", "thread", "calls", *kinds, "reserved"]
        cells = [
            [
                str(t.tid),
                "main" if t.main else "other",
                count(t.calls),
                *(count(t.arenas.get(k, 0)) for k in kinds),
                size(t.reserved),
            ]
            for t in summary.threads
        ]
        blocks.append(Table(headers, cells, set(range(2, len(headers)))))
    if blocks:
        out.append(Section("Arenas, and the threads that made them", blocks, "allocator"))
    s = summary.stacks
    if s is not None:
        facts = [
            ("threads started", str(s.threads)),
            ("stacks mapped", str(s.stacks)),
            ("each", ", ".join(size_text(n) for n in s.sizes) or "-"),
            ("calls", call_breakdown(s.figures.calls) or "-"),
            ("reserved", size(s.figures.reserved)),
            ("committed", size(s.figures.committed)),
            ("released at thread exit", size(s.released)),
            ("unmapped", size(s.freed)),
            ("resident at exit", size(s.figures.resident)),
        ]
        out.append(Section("Thread stacks", [Facts(facts)], "thread-stack"))
    return out


def _own_section(summary: Summary) -> Section:
    if not summary.own:
        return Section("The program's own calls", [Note("None.")], "user")
    return Section("The program's own calls", [_role_table(summary.own, owner=True)], "user")


# ---- diffs ---------------------------------------------------------------------------------


def _metric_cell(row: MetricRow, value: int | None) -> str:
    if value is None:
        return "?"
    if row.unit == "bytes":
        return size_text(value)
    if row.unit == "ns":
        return ms(value)
    return str(value)


def _delta_cell(row: MetricRow, delta: int | None) -> str:
    if delta is None:
        return "?"
    if delta == 0:
        return "="
    sign = "+" if delta > 0 else "-"
    if row.unit == "bytes":
        return sign + size_text(abs(delta))
    if row.unit == "ns":
        return sign + ms(abs(delta))
    return f"{delta:+d}"


def _source_cell(s: Sources, value: int, key: str, index: int) -> str:
    delta = s.delta.get(key, 0)
    return f"{value}" + (f" ({delta:+d})" if delta and index else "")


def _brk_or_size(syscall: str, n: int) -> str:
    if syscall != "brk":
        return size_text(n)
    return f"+{size_text(n)}" if n else "query"


def diff_document(d: Diff) -> Document:
    """Lay out a diff of two or more variants."""
    facts: list[tuple[str, str]] = [("program", shlex.join(d.argv) or d.program)]
    for v in d.variants:
        facts.append((v.label, f"{v.allocator}; {v.outcome}; trace {v.trace}"))
    sections = [Section("In short", [Bullets(list(d.sentences))])]
    headers = ["", "", d.variants[0].label]
    for v in d.variants[1:]:
        headers += [v.label, "delta"]
    cells = []
    group = ""
    for row in d.metrics:
        line = [row.group if row.group != group else "", row.metric]
        group = row.group
        line.append(_metric_cell(row, row.values[0]))
        for value, delta in zip(row.values[1:], row.deltas[1:], strict=True):
            line += [_metric_cell(row, value), _delta_cell(row, delta)]
        cells.append(line)
    sections.append(Section("Side by side", [Table(headers, cells, set(range(2, len(headers))))]))
    if d.objects:
        headers = ["variant", "", "object", "how", "needed by", "mmaps", "mprotects", "mapped"]
        cells = [
            [
                c.label,
                c.change,
                c.name,
                c.how,
                c.needed_by or "-",
                count(c.mmaps),
                count(c.mprotects),
                size(c.mapped),
            ]
            for c in d.objects
        ]
        sections.append(
            Section(
                f"Objects mapped in one variant and not in {d.baseline}",
                [Table(headers, cells, {5, 6, 7})],
                "loader",
            )
        )
    src = [s for s in d.sources if s.kind == "mmap"]
    headers = [
        "variant",
        "mmaps",
        "objects",
        "loader itself",
        "allocator",
        "stacks",
        "own",
        "other",
    ]
    cells = [
        [
            s.label,
            _source_cell(s, s.total, "total", i),
            _source_cell(s, s.objects, "objects", i),
            _source_cell(s, s.loader_data, "loader_data", i),
            _source_cell(s, s.allocator, "allocator", i),
            _source_cell(s, s.stacks, "stacks", i),
            _source_cell(s, s.own, "own", i),
            _source_cell(s, s.other, "other", i),
        ]
        for i, s in enumerate(src)
    ]
    # The columns after "mmaps" are the categories the mmaps came from.
    header_categories = dict(
        enumerate(["loader", "loader", "allocator", "thread-stack", "user", "other"], start=2)
    )
    sections.append(
        Section(
            "Where the mmaps come from",
            [Table(headers, cells, set(range(1, 8)), header_categories=header_categories)],
        )
    )
    blocks: list[Block] = []
    for vc in d.startup_calls:
        if not vc.calls:
            blocks.append(Note(f"{vc.label}: none."))
            continue
        cells = [
            [
                str(c.seq),
                c.owner,
                c.syscall,
                _brk_or_size(c.syscall, c.size),
                c.flags or "",
                c.role,
            ]
            for c in vc.calls
        ]
        blocks.append(Note(f"{vc.label}:"))
        blocks.append(Table(["seq", "owner", "call", "size", "flags / advice", "role"], cells, {0}))
    sections.append(Section("The allocators' own calls before main", blocks, "allocator"))
    if any(v.arenas for v in d.arenas):
        headers = [
            "variant",
            "kind",
            "created",
            "reserved",
            "main thread",
            "other threads",
            "per thread",
        ]
        cells = []
        for va in d.arenas:
            for a in va.arenas:
                cells.append(
                    [
                        va.label,
                        f"{a.owner} {_kind(a.owner, a.kind)}",
                        str(a.count),
                        size(a.reserved),
                        count(a.by_main),
                        f"{a.other_threads} of {va.threads}" if va.threads else "-",
                        _per_thread(a),
                    ]
                )
            if not va.arenas:
                cells.append([va.label, "none", "-", "-", "-", "-", "-"])
        sections.append(
            Section("Arenas per thread", [Table(headers, cells, {2, 3, 4})], "allocator")
        )
    timed = [v for v in d.variants if v.timing is not None]
    if timed:
        headers = [
            "variant",
            "runs",
            "wall (median)",
            "wall (min-max)",
            "peak RSS (median)",
            "peak RSS (min-max)",
        ]
        cells = []
        for v in timed:
            t = v.timing
            assert t is not None
            cells.append(
                [
                    v.label,
                    str(t.runs),
                    ms(t.wall_median),
                    f"{ms(t.wall_min)} - {ms(t.wall_max)}",
                    size_text(t.rss_median),
                    f"{size_text(t.rss_min)} - {size_text(t.rss_max)}",
                ]
            )
        sections.append(
            Section(
                "Untraced runs (wall time and peak RSS from wait4)",
                [Table(headers, cells, {1, 2, 4})],
            )
        )
    title = "alloctrace diff: " + " vs ".join(v.label for v in d.variants)
    return Document(title, Facts(facts), sections)
