"""Recording overhead: alloctrace against strace --seccomp-bpf and against an untraced run."""

from __future__ import annotations

import tempfile
from pathlib import Path

from tabulate import tabulate

from bench.harness import ALLOCTRACE, MEMORY_SYSCALLS, Timing, fixture, machine, time_command


def run(runs: int = 5) -> str:
    """Measure workloads (a) and (b) of the recording issue; return the table as text."""
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "bench.jsonl")
        mmaps = [fixture("mmapbench"), "50000"]
        getpids = [fixture("getpidbench"), "20000000", "1000"]
        strace = ["strace", "-f", "--seccomp-bpf", "-e", f"trace={MEMORY_SYSCALLS}"]
        rows: list[tuple[str, Timing, Timing]] = [
            (
                "(a) 50,000 mmap+munmap pairs",
                time_command("strace --seccomp-bpf", [*strace, "-o", "/dev/null", *mmaps], runs),
                time_command(
                    "alloctrace --no-stacks",
                    [*ALLOCTRACE, "record", "--no-stacks", "-o", out, "--", *mmaps],
                    runs,
                ),
            ),
            (
                "(b) 20,000,000 getpid + 1,000 mmaps",
                time_command("untraced", getpids, runs),
                time_command(
                    "alloctrace --no-stacks",
                    [*ALLOCTRACE, "record", "--no-stacks", "-o", out, "--", *getpids],
                    runs,
                ),
            ),
        ]
    table = [
        (
            name,
            ref.label,
            ref.summary(),
            new.label,
            new.summary(),
            f"{new.median / ref.median:.2f}x",
        )
        for name, ref, new in rows
    ]
    headers = ["workload", "reference", "ref s (min/med/max)", "alloctrace", "s", "ratio (median)"]
    return f"{machine()}\n\n{tabulate(table, headers=headers)}"


if __name__ == "__main__":
    print(run())
