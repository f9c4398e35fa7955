"""alloctrace's start-up time against the bare interpreter's, in one run.

``python -m bench.startup [--runs N] [--cpu N]``: times ``python -c pass`` (the same
interpreter as the tracer) and a few alloctrace commands that do next to no work (``record``
of ``/bin/true`` with and without stacks, ``--version``, ``--help``), pinned alike and
interleaved run by run, and prints a markdown table of the medians and their ratio to
``python -c pass``. The machine is shared and noisy: compare the ratios of one run, not the
seconds of two.

Each command runs twice over: in the caller's environment, and with compiled bytecode cached
(``PYTHONPYCACHEPREFIX`` in a temporary directory, ``PYTHONDONTWRITEBYTECODE`` unset, one
warm-up run first), as an installed alloctrace runs. With ``PYTHONDONTWRITEBYTECODE=1`` and no
``__pycache__`` in the checkout, every run compiles alloctrace's sources again.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.harness import ALLOCTRACE, PIN, BenchError, pin_to


def commands(out: str, other: Path | None = None) -> list[tuple[str, list[str]]]:
    """The commands timed, labelled; the first one is the baseline. With ``other`` (a checkout
    of alloctrace), the record commands also run that checkout's code (``python -m`` imports
    from the working directory first)."""
    cells = [
        ("python -c pass", [sys.executable, "-c", "pass"]),
        ("alloctrace --version", [*ALLOCTRACE, "--version"]),
        ("alloctrace --help", [*ALLOCTRACE, "--help"]),
        (
            "alloctrace record --no-stacks -- /bin/true",
            [*ALLOCTRACE, "record", "--no-stacks", "-q", "-o", out, "--", "/bin/true"],
        ),
        (
            "alloctrace record -- /bin/true (stacks)",
            [*ALLOCTRACE, "record", "-q", "-o", out, "--", "/bin/true"],
        ),
    ]
    if other is not None:
        cells += [
            (f"{label} [{other}]", ["env", "-C", str(other), *argv]) for label, argv in cells[3:]
        ]
    return cells


def _timed(argv: list[str], env: dict[str, str]) -> float:
    """Wall time of one pinned run of ``argv`` (output discarded); BenchError if it fails."""
    start = time.perf_counter()
    proc = subprocess.run(
        [*PIN, *argv], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False
    )
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        tail = proc.stderr.decode(errors="replace")[-800:]
        raise BenchError(f"{' '.join(argv)} exited with {proc.returncode}:\n{tail}")
    return seconds


def measure(
    runs: int, other: Path | None = None
) -> tuple[str, list[tuple[str, list[float]]], list[tuple[str, list[float]]]]:
    """The environment's description and the wall times of every command, ``runs`` times each,
    interleaved: as the caller's environment runs them, and with bytecode cached."""
    inherited = dict(os.environ)
    described = (
        f"PYTHONDONTWRITEBYTECODE={inherited['PYTHONDONTWRITEBYTECODE']}"
        if inherited.get("PYTHONDONTWRITEBYTECODE")
        else "bytecode written as usual"
    )
    with tempfile.TemporaryDirectory() as tmp:
        cached = {k: v for k, v in inherited.items() if k != "PYTHONDONTWRITEBYTECODE"}
        cached["PYTHONPYCACHEPREFIX"] = str(Path(tmp) / "pycache")
        cells = commands(str(Path(tmp) / "t.jsonl"), other)
        for _, argv in cells:  # warm-up: compile and cache everything the commands import
            _timed(argv, cached)
        envs = (inherited, cached)
        times: list[list[list[float]]] = [[[] for _ in cells] for _ in envs]
        for _ in range(runs):
            for env, per_env in zip(envs, times, strict=True):
                for (_, argv), seconds in zip(cells, per_env, strict=True):
                    seconds.append(_timed(argv, env))
    labels = [label for label, _ in cells]
    return (
        described,
        list(zip(labels, times[0], strict=True)),
        list(zip(labels, times[1], strict=True)),
    )


def render(results: list[tuple[str, list[float]]]) -> str:
    """A markdown table: min / median / max in ms, and the median's ratio to the baseline's."""
    base = statistics.median(results[0][1])
    lines = [
        "| command | ms (min / med / max) | x python -c pass |",
        "|---|---|---|",
    ]
    for label, seconds in results:
        med = statistics.median(seconds)
        spread = f"{min(seconds) * 1e3:.0f} / {med * 1e3:.0f} / {max(seconds) * 1e3:.0f}"
        lines.append(f"| {label} | {spread} | {med / base:.2f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    """Run the comparison and print it."""
    parser = argparse.ArgumentParser(prog="python -m bench.startup", description=__doc__)
    parser.add_argument("--runs", type=int, default=15, help="runs per command (15)")
    parser.add_argument("--cpu", type=int, default=0, help="the CPU every command is pinned to")
    parser.add_argument(
        "--compare",
        type=Path,
        metavar="DIR",
        help="also time the record commands from another checkout (e.g. a git worktree)",
    )
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    pin_to(args.cpu)
    pinned = f"pinned with `{' '.join(PIN)}`" if PIN else "not pinned (no taskset)"
    load = os.getloadavg()[0]
    print(f"{args.runs} runs per command, interleaved, {pinned}; {sys.executable}")
    print(f"load average (1 min) before: {load:.2f}\n")
    described, inherited, cached = measure(
        args.runs, args.compare.resolve() if args.compare else None
    )
    print(f"As this environment runs it ({described}):\n")
    print(render(inherited))
    print("With bytecode cached (PYTHONPYCACHEPREFIX, as an installed alloctrace runs):\n")
    print(render(cached), end="")


if __name__ == "__main__":
    main()
