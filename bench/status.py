"""The live status line's cost: the same recording with stderr on a terminal, and with --quiet.

``python -m bench.status [--runs N] [--pairs P]``: records ``mmapbench P`` (50,000 pairs by
default) with stderr on a pseudo-terminal of 24x80 (the status line is drawn four times a
second) and again with ``--quiet`` on the same terminal, alternating, pinned alike; prints the
median wall times and their ratio. The status is drawn by a background thread, so the ratio
should be 1 within the machine's noise.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import pty
import statistics
import struct
import subprocess
import tempfile
import termios
import time
from pathlib import Path

from bench.harness import ALLOCTRACE, PIN, fixture


def _timed(argv: list[str]) -> float:
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    start = time.perf_counter()
    proc = subprocess.Popen([*PIN, *argv], stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    while True:  # drain the terminal so the writer never blocks
        try:
            if not os.read(master, 65536):
                break
        except OSError:
            break
    proc.wait()
    elapsed = time.perf_counter() - start
    os.close(master)
    return elapsed


def main() -> None:
    """Run the comparison and print it."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--pairs", type=int, default=50_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "t.jsonl")
        base = [*ALLOCTRACE, "record", "--no-stacks", "-o", out]
        work = ["--", fixture("mmapbench"), str(args.pairs)]
        shown: list[float] = []
        quiet: list[float] = []
        for _ in range(args.runs):
            shown.append(_timed([*base, *work]))
            quiet.append(_timed([*base, "--quiet", *work]))
    a, b = statistics.median(shown), statistics.median(quiet)
    print(f"mmapbench {args.pairs:,} pairs, {args.runs} runs each, pinned: {bool(PIN)}")
    print(f"status line shown: {a:.2f} s (median)   --quiet: {b:.2f} s   ratio {a / b:.3f}")


if __name__ == "__main__":
    main()
