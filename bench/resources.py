"""What recording costs besides time: the tracer's peak memory, and analysis time afterwards."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from bench.harness import PIN, ROOT, BenchError, count_syscalls, fixture, run_rusage
from bench.workloads import ALLOCTRACE_VARIANTS, command


@dataclass(frozen=True)
class Rss:
    """One recording of a large mmapbench: how much memory the tracer needed."""

    variant: str
    events: int
    seconds: float
    peak_bytes: int


def peak_rss(
    pairs: int, tmp: Path, variants: Sequence[str] = ALLOCTRACE_VARIANTS, progress: bool = True
) -> list[Rss]:
    """Record ``mmapbench pairs`` (2 x pairs events) once per variant; peak RSS from wait4."""
    out: list[Rss] = []
    for variant in variants:
        trace = tmp / "rss.jsonl"
        seconds, peak = run_rusage(command(variant, [fixture("mmapbench"), str(pairs)], trace))
        out.append(Rss(variant, count_syscalls(trace), seconds, peak))
        trace.unlink()  # about 180 bytes per event: do not keep hundreds of MB around
        if progress:
            print(f"peak RSS {variant}: {peak / 2**20:.1f} MiB", file=sys.stderr, flush=True)
    return out


# Run in a fresh interpreter, so that nothing the bench imported or cached helps it.
# summarize (the report's figures) is timed after, apart: analysis is read_trace + analyze.
_ANALYZE = """
import json, sys, time
start = time.perf_counter()
from analyzers.analysis import analyze
from analyzers.summarize import summarize
from tracer.traceformat import read_trace
imported = time.perf_counter()
trace = read_trace(sys.argv[1])
read = time.perf_counter()
analysis = analyze(trace)
done = time.perf_counter()
summarize(analysis)
summed = time.perf_counter()
print(json.dumps({"import": imported - start, "read": read - imported, "analyze": done - read,
                  "summarize": summed - done}))
"""


@dataclass(frozen=True)
class AnalysisTime:
    """``analyze(read_trace(path))`` of one trace, timed inside a fresh pinned interpreter: the
    median of ``runs`` runs (its parts), and the fastest run's read_trace + analyze."""

    imports: float
    read: float
    analyze: float
    summarize: float  # the report's figures, on top (not part of the analysis)
    wall: float  # the whole subprocess, interpreter start-up included
    best: float
    runs: int

    @property
    def seconds(self) -> float:
        """read_trace + analyze: the figure compared with the recording time."""
        return self.read + self.analyze


def analysis_time(trace: Path, runs: int = 1) -> AnalysisTime:
    """Time the analysis of ``trace`` in ``runs`` subprocesses, one after another, like the
    recordings' cells: one run alone moves by a third on this machine."""
    timed = sorted((_analysis_once(trace) for _ in range(max(1, runs))), key=lambda t: t.seconds)
    median = timed[(len(timed) - 1) // 2]
    return replace(median, best=timed[0].seconds, runs=len(timed))


def _analysis_once(trace: Path) -> AnalysisTime:
    start = time.perf_counter()
    proc = subprocess.run(
        [*PIN, sys.executable, "-c", _ANALYZE, str(trace)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise BenchError(f"analysis of {trace} failed:\n{proc.stderr[-800:]}")
    parts = json.loads(proc.stdout.strip().splitlines()[-1])
    read, analyzed, summed = parts["read"], parts["analyze"], parts["summarize"]
    return AnalysisTime(parts["import"], read, analyzed, summed, wall, read + analyzed, 1)
