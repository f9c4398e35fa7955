"""Diffs: two or more summaries side by side, with deltas, and where the difference comes from.

The first variant is the baseline; every delta is against it. The explanation splits each
difference in calls into its sources -- the loader mapping objects one variant has and the other
lacks (and who needed them), the loader's own data, the allocator's own calls, thread stacks,
the program's own calls -- and sets address space reserved and committed against what was
resident at exit. Timings (untraced runs: wall time and peak RSS) come from the caller.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from analyzers.summarize import (
    SYSCALL_KINDS,
    ArenaRow,
    CallRow,
    Figures,
    ObjectRow,
    Summary,
    join_words,
    mapped_bytes,
    noun,
    plural,
    roles_text,
    size_text,
)


@dataclass
class Timing:
    """Untraced runs of one variant: wall time and peak RSS (``wait4`` rusage)."""

    runs: int
    wall_ns: list[int]
    peak_rss: list[int]  # bytes
    exit_codes: list[int]
    wall_median: int
    wall_min: int
    wall_max: int
    rss_median: int
    rss_min: int
    rss_max: int


def timing(wall_ns: Sequence[int], peak_rss: Sequence[int], exit_codes: Sequence[int]) -> Timing:
    """Median and range of measured runs (at least one)."""
    if not wall_ns or len(wall_ns) != len(peak_rss):
        raise ValueError("timing needs as many wall times as peak RSS values, at least one")
    return Timing(
        runs=len(wall_ns),
        wall_ns=list(wall_ns),
        peak_rss=list(peak_rss),
        exit_codes=list(exit_codes),
        wall_median=int(statistics.median(wall_ns)),
        wall_min=min(wall_ns),
        wall_max=max(wall_ns),
        rss_median=int(statistics.median(peak_rss)),
        rss_min=min(peak_rss),
        rss_max=max(peak_rss),
    )


@dataclass
class Variant:
    """One side of the diff."""

    label: str
    trace: str
    allocator: str
    outcome: str
    timing: Timing | None


@dataclass
class MetricRow:
    """One figure across the variants, with its delta against the baseline."""

    group: str  # calls | before main | loader | allocator | threads | address space | untraced
    metric: str
    unit: str  # count | bytes | ns
    values: list[int | None]
    deltas: list[int | None]


@dataclass
class ObjectChange:
    """An object one variant's loader mapped and the baseline's did not (or the reverse)."""

    label: str
    change: str  # extra | missing
    name: str
    how: str
    needed_by: str | None
    mmaps: int
    mprotects: int
    mapped: int
    resident: int


@dataclass
class Sources:
    """Where a variant's calls of one kind come from, and how that differs from the baseline."""

    label: str
    kind: str  # a syscall kind, or "all"
    total: int
    objects: int  # the loader, mapping objects
    loader_data: int  # the loader, for itself
    allocator: int
    stacks: int
    own: int
    other: int
    delta: dict[str, int]  # the same fields minus the baseline's


@dataclass
class VariantCalls:
    """The allocators' own calls before main in one variant."""

    label: str
    calls: list[CallRow]
    text: str  # the calls grouped by syscall and role, with sizes


@dataclass
class VariantArenas:
    """Arenas (heaps, segments, blocks) one variant created, and by which threads."""

    label: str
    threads: int  # threads other than the main ones
    arenas: list[ArenaRow]


@dataclass
class Diff:
    """Variants side by side, and sentences that say where the differences come from."""

    program: str
    argv: list[str]
    baseline: str
    variants: list[Variant]
    metrics: list[MetricRow]
    objects: list[ObjectChange]
    sources: list[Sources]
    startup_calls: list[VariantCalls]
    arenas: list[VariantArenas]
    sentences: list[str]


def diff(
    variants: Sequence[tuple[str, Summary]], timings: Sequence[Timing | None] | None = None
) -> Diff:
    """Compare labelled summaries (two or more); the first is the baseline."""
    if len(variants) < 2:
        raise ValueError("a diff needs two or more variants")
    times = list(timings) if timings is not None else [None] * len(variants)
    labels = [label for label, _ in variants]
    summaries = [s for _, s in variants]
    base = summaries[0]
    sides = [
        Variant(
            label,
            s.header.trace,
            join_words(list(dict.fromkeys(a.description for a in s.header.allocators))),
            s.header.outcome,
            t,
        )
        for (label, s), t in zip(variants, times, strict=True)
    ]
    sources = [_sources(label, s, kind, base) for kind in ("mmap", "all") for label, s in variants]
    out = Diff(
        program=base.header.program,
        argv=list(base.header.argv),
        baseline=labels[0],
        variants=sides,
        metrics=_metrics(summaries, times),
        objects=[c for label, s in variants[1:] for c in _object_changes(label, s, base)],
        sources=sources,
        startup_calls=[
            VariantCalls(
                label,
                list(s.allocator_startup),
                roles_text([r for r in s.allocator_roles if r.phase == "startup"]),
            )
            for label, s in variants
        ],
        arenas=[
            VariantArenas(label, sum(1 for t in s.threads if not t.main), list(s.arenas))
            for label, s in variants
        ],
        sentences=[],
    )
    out.sentences = diff_sentences(out, summaries)
    return out


def _figures(rows: Sequence[object]) -> Figures:
    total = Figures()
    for row in rows:
        figures = getattr(row, "figures", None)
        if isinstance(figures, Figures):
            total.merge(figures)
    return total


def _metrics(summaries: Sequence[Summary], times: Sequence[Timing | None]) -> list[MetricRow]:
    rows: list[MetricRow] = []

    def add(group: str, metric: str, unit: str, values: Sequence[int | None]) -> None:
        first = values[0]
        deltas = [None if v is None or first is None else v - first for v in values]
        rows.append(MetricRow(group, metric, unit, list(values), deltas))

    for kind in SYSCALL_KINDS:
        values = [s.totals.calls.get(kind, 0) for s in summaries]
        if any(values):
            add("calls", kind, "count", values)
    add("calls", "total", "count", [s.totals.total for s in summaries])
    add("before main", "calls", "count", [s.upfront.figures.total for s in summaries])
    add("before main", "mmap", "count", [s.upfront.figures.calls["mmap"] for s in summaries])
    add("loader", "objects mapped", "count", [_mapped_objects(s) for s in summaries])
    add("loader", "mmaps for objects", "count", [_object_mmaps(s) for s in summaries])
    add(
        "loader",
        "mmaps for itself",
        "count",
        [_figures(s.loader_data).calls["mmap"] for s in summaries],
    )
    add("allocator", "calls", "count", [_figures(s.allocator_roles).total for s in summaries])
    add("allocator", "calls before main", "count", [len(s.allocator_startup) for s in summaries])
    add("threads", "threads started", "count", [_threads(s) for s in summaries])
    add("threads", "arenas created", "count", [sum(a.count for a in s.arenas) for s in summaries])
    add("address space", "reserved", "bytes", [s.totals.reserved for s in summaries])
    add("address space", "committed", "bytes", [s.totals.committed for s in summaries])
    known = all(s.header.resident_known for s in summaries)
    add(
        "address space",
        "resident at exit",
        "bytes",
        [s.totals.resident if known else None for s in summaries],
    )
    if any(t is not None for t in times):
        add("untraced", "wall time (median)", "ns", [t.wall_median if t else None for t in times])
        add("untraced", "peak RSS (median)", "bytes", [t.rss_median if t else None for t in times])
    return rows


def _mapped_objects(s: Summary) -> int:
    return len({o.name for o in s.objects if o.mmaps})


def _object_mmaps(s: Summary) -> int:
    return sum(o.mmaps for o in s.objects)


def _threads(s: Summary) -> int:
    return s.stacks.threads if s.stacks is not None else 0


def _by_name(s: Summary) -> dict[str, ObjectRow]:
    """Objects the loader mapped, by name (the first process's row when several had it)."""
    out: dict[str, ObjectRow] = {}
    for o in s.objects:
        if o.mmaps:
            out.setdefault(o.name, o)
    return out


def _object_changes(label: str, s: Summary, base: Summary) -> list[ObjectChange]:
    mine, theirs = _by_name(s), _by_name(base)
    out = [
        ObjectChange(
            label, "extra", o.name, o.how, o.needed_by, o.mmaps, o.mprotects, o.mapped, o.resident
        )
        for name, o in mine.items()
        if name not in theirs
    ]
    out += [
        ObjectChange(
            label,
            "missing",
            o.name,
            o.how,
            o.needed_by,
            o.mmaps,
            o.mprotects,
            o.mapped,
            o.resident,
        )
        for name, o in theirs.items()
        if name not in mine
    ]
    return out


_PARTS = ("objects", "loader_data", "allocator", "stacks", "own", "other")


def _parts(s: Summary, kind: str) -> dict[str, int]:
    def count(figures: Figures) -> int:
        return figures.total if kind == "all" else figures.calls.get(kind, 0)

    objects = sum(
        (o.mmaps + o.mprotects + o.munmaps)
        if kind == "all"
        else {"mmap": o.mmaps, "mprotect": o.mprotects, "munmap": o.munmaps}.get(kind, 0)
        for o in s.objects
    )
    stacks = count(s.stacks.figures) if s.stacks is not None else 0
    total = count(s.totals)
    parts = {
        "objects": objects,
        "loader_data": count(_figures(s.loader_data)),
        "allocator": count(_figures(s.allocator_roles)),
        "stacks": stacks,
        "own": count(_figures(s.own)),
    }
    parts["other"] = total - sum(parts.values())
    parts["total"] = total
    return parts


def _sources(label: str, s: Summary, kind: str, base: Summary) -> Sources:
    mine, theirs = _parts(s, kind), _parts(base, kind)
    delta = {k: mine[k] - theirs[k] for k in (*_PARTS, "total")}
    return Sources(
        label,
        kind,
        mine["total"],
        mine["objects"],
        mine["loader_data"],
        mine["allocator"],
        mine["stacks"],
        mine["own"],
        mine["other"],
        delta,
    )


# ---- sentences -----------------------------------------------------------------------------


def _signed(n: int) -> str:
    return f"{n:+d}"


def _signed_size(n: int) -> str:
    return ("+" if n >= 0 else "-") + size_text(abs(n))


def _allocator_name(s: Summary) -> str:
    names = list(dict.fromkeys(a.name for a in s.header.allocators))
    return join_words(names) or "the allocator"


def diff_sentences(d: Diff, summaries: Sequence[Summary]) -> list[str]:
    """Where each variant differs from the baseline, in plain sentences built from the figures."""
    out: list[str] = []
    base = summaries[0]
    a = d.baseline
    for variant, s in zip(d.variants[1:], summaries[1:], strict=True):
        b = variant.label
        out.append(
            f"{b} made {plural(s.totals.total, 'memory syscall')} against {a}'s "
            f"{base.totals.total} ({_signed(s.totals.total - base.totals.total)}); "
            f"mmaps {base.totals.calls['mmap']} -> {s.totals.calls['mmap']} "
            f"({_signed(s.totals.calls['mmap'] - base.totals.calls['mmap'])})."
        )
        src = next(x for x in d.sources if x.label == b and x.kind == "mmap")
        parts = []
        extra = [c for c in d.objects if c.label == b and c.change == "extra"]
        missing = [c for c in d.objects if c.label == b and c.change == "missing"]
        if src.delta["objects"]:
            what = f"{noun(len(extra), 'extra object')}" if extra else "the objects"
            parts.append(f"{_signed(src.delta['objects'])} from the loader mapping {what}")
        if src.delta["loader_data"]:
            parts.append(f"{_signed(src.delta['loader_data'])} from the loader's own data")
        if src.delta["allocator"]:
            parts.append(f"{_signed(src.delta['allocator'])} from {_allocator_name(s)} itself")
        if src.delta["stacks"]:
            parts.append(f"{_signed(src.delta['stacks'])} thread stacks")
        if src.delta["own"]:
            parts.append(f"{_signed(src.delta['own'])} from the program's own calls")
        if src.delta["other"]:
            parts.append(f"{_signed(src.delta['other'])} elsewhere")
        if parts and src.delta["total"]:
            out.append(f"The {_signed(src.delta['total'])} mmaps under {b}: {join_words(parts)}.")
        if extra:
            items = []
            for c in extra:
                why = {
                    "LD_PRELOAD": "injected by LD_PRELOAD",
                    "kernel": "mapped by the kernel",
                }.get(c.how, c.how)
                if c.needed_by is not None:
                    verb = "needed" if c.how == "DT_NEEDED" else "dlopen'd"
                    why = f"{verb} by {c.needed_by}"
                items.append(f"{c.name} ({plural(c.mmaps, 'mmap')}, {why})")
            out.append(f"The loader mapped for {b} only: {join_words(items)}.")
        if missing:
            names = join_words([c.name for c in missing])
            out.append(f"{a} mapped what {b} did not: {names}.")
        calls = next(x for x in d.startup_calls if x.label == b)
        base_calls = d.startup_calls[0]
        if calls.calls or base_calls.calls:
            mine = (
                f"{_allocator_name(s)} made {plural(len(calls.calls), 'call')} of its own before "
                f"main ({calls.text})"
                if calls.calls
                else f"{_allocator_name(s)} made no call of its own before main"
            )
            theirs = f"{_allocator_name(base)} made {len(base_calls.calls) or 'none'}"
            out.append(f"Under {b}, {mine}; under {a}, {theirs}.")
        t, bt = s.totals, base.totals
        parts = []
        if t.reserved or bt.reserved:
            parts.append(
                f"reserved {size_text(t.reserved)} PROT_NONE "
                f"({_signed_size(t.reserved - bt.reserved)})"
            )
        parts.append(
            f"made {size_text(t.committed)} accessible ({_signed_size(t.committed - bt.committed)})"
        )
        known = s.header.resident_known and base.header.resident_known
        if known:
            parts.append(
                f"{size_text(t.resident)} was resident at exit "
                f"({_signed_size(t.resident - bt.resident)})"
            )
        text = f"{b} {join_words(parts)}"
        if extra and known:
            mapped = sum(c.mapped for c in extra)
            resident = sum(c.resident for c in extra)
            text += (
                f"; the extra objects account for {size_text(mapped)} mapped and "
                f"{size_text(resident)} resident"
            )
        own = _figures(s.allocator_roles)
        if own.total and known:
            text += (
                f"; {_allocator_name(s)}'s own memory for "
                f"{size_text(mapped_bytes(s.allocator_roles))} mapped and "
                f"{size_text(own.resident)} resident"
            )
        out.append(text + ".")
    out.extend(_arena_sentences(d))
    out.extend(_timing_sentences(d))
    return out


def _arena_sentences(d: Diff) -> list[str]:
    if not any(v.arenas for v in d.arenas) or not any(v.threads for v in d.arenas):
        return []
    parts = []
    for v in d.arenas:
        if not v.arenas:
            parts.append(f"{v.label} created no arena for its {plural(v.threads, 'thread')}")
            continue
        kinds = []
        for row in v.arenas:
            others = row.count - row.by_main
            made = row.threads - (1 if row.by_main else 0)
            spread = (
                f"{row.per_thread_min}"
                if row.per_thread_min == row.per_thread_max
                else f"{row.per_thread_min}-{row.per_thread_max}"
            )
            kind = row.kind.removeprefix(row.owner + " ")
            text = f"{noun(row.count, kind)} ({size_text(row.reserved)})"
            detail = []
            if row.by_main:
                detail.append(f"{row.by_main} in the main thread")
            if others:
                detail.append(f"{spread} per thread in {made} of {v.threads} threads")
            kinds.append(f"{text}: {join_words(detail)}")
        parts.append(f"{v.label} created {'; '.join(kinds)}")
    return ["Arenas per thread: " + ". ".join(parts) + "."]


def _ms(ns: int) -> str:
    return f"{ns / 1e6:.1f} ms"


def _timing_sentences(d: Diff) -> list[str]:
    timed = [v for v in d.variants if v.timing is not None]
    if not timed:
        return []
    parts = []
    for v in timed:
        t = v.timing
        assert t is not None
        parts.append(
            f"{v.label} {_ms(t.wall_median)} ({_ms(t.wall_min)}-{_ms(t.wall_max)}), "
            f"peak RSS {size_text(t.rss_median)} ({size_text(t.rss_min)}-{size_text(t.rss_max)})"
        )
    runs = timed[0].timing.runs if timed[0].timing else 0
    return [f"Untraced, median of {plural(runs, 'run')} (min-max): " + "; ".join(parts) + "."]
