"""What the bench runs: the workloads of issue 7 and the tracers they run under."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.harness import ALLOCTRACE, MEMORY_SYSCALLS, ROOT, fixture

# The tracer variants, in table order. Each is one command line around the workload's.
UNTRACED = "untraced"
# Untraced, under a seccomp filter that allows everything (fixtures/seccompallow.c): the floor of
# every --seccomp-bpf tracer, whose filter slows each syscall it lets through.
FILTER_ONLY = "seccomp filter, no tracer"
STRACE_SECCOMP = "strace --seccomp-bpf"
STRACE_K = "strace -k"
NO_STACKS = "alloctrace --no-stacks"
STACKS = "alloctrace (stacks)"
VARIANTS = (UNTRACED, FILTER_ONLY, STRACE_SECCOMP, STRACE_K, NO_STACKS, STACKS)
ALLOCTRACE_VARIANTS = (NO_STACKS, STACKS)

# `gcc -c` compiles this fixture source (the largest one) into the bench's temporary directory.
GCC_SOURCE = ROOT / "fixtures" / "usermmap.c"
# The system interpreter, not a pyenv shim that may come first on PATH (a shim is a script
# that starts more processes before the real interpreter).
SYSTEM_PYTHON = "/usr/bin/python3"


@dataclass(frozen=True)
class Sizes:
    """How big each workload is; ``FULL`` is issue 7's, ``QUICK`` a smoke run's."""

    mmap_pairs: int = 50_000
    getpids: int = 20_000_000
    getpid_pairs: int = 1_000
    threads: int = 16
    thread_pairs: int = 5_000
    stress_threads: int = 8
    stress_ops: int = 20_000
    rss_pairs: int = 500_000  # 1,000,000 traced calls for the peak-RSS measurement
    # `strace -k` at full size would take minutes per run (about 0.7 ms per traced call and,
    # without a seccomp filter, about 12 us per getpid): it runs these reduced sizes and size 0,
    # and its time is extrapolated linearly in the size (see Workload).
    k_mmap_pairs: int = 2_000
    k_getpids: int = 200_000
    k_thread_pairs: int = 100


FULL = Sizes()
QUICK = Sizes(
    mmap_pairs=5_000,
    getpids=2_000_000,
    getpid_pairs=100,
    thread_pairs=500,
    rss_pairs=50_000,
    k_mmap_pairs=500,
    k_getpids=20_000,
    k_thread_pairs=50,
)


@dataclass(frozen=True)
class Workload:
    """One program to time, and for the sized fixtures the same program at size 0 (``empty``).

    ``empty`` runs under every variant too, to tell each tracer's fixed cost (start-up, threads,
    loader) from its cost per event. ``reduced`` is set when strace -k cannot run the full size:
    its time is then estimated as ``t(empty) + factor * (t(reduced) - t(empty))`` with
    ``factor = full size / reduced size``. For (a) and (c) that is exactly scaling per traced
    event (each pair is two events); for (b) it scales the getpid calls alike.
    """

    key: str
    title: str
    argv: tuple[str, ...]
    reduced: tuple[str, ...] | None = None
    empty: tuple[str, ...] | None = None
    factor: float = 1.0


def _scaled(
    key: str,
    title: str,
    argv: Sequence[str],
    reduced: Sequence[str],
    empty: Sequence[str],
    full_size: int,
    reduced_size: int,
) -> Workload:
    if reduced_size <= 0 or reduced_size >= full_size:
        return Workload(key, title, tuple(argv), None, tuple(empty))
    return Workload(key, title, tuple(argv), tuple(reduced), tuple(empty), full_size / reduced_size)


def workloads(sizes: Sizes, tmp: Path) -> list[Workload]:
    """Issue 7's workloads (a)-(d) plus (e), the tracers' own start-up, at ``sizes``."""
    s = sizes
    mmap, getpid, threads = fixture("mmapbench"), fixture("getpidbench"), fixture("threadbench")
    # getpidbench is shrunk in both dimensions alike, so one factor scales it.
    k_getpid_pairs = max(1, round(s.getpid_pairs * s.k_getpids / max(1, s.getpids)))
    gcc = shutil.which("gcc") or "gcc"
    return [
        _scaled(
            "a",
            f"(a) mmapbench: {s.mmap_pairs:,} mmap+munmap pairs",
            [mmap, str(s.mmap_pairs)],
            [mmap, str(s.k_mmap_pairs)],
            [mmap, "0"],
            s.mmap_pairs,
            s.k_mmap_pairs,
        ),
        _scaled(
            "b",
            f"(b) getpidbench: {s.getpids:,} getpid + {s.getpid_pairs:,} mmap+munmap pairs",
            [getpid, str(s.getpids), str(s.getpid_pairs)],
            [getpid, str(s.k_getpids), str(k_getpid_pairs)],
            [getpid, "0", "0"],
            s.getpids,
            s.k_getpids,
        ),
        _scaled(
            "c",
            f"(c) threadbench: {s.threads} threads x {s.thread_pairs:,} mmap+munmap pairs",
            [threads, str(s.threads), str(s.thread_pairs)],
            [threads, str(s.threads), str(s.k_thread_pairs)],
            [threads, str(s.threads), "0"],
            s.thread_pairs,
            s.k_thread_pairs,
        ),
        Workload("d1", '(d) python3 -c "import json"', (SYSTEM_PYTHON, "-c", "import json")),
        Workload(
            "d2",
            f"(d) gcc -O2 -g -c {GCC_SOURCE.name} (gcc, cc1, as)",
            (gcc, "-O2", "-g", "-c", str(GCC_SOURCE), "-o", str(tmp / "gcc-out.o")),
        ),
        Workload(
            "d3",
            f"(d) allocstress: {s.stress_threads} threads x {s.stress_ops:,} malloc/free",
            (fixture("allocstress"), str(s.stress_threads), str(s.stress_ops)),
        ),
        Workload("e", "(e) /bin/true (start-up cost only)", ("/bin/true",)),
    ]


def command(variant: str, argv: Sequence[str], trace: Path) -> list[str]:
    """The command line that runs ``argv`` under ``variant`` (alloctrace writes ``trace``)."""
    if variant == UNTRACED:
        return list(argv)
    if variant == FILTER_ONLY:
        return [fixture("seccompallow"), *argv]
    if variant == STRACE_SECCOMP:
        return [
            *("strace", "-f", "--seccomp-bpf", "-e", f"trace={MEMORY_SYSCALLS}"),
            *("-o", "/dev/null", *argv),
        ]
    if variant == STRACE_K:
        # As issue 7 names it: no seccomp filter, so strace stops at every syscall.
        return ["strace", "-f", "-k", "-e", f"trace={MEMORY_SYSCALLS}", "-o", "/dev/null", *argv]
    if variant == NO_STACKS:
        return [*ALLOCTRACE, "record", "--no-stacks", "-o", str(trace), "--", *argv]
    if variant == STACKS:
        return [*ALLOCTRACE, "record", "-o", str(trace), "--", *argv]
    raise ValueError(f"unknown variant {variant!r}")
