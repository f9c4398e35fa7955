"""Cost of call stacks: mmapbench under alloctrace with and without stacks, and under strace.

    .venv/bin/python bench/stacks.py [--pairs 50000] [--runs 3] [--k-pairs 2000]

The mmapbench row of ``python -m bench`` on its own, with its own table: every variant runs
pinned to CPU 0 (``taskset -c 0``: tracer and tracee on one CPU, see docs/how-it-works.md) and
is timed by wall clock, ``--runs`` times; the table shows the minimum and the median, and
ratios of the minima. ``strace -k`` (libunwind at every call) is too slow for the full count:
it runs ``--k-pairs`` pairs and once with 0 pairs, and its time for ``--pairs`` is
extrapolated as t(0) + pairs * (t(k) - t(0)) / k.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

if __package__ in {None, ""}:  # run as a script: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tabulate import tabulate

from bench.harness import ROOT, BenchError
from bench.record import measure
from bench.workloads import (
    NO_STACKS,
    STACKS,
    STRACE_K,
    STRACE_SECCOMP,
    UNTRACED,
    Sizes,
    workloads,
)

LABELS = {
    UNTRACED: "untraced",
    STRACE_SECCOMP: "strace --seccomp-bpf (no stacks)",
    NO_STACKS: "alloctrace --no-stacks",
    STACKS: "alloctrace (stacks)",
}


def main(args: Sequence[str] | None = None) -> None:
    """Run the variants and print the table."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--pairs", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--k-pairs", type=int, default=2000)
    opts = parser.parse_args(args)
    subprocess.run(["make", "-s", "-C", str(ROOT / "fixtures")], check=True)
    if shutil.which("taskset") is None or shutil.which("strace") is None:
        sys.exit("bench: needs taskset and strace")
    sizes = Sizes(mmap_pairs=opts.pairs, k_mmap_pairs=opts.k_pairs)
    variants = (UNTRACED, STRACE_SECCOMP, NO_STACKS, STACKS, STRACE_K)
    with tempfile.TemporaryDirectory() as tmp:
        mmap = [w for w in workloads(sizes, Path(tmp)) if w.key == "a"]
        try:
            matrix = measure(mmap, Path(tmp), opts.runs, variants, progress=False)
        except BenchError as exc:
            sys.exit(f"bench: {exc}")
    w = mmap[0]
    labels = dict(LABELS)
    labels[STRACE_K] = (
        f"strace -k (from {opts.k_pairs} pairs, scaled)" if w.reduced is not None else "strace -k"
    )
    rows = {labels[v]: matrix.times["a", v] for v in variants}
    base = min(rows[labels[STRACE_SECCOMP]])
    untraced = min(rows[labels[UNTRACED]])
    stacks = min(rows[labels[STACKS]])
    table = [
        [
            name,
            f"{min(times):.2f}",
            f"{statistics.median(times):.2f}",
            f"{min(times) / untraced:.1f}",
            f"{min(times) / base:.2f}",
            f"{min(times) / stacks:.1f}",
        ]
        for name, times in rows.items()
    ]
    print(
        f"mmapbench {opts.pairs} mmap+munmap pairs ({2 * opts.pairs} traced calls), "
        f"{opts.runs} runs each, all pinned with taskset -c 0"
    )
    print(
        tabulate(
            table,
            headers=["variant", "min s", "median s", "x untraced", "x strace seccomp", "x stacks"],
            colalign=("left", "right", "right", "right", "right", "right"),
        )
    )
    no_stacks = min(rows[labels[NO_STACKS]])
    per_event = (stacks - no_stacks) / (2 * opts.pairs) * 1e6
    print(f"stacks cost {per_event:.1f} us per event over --no-stacks")


if __name__ == "__main__":
    main()
