"""Loading a big trace: ``alloctrace.load`` against ``pandas.read_json(lines=True)``, same file.

``python -m bench.load [--events N] [--runs R]`` synthesizes a trace of N memory syscalls
(1,000,000 by default: mmap/mprotect/madvise/munmap from 8 threads, with call-stack ids, as
``alloctrace record`` writes them) with tracer.traceformat.TraceWriter, then times, in a fresh
Python process each (alternating, R runs each, median):

* ``alloctrace.load(path)`` — every line parsed and checked, typed records built;
* ``pandas.read_json(path, lines=True)`` — the same file into a DataFrame.

It prints the ratio (alloctrace / pandas; the goal is at most 1) and the memory load() needs:
its peak RSS growth against the size of the DataFrame pandas built (``memory_usage(deep=True)``;
the goal is at most 3x). Both processes run pinned to the same CPU when taskset exists.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from tracer.records import (
    FORMAT_NAME,
    FORMAT_VERSION,
    Footer,
    Frame,
    Header,
    Module,
    Stack,
    Syscall,
)
from tracer.traceformat import TraceWriter

PIN = ["taskset", "-c", "0"] if shutil.which("taskset") else []

# Runs in a fresh interpreter: imports first, then the measured call; prints one JSON line.
_PROBE = """
import json, resource, sys, time
which, path = sys.argv[1], sys.argv[2]
if which == "pandas":
    import pandas
else:
    import alloctrace, alloctrace.api
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096
before = rss()
start = time.perf_counter()
if which == "pandas":
    frame = pandas.read_json(path, lines=True)
    size = int(frame.memory_usage(deep=True).sum())
    rows = len(frame)
else:
    trace = alloctrace.load(path)
    size = 0
    rows = len(trace.records)
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"seconds": seconds, "growth": peak - before, "size": size, "rows": rows}))
"""


def synthesize(path: Path, events: int) -> None:
    """Write a trace of ``events`` syscalls: mmap, mprotect, madvise, munmap cycles, 8 threads."""
    header = Header(FORMAT_NAME, FORMAT_VERSION, "/usr/bin/bench", ["/usr/bin/bench"])
    writer = TraceWriter(path, header)
    writer.write(
        Module(
            1,
            1000,
            "/usr/lib/x86_64-linux-gnu/libc.so.6",
            0x7F00_0000_0000,
            0x7F00_001E_0000,
            0x7F00_0000_0000,
        )
    )
    for sid in range(1, 9):
        frames = tuple(Frame(0x7F00_0001_0000 + 0x40 * sid + i, 1, "cfi") for i in range(6))
        writer.write(Stack(sid, frames))
    base = 0x7F10_0000_0000
    for seq in range(1, events + 1):
        tid = 1000 + seq % 8
        addr = base + (seq // 4) * 0x10000
        kind = seq % 4
        common = (seq, seq * 1500, 900, 1000, tid)
        if kind == 0:
            record = Syscall(
                *common, "mmap", 0, 65536, 3, 0x22, -1, 0, result=addr, stack=1 + seq % 8
            )
        elif kind == 1:
            record = Syscall(*common, "mprotect", addr, 4096, 1, result=0, stack=1 + seq % 8)
        elif kind == 2:
            record = Syscall(*common, "madvise", addr, 65536, advice=4, result=0, stack=1 + seq % 8)
        else:
            record = Syscall(*common, "munmap", addr, 65536, result=0, stack=1 + seq % 8)
        writer.write(record)
    writer.close(Footer("exited", events * 1500, events, status=0))


def probe(which: str, path: Path) -> dict[str, float]:
    """One measurement in a fresh interpreter."""
    out = subprocess.run(
        [*PIN, sys.executable, "-c", _PROBE, which, str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> int:
    """Synthesize, measure, print the table."""
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    opts = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        path = Path(tmp) / "big.jsonl"
        synthesize(path, opts.events)
        mib = path.stat().st_size / 2**20
        ours: list[dict[str, float]] = []
        theirs: list[dict[str, float]] = []
        for _ in range(opts.runs):
            ours.append(probe("alloctrace", path))
            theirs.append(probe("pandas", path))
    load_s = statistics.median(r["seconds"] for r in ours)
    pandas_s = statistics.median(r["seconds"] for r in theirs)
    growth = statistics.median(r["growth"] for r in ours)
    frame = statistics.median(r["size"] for r in theirs)
    pin = "pinned to CPU 0" if PIN else "not pinned"
    print(f"{opts.events:,} syscall events, {mib:.0f} MiB trace; median of {opts.runs} runs, {pin}")
    print(f"alloctrace.load:           {load_s:7.2f} s   peak RSS growth {growth / 2**20:7.0f} MiB")
    print(
        f"pandas.read_json(lines):   {pandas_s:7.2f} s   DataFrame (deep)  {frame / 2**20:7.0f} MiB"
    )
    print(f"time ratio (load / read_json): {load_s / pandas_s:.2f}  (goal: <= 1)")
    print(f"memory ratio (load growth / DataFrame): {growth / frame:.2f}  (goal: <= 3)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
