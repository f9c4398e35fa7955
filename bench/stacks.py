"""Cost of call stacks: mmapbench under alloctrace with and without stacks, and under strace.

    .venv/bin/python bench/stacks.py [--pairs 50000] [--runs 3] [--k-pairs 2000]

Every variant runs pinned to CPU 0 (``taskset -c 0``: tracer and tracee on one CPU, see
docs/how-it-works.md) and is timed by wall clock, ``--runs`` times; the table shows the minimum
and the median, and ratios of the minima. ``strace -k`` (libunwind at every call) is too slow
for the full count: it runs ``--k-pairs`` pairs and once with 0 pairs, and its time for
``--pairs`` is extrapolated as t(0) + pairs * (t(k) - t(0)) / k.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from tabulate import tabulate

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "fixtures" / "build" / "mmapbench"
TRACE = "trace=mmap,munmap,brk,mprotect,mremap,madvise"
PIN = ["taskset", "-c", "0"]


def timed(argv: Sequence[str], runs: int) -> list[float]:
    """Wall times of ``runs`` runs of ``argv`` (output discarded; a failure stops the bench)."""
    out: list[float] = []
    for _ in range(runs):
        start = time.perf_counter()
        proc = subprocess.run(
            [*PIN, *argv], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False
        )
        out.append(time.perf_counter() - start)
        if proc.returncode != 0:
            sys.exit(f"bench: {' '.join(argv)} failed: {proc.stderr.decode()[-500:]}")
    return out


def main(args: Sequence[str] | None = None) -> None:
    """Run the variants and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--k-pairs", type=int, default=2000)
    opts = parser.parse_args(args)
    subprocess.run(["make", "-s", "-C", str(ROOT / "fixtures")], check=True)
    if shutil.which("taskset") is None or shutil.which("strace") is None:
        sys.exit("bench: needs taskset and strace")
    pairs = str(opts.pairs)
    alloctrace = [sys.executable, "-m", "alloctrace", "record"]
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "t.jsonl")
        rows: dict[str, list[float]] = {
            "untraced": timed([str(BENCH), pairs], opts.runs),
            "strace --seccomp-bpf (no stacks)": timed(
                [
                    "strace",
                    "-f",
                    "--seccomp-bpf",
                    "-e",
                    TRACE,
                    "-o",
                    "/dev/null",
                    str(BENCH),
                    pairs,
                ],
                opts.runs,
            ),
            "alloctrace --no-stacks": timed(
                [*alloctrace, "--no-stacks", "-o", out, "--", str(BENCH), pairs], opts.runs
            ),
            "alloctrace (stacks)": timed(
                [*alloctrace, "-o", out, "--", str(BENCH), pairs], opts.runs
            ),
        }
        k = ["strace", "-f", "-k", "-e", TRACE, "-o", "/dev/null", str(BENCH)]
        k0 = timed([*k, "0"], opts.runs)
        kn = timed([*k, str(opts.k_pairs)], opts.runs)
        scale = opts.pairs / opts.k_pairs
        rows[f"strace -k (from {opts.k_pairs} pairs, scaled)"] = [
            a + (b - a) * scale for a, b in zip(k0, kn, strict=True)
        ]
    base = min(rows["strace --seccomp-bpf (no stacks)"])
    untraced = min(rows["untraced"])
    stacks = min(rows["alloctrace (stacks)"])
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
    no_stacks = min(rows["alloctrace --no-stacks"])
    per_event = (stacks - no_stacks) / (2 * opts.pairs) * 1e6
    print(f"stacks cost {per_event:.1f} us per event over --no-stacks")


if __name__ == "__main__":
    main()
