"""The whole bench: measure everything in one run and render it as one report (markdown)."""

from __future__ import annotations

import datetime
import statistics
import tempfile
import time
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from tabulate import tabulate

from bench.harness import code_version, load_average, machine
from bench.record import Matrix, measure, stacks_trace
from bench.resources import AnalysisTime, Rss, analysis_time, peak_rss
from bench.workloads import (
    FILTER_ONLY,
    NO_STACKS,
    STACKS,
    STRACE_K,
    STRACE_SECCOMP,
    UNTRACED,
    VARIANTS,
    Sizes,
    Workload,
    workloads,
)

# Traces whose analysis is timed: the stacks trace of each of these workloads.
ANALYZED = ("a", "b", "c", "d1", "d2", "d3")
MIB = 2**20


@dataclass(frozen=True)
class Check:
    """One acceptance criterion of issue 7 against what this run measured.

    ``value`` comes from the medians (issue 7's figure), ``best`` from the minima: on a shared
    machine other work only adds time, so the minima show the least disturbed runs.
    """

    what: str
    value: float | None
    best: float | None
    limit: float
    unit: str = "x"

    def _show(self, value: float | None) -> str:
        return "not measured" if value is None else f"{value:.3g}{self.unit}"

    def _verdict(self, value: float | None) -> str:
        if value is None:
            return "-"
        return "meets" if value <= self.limit else "MISSES"

    def row(self) -> list[str]:
        """A table row: criterion, from medians, from minima, limit, verdicts."""
        return [
            self.what,
            self._show(self.value),
            self._show(self.best),
            f"<= {self.limit:g}{self.unit}",
            f"{self._verdict(self.value)} / {self._verdict(self.best)}",
        ]


@dataclass
class Results:
    """Everything one bench run measured."""

    sizes: Sizes
    matrix: Matrix
    rss: list[Rss]
    analysis: dict[str, AnalysisTime]
    started: datetime.datetime
    elapsed: float
    load_before: str
    load_after: str
    mode: str


def run(
    sizes: Sizes,
    runs: int,
    keys: Collection[str] | None = None,
    rss: bool = True,
    analysis: bool = True,
    progress: bool = True,
    mode: str = "",
    analyzed: Collection[str] = ANALYZED,
) -> Results:
    """Measure the workloads named by ``keys`` (all by default), peak RSS and analysis time.

    ``analyzed``: the workloads whose stacks trace gets its analysis timed.
    """
    started = datetime.datetime.now(datetime.UTC)
    start = time.perf_counter()
    load_before = load_average()
    with tempfile.TemporaryDirectory(prefix="alloctrace-bench-") as tmp_name:
        tmp = Path(tmp_name)
        chosen = [w for w in workloads(sizes, tmp) if keys is None or w.key in keys]
        matrix = measure(chosen, tmp, runs, VARIANTS, progress)
        rss_results = peak_rss(sizes.rss_pairs, tmp, progress=progress) if rss else []
        timed: dict[str, AnalysisTime] = {}
        for w in chosen:
            trace = stacks_trace(matrix, w.key)
            if analysis and w.key in analyzed and trace is not None:
                timed[w.key] = analysis_time(trace, runs)
    return Results(
        sizes,
        matrix,
        rss_results,
        timed,
        started,
        time.perf_counter() - start,
        load_before,
        load_average(),
        mode,
    )


def _fmt_ratio(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def _variant_label(w: Workload, variant: str) -> str:
    if variant == STRACE_K and w.reduced is not None:
        return f"strace -k (1/{w.factor:g} size, scaled)"
    return variant


def main_table(m: Matrix) -> str:
    """The table of wall times and ratios: one row per workload and variant."""
    rows = []
    for w in m.workloads:
        events = m.workload_events(w.key)
        first = True
        for variant in m.variants:
            if not m.has(w.key, variant):
                continue
            times = m.times[w.key, variant]
            median = m.median(w.key, variant)
            untraced = m.median(w.key, UNTRACED) if m.has(w.key, UNTRACED) else None
            seccomp = m.median(w.key, STRACE_SECCOMP) if m.has(w.key, STRACE_SECCOMP) else None
            per_event = m.per_event_us(w.key, variant) if variant != UNTRACED else None
            zero = m.zero.get((w.key, variant))
            rows.append(
                [
                    w.title if first else "",
                    _variant_label(w, variant),
                    f"{min(times):.2f} / {median:.2f} / {max(times):.2f}",
                    f"{statistics.median(zero):.2f}" if zero else "",
                    f"{events:,}" if first and events is not None else "",
                    _fmt_ratio(median / untraced if untraced else None),
                    _fmt_ratio(median / seccomp if seccomp else None),
                    "" if per_event is None else f"{per_event:.1f}",
                ]
            )
            first = False
    headers = [
        "workload",
        "variant",
        "wall s (min / med / max)",
        "size 0: med s",
        "events",
        "x untraced",
        "x strace seccomp",
        "us/event",
    ]
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)


def scaling_notes(m: Matrix) -> list[str]:
    """What strace -k actually ran where its figure is an extrapolation."""
    notes = []
    for w in m.workloads:
        if w.reduced is None or not m.reduced.get(w.key):
            continue
        reduced = " ".join([Path(w.reduced[0]).name, *w.reduced[1:]])
        empty = " ".join([Path(w.empty[0]).name, *w.empty[1:]]) if w.empty else ""
        notes.append(
            f"- strace -k {w.key}: measured `{reduced}` (median "
            f"{statistics.median(m.reduced[w.key]):.2f} s) and `{empty}` (median "
            f"{statistics.median(m.zero[w.key, STRACE_K]):.2f} s); full size = "
            f"t(empty) + {w.factor:g} x (t(reduced) - t(empty)), per run."
        )
    return notes


def getpid_note(m: Matrix, sizes: Sizes) -> list[str]:
    """What each tracer adds per untraced getpid in (b): mostly its seccomp filter's cost."""
    if sizes.getpids <= 0 or not m.zero.get(("b", UNTRACED)):
        return []
    costs = []
    for variant in (FILTER_ONLY, STRACE_SECCOMP, NO_STACKS, STACKS):
        cost = m.marginal_us("b", variant)
        events, zero_events = m.workload_events("b"), m.zero_events.get("b")
        if cost is None or events is None or zero_events is None:
            continue
        ns = cost * (events - zero_events) / sizes.getpids * 1e3
        costs.append(f"{variant} {ns:.0f} ns")
    if not costs:
        return []
    return [
        "- (b) beyond size 0 and over untraced, per getpid (the 2,000 traced calls included; "
        f"'{FILTER_ONLY}': what the filter alone costs): " + ", ".join(costs) + "."
    ]


def per_event_table(m: Matrix) -> str | None:
    """Per-event cost with 16 threads (c) against one thread (a)."""
    if not (m.has("a", UNTRACED) and m.has("c", UNTRACED)):
        return None
    rows = []
    for variant in (STRACE_SECCOMP, STRACE_K, NO_STACKS, STACKS):
        row = [variant]
        for cost in (m.per_event_us, m.marginal_us):
            single, threaded = cost("a", variant), cost("c", variant)
            row += [
                "" if single is None else f"{single:.1f}",
                "" if threaded is None else f"{threaded:.1f}",
                _fmt_ratio(threaded / single if single and threaded is not None else None),
            ]
        rows.append(row)
    headers = [
        "tracer",
        "(a) us/event",
        "(c) us/event",
        "(c) / (a)",
        "(a) marginal",
        "(c) marginal",
        "(c) / (a) marginal",
    ]
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)


def rss_table(rss: list[Rss]) -> str:
    """Tracer peak RSS while recording the large mmapbench."""
    rows = [
        [
            f"alloctrace record{' --no-stacks' if r.variant == NO_STACKS else ''}",
            f"{r.events:,}",
            f"{r.seconds:.1f}",
            f"{r.peak_bytes / MIB:.1f}",
        ]
        for r in rss
    ]
    headers = ["recording", "events", "wall s", "peak RSS MiB"]
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)


def analysis_table(m: Matrix, timed: dict[str, AnalysisTime]) -> str:
    """Analysis time of each stacks trace against the time it took to record it: medians, and
    the fastest analysis against the fastest recording."""
    rows = []
    for w in m.workloads:
        if w.key not in timed:
            continue
        t = timed[w.key]
        variant = STACKS if m.has(w.key, STACKS) else NO_STACKS
        recording = m.median(w.key, variant)
        fastest = m.stat(w.key, variant, best=True)
        rows.append(
            [
                w.title,
                f"{m.events.get((w.key, variant), 0):,}",
                f"{recording:.2f}",
                f"{t.read:.2f} + {t.analyze:.2f} ({t.best:.2f})",
                f"{_fmt_ratio(t.seconds / recording)} ({_fmt_ratio(t.best / fastest)})",
                f"{t.summarize:.2f} ({_fmt_ratio((t.seconds + t.summarize) / recording)})",
                f"{t.wall:.2f}",
            ]
        )
    headers = [
        "trace (alloctrace with stacks)",
        "events",
        "recording s (median)",
        "read_trace + analyze s, median (fastest)",
        "analysis / recording, medians (fastest)",
        "+ summarize s (all / recording)",
        "subprocess wall s",
    ]
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)


def checks(r: Results) -> list[Check]:
    """Issue 7's acceptance criteria, each with the figure this run measured (None: not run)."""
    m = r.matrix

    def ratio(key: str, variant: str, reference: str, best: bool) -> float | None:
        if m.has(key, variant) and m.has(key, reference):
            return m.stat(key, variant, best) / m.stat(key, reference, best)
        return None

    def threads(variant: str, marginal: bool, best: bool) -> float | None:
        cost = m.marginal_us if marginal else m.per_event_us
        single, threaded = cost("a", variant, best), cost("c", variant, best)
        return threaded / single if single and threaded is not None else None

    def analysis(best: bool) -> float | None:
        ratios = [
            (t.best if best else t.seconds) / m.stat(k, STACKS, best)
            for k, t in r.analysis.items()
            if m.has(k, STACKS)
        ]
        return max(ratios, default=None)

    worst_rss = max((x.peak_bytes / MIB for x in r.rss), default=None)
    events = max((x.events for x in r.rss), default=0)
    return [
        Check(
            "(a) alloctrace --no-stacks / strace --seccomp-bpf",
            ratio("a", NO_STACKS, STRACE_SECCOMP, False),
            ratio("a", NO_STACKS, STRACE_SECCOMP, True),
            1.1,
        ),
        Check(
            "(b) alloctrace --no-stacks / untraced",
            ratio("b", NO_STACKS, UNTRACED, False),
            ratio("b", NO_STACKS, UNTRACED, True),
            1.1,
        ),
        *(
            Check(
                f"(c) per-event cost{' (marginal)' if marginal else ''}, 16 threads / 1 thread, "
                f"{variant}",
                threads(variant, marginal, False),
                threads(variant, marginal, True),
                1.3,
            )
            for marginal in (False, True)
            for variant in (NO_STACKS, STACKS)
        ),
        Check(
            "(a) alloctrace (stacks) / strace --seccomp-bpf",
            ratio("a", STACKS, STRACE_SECCOMP, False),
            ratio("a", STACKS, STRACE_SECCOMP, True),
            2,
        ),
        Check(
            "(a) alloctrace (stacks) / strace -k",
            ratio("a", STACKS, STRACE_K, False),
            ratio("a", STACKS, STRACE_K, True),
            0.05,
        ),
        Check(
            f"peak tracer RSS at {events:,} events (worst variant, one run)",
            worst_rss,
            worst_rss,
            150,
            " MiB",
        ),
        Check("analysis / recording time (worst trace)", analysis(False), analysis(True), 0.25),
    ]


def render(r: Results) -> str:
    """The report: how it was measured, the ratio table, then the other figures."""
    m = r.matrix
    when = r.started.strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        "# alloctrace bench",
        "",
        f"- measured {when}{r.mode}: {m.runs} run(s) per cell, runs interleaved across cells; "
        f"took {r.elapsed:.0f} s",
        f"- machine: {machine()}",
        f"- load average (1/5/15 min) before: {r.load_before}; after: {r.load_after}",
        f"- tracer code: sha256(tracer/*.py) = {code_version()}",
        "",
        "## Recording overhead",
        "",
        "Wall times include process start-up (alloctrace's Python start-up is the (e) row; "
        "`size 0` is the same command with no work: `mmapbench 0`, `getpidbench 0 0`, "
        "`threadbench T 0`). Ratios and us/event use medians; us/event = (variant - untraced) "
        "/ events, events being the memory syscalls in the alloctrace trace.",
        "",
        main_table(m),
        "",
        *scaling_notes(m),
        *getpid_note(m, r.sizes),
    ]
    per_event = per_event_table(m)
    if per_event is not None:
        parts += [
            "",
            "## Per-event cost: 16 threads against one",
            "",
            "us/event as above, (variant - untraced) / events; marginal: each command's time at "
            "size 0 (`mmapbench 0`, `threadbench T 0`) subtracted first and divided by the events "
            "beyond size 0, so that start-up, loading and thread creation do not count as "
            "per-event cost.",
            "",
            per_event,
        ]
    if r.rss:
        parts += ["", "## Tracer peak RSS (wait4 ru_maxrss)", "", rss_table(r.rss)]
    if r.analysis:
        parts += [
            "",
            "## Analysis time against recording time",
            "",
            "`analyze(read_trace(path))` in a fresh pinned interpreter (its imports excluded), "
            "against the median wall time of the `alloctrace record` run that wrote the trace. "
            "`summarize` (the figures of `alloctrace report`) is timed after it in the same "
            "interpreter and shown apart: it is not part of the analysis the criterion times.",
            "",
            analysis_table(m, r.analysis),
        ]
    rows = [c.row() for c in checks(r)]
    parts += [
        "",
        "## Issue 7 acceptance (from this run)",
        "",
        tabulate(
            rows,
            headers=["criterion", "medians", "minima", "target", "verdict (medians / minima)"],
            tablefmt="github",
            disable_numparse=True,
        ),
    ]
    return "\n".join(parts)
