"""``python -m bench``: the whole bench in one run, one report (see docs/performance.md).

python -m bench                 # issue 7's sizes, 3 runs per cell (under ~10 minutes here)
python -m bench --quick         # smoke run: 1 run, smaller sizes (about a minute)
python -m bench --runs 5 --only a,c
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence

from bench.harness import PIN, ROOT, BenchError, pin_to
from bench.suite import render, run
from bench.workloads import FULL, QUICK

KEYS = ("a", "b", "c", "d1", "d2", "d3", "e")


def main(args: Sequence[str] | None = None) -> int:
    """Parse the options, run the bench, print the report on stdout (progress on stderr)."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=None, help="runs per cell (3; --quick: 1)")
    parser.add_argument("--quick", action="store_true", help="1 run, smaller sizes")
    parser.add_argument(
        "--only", default="", help=f"comma-separated workloads to run, of {','.join(KEYS)}"
    )
    parser.add_argument("--cpu", type=int, default=0, help="the CPU every command is pinned to")
    parser.add_argument("--no-rss", action="store_true", help="skip the peak-RSS recordings")
    parser.add_argument("--no-analysis", action="store_true", help="skip timing the analysis")
    opts = parser.parse_args(args)
    keys = [k for k in opts.only.split(",") if k] or None
    if keys is not None and (unknown := set(keys) - set(KEYS)):
        parser.error(f"unknown workloads: {', '.join(sorted(unknown))}")
    runs = opts.runs if opts.runs is not None else (1 if opts.quick else 3)
    if runs < 1:
        parser.error("--runs must be at least 1")
    missing = [tool for tool in ("strace", "taskset", "gcc") if shutil.which(tool) is None]
    if missing or not PIN:
        print(f"bench: missing {', '.join(missing)}", file=sys.stderr)
        return 2
    if not 0 <= opts.cpu < (os.cpu_count() or 1):
        parser.error(f"--cpu {opts.cpu}: no such CPU")
    pin_to(opts.cpu)
    subprocess.run(["make", "-s", "-C", str(ROOT / "fixtures")], check=True)
    mode = " with --quick (smaller sizes)" if opts.quick else " at issue 7's sizes"
    try:
        results = run(
            QUICK if opts.quick else FULL,
            runs,
            keys,
            rss=not opts.no_rss,
            analysis=not opts.no_analysis,
            mode=mode,
        )
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    print(render(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
