"""Recording overhead: every workload under every tracer variant, several interleaved runs."""

from __future__ import annotations

import statistics
import sys
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.harness import count_syscalls, run_timed
from bench.workloads import (
    ALLOCTRACE_VARIANTS,
    NO_STACKS,
    STACKS,
    STRACE_K,
    UNTRACED,
    VARIANTS,
    Workload,
    command,
)


@dataclass
class Matrix:
    """Wall times of every (workload, variant) cell, and what the traces say about each workload."""

    runs: int
    workloads: list[Workload]
    variants: tuple[str, ...]
    # (workload key, variant) -> one wall time per run; strace -k's is the full-size estimate
    # when the workload is scaled, and ``reduced`` keeps what was actually measured.
    times: dict[tuple[str, str], list[float]] = field(default_factory=lambda: defaultdict(list))
    reduced: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    # The same, for the workload at size 0 (Workload.empty), where it has one.
    zero: dict[tuple[str, str], list[float]] = field(default_factory=lambda: defaultdict(list))
    events: dict[tuple[str, str], int] = field(default_factory=dict)  # syscall records, last run
    zero_events: dict[str, int] = field(default_factory=dict)
    traces: dict[tuple[str, str], Path] = field(default_factory=dict)  # the last run's traces

    def has(self, key: str, variant: str) -> bool:
        """Whether this cell was measured."""
        return bool(self.times.get((key, variant)))

    def median(self, key: str, variant: str) -> float:
        """Median wall time of a cell."""
        return statistics.median(self.times[key, variant])

    def stat(self, key: str, variant: str, best: bool = False) -> float:
        """The median wall time of a cell, or with ``best`` its minimum.

        On a shared machine other work only ever adds time, so the minimum is the run least
        disturbed; the medians are the figures issue 7 asks for.
        """
        times = self.times[key, variant]
        return min(times) if best else statistics.median(times)

    def _zero(self, key: str, variant: str, best: bool) -> float:
        times = self.zero[key, variant]
        return min(times) if best else statistics.median(times)

    def workload_events(self, key: str) -> int | None:
        """Memory syscalls the workload makes, counted in its alloctrace trace."""
        for variant in ALLOCTRACE_VARIANTS:
            if (key, variant) in self.events:
                return self.events[key, variant]
        return None

    def per_event_us(self, key: str, variant: str, best: bool = False) -> float | None:
        """(traced - untraced) / events, in microseconds, from the medians (``best``: minima)."""
        events = self.workload_events(key)
        if not events or not self.has(key, variant) or not self.has(key, UNTRACED):
            return None
        traced, untraced = self.stat(key, variant, best), self.stat(key, UNTRACED, best)
        return (traced - untraced) / events * 1e6

    def marginal_us(self, key: str, variant: str, best: bool = False) -> float | None:
        """Per-event cost with each command's size-0 time taken off first (start-up removed).

        ((t - t0) - (u - u0)) / (events - events0), medians (``best``: minima), microseconds.
        """
        events = self.workload_events(key)
        zero_events = self.zero_events.get(key)
        cells = [(key, variant), (key, UNTRACED)]
        if events is None or zero_events is None or events <= zero_events:
            return None
        if not all(self.has(*c) and self.zero.get(c) for c in cells):
            return None
        traced = self.stat(key, variant, best) - self._zero(key, variant, best)
        untraced = self.stat(key, UNTRACED, best) - self._zero(key, UNTRACED, best)
        return (traced - untraced) / (events - zero_events) * 1e6


def _slug(variant: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in variant).strip("-")


def _progress(message: str, enabled: bool) -> None:
    if enabled:
        print(message, file=sys.stderr, flush=True)


def measure(
    workloads: Sequence[Workload],
    tmp: Path,
    runs: int,
    variants: Sequence[str] = VARIANTS,
    progress: bool = True,
) -> Matrix:
    """Time every workload under every variant ``runs`` times.

    Runs are interleaved (run 1 of every cell, then run 2 ...) so that a slow minute on the
    shared machine spreads over all cells instead of landing on one of them.
    """
    matrix = Matrix(runs, list(workloads), tuple(variants))
    for run in range(runs):
        last = run == runs - 1
        for w in workloads:
            for variant in variants:
                trace = tmp / f"{w.key}-{_slug(variant)}.jsonl"
                empty = None
                if w.empty is not None:
                    zero_trace = tmp / f"{w.key}-{_slug(variant)}-0.jsonl"
                    empty = run_timed(command(variant, w.empty, zero_trace))
                    matrix.zero[w.key, variant].append(empty)
                    if last and variant == NO_STACKS:
                        matrix.zero_events[w.key] = count_syscalls(zero_trace)
                if variant == STRACE_K and w.reduced is not None and empty is not None:
                    reduced = run_timed(command(variant, w.reduced, trace))
                    matrix.reduced[w.key].append(reduced)
                    seconds = empty + w.factor * (reduced - empty)
                else:
                    seconds = run_timed(command(variant, w.argv, trace))
                matrix.times[w.key, variant].append(seconds)
                if variant in ALLOCTRACE_VARIANTS:
                    matrix.traces[w.key, variant] = trace
                    if last:
                        matrix.events[w.key, variant] = count_syscalls(trace)
                _progress(f"run {run + 1}/{runs} {w.key} {variant}: {seconds:.2f} s", progress)
    return matrix


def stacks_trace(matrix: Matrix, key: str) -> Path | None:
    """The last trace recorded with stacks for a workload (what analysis is timed on)."""
    return matrix.traces.get((key, STACKS)) or matrix.traces.get((key, NO_STACKS))
