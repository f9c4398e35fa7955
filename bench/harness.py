"""Timing commands fairly on a small shared machine: same CPU, several runs, min/median/max."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures" / "build"
ALLOCTRACE = [sys.executable, "-m", "alloctrace"]
MEMORY_SYSCALLS = "mmap,munmap,brk,mprotect,mremap,madvise"
# Tracer and tracee on different CPUs made every tracer 3-5x slower here (tracer-notes.md):
# every variant, strace included, runs pinned to the same CPU.
PIN = ["taskset", "-c", "0"] if shutil.which("taskset") else []


def pin_to(cpu: int) -> None:
    """Pin every later command to ``cpu`` instead of CPU 0 (``PIN`` is changed in place).

    For a machine where something else already keeps CPU 0 busy (other benches pin there too).
    """
    if PIN:
        PIN[2] = str(cpu)


class BenchError(Exception):
    """A benchmarked command failed: the bench stops rather than report a wrong figure."""


@dataclass(frozen=True)
class Timing:
    """Wall times of several runs of one command."""

    label: str
    seconds: tuple[float, ...]

    @property
    def median(self) -> float:
        """The median run."""
        return statistics.median(self.seconds)

    def summary(self) -> str:
        """min / median / max in seconds."""
        return f"{min(self.seconds):.2f} / {self.median:.2f} / {max(self.seconds):.2f}"


def _failed(argv: Sequence[str], code: int, err_path: str) -> BenchError:
    tail = Path(err_path).read_text(errors="replace")[-800:]
    return BenchError(f"{' '.join(argv)} exited with {code}:\n{tail}")


def run_timed(argv: Sequence[str]) -> float:
    """Wall time of one pinned run of ``argv`` (stdout discarded); raise BenchError if it fails."""
    with tempfile.NamedTemporaryFile(prefix="bench-err-") as err:
        start = time.perf_counter()
        proc = subprocess.run([*PIN, *argv], stdout=subprocess.DEVNULL, stderr=err, check=False)
        seconds = time.perf_counter() - start
        if proc.returncode != 0:
            raise _failed(argv, proc.returncode, err.name)
    return seconds


def run_rusage(argv: Sequence[str]) -> tuple[float, int]:
    """Wall time and peak RSS (bytes) of one pinned run of ``argv``.

    The RSS is ``ru_maxrss`` from ``wait4``: the largest of the process itself and of the
    descendants it waited for (for a tracer: its tracees, whose RSS is far smaller here).
    """
    with tempfile.NamedTemporaryFile(prefix="bench-err-") as err:
        start = time.perf_counter()
        proc = subprocess.Popen([*PIN, *argv], stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        if proc.returncode != 0:
            raise _failed(argv, proc.returncode, err.name)
    return seconds, usage.ru_maxrss * 1024  # Linux reports KiB


def time_command(label: str, argv: Sequence[str], runs: int) -> Timing:
    """Run ``argv`` ``runs`` times (pinned, output discarded); fail loudly if it fails."""
    return Timing(label, tuple(run_timed(argv) for _ in range(runs)))


def count_syscalls(trace: str | os.PathLike[str]) -> int:
    """How many ``syscall`` records an alloctrace trace holds (the events a tracer stopped for)."""
    count = 0
    with open(trace, encoding="utf-8") as lines:
        for line in lines:
            # Only lines mentioning "syscall" can be syscall records: parse just those.
            if '"syscall"' in line and json.loads(line).get("kind") == "syscall":
                count += 1
    return count


def _first_line(argv: Sequence[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    text = (out.stdout or out.stderr).strip()
    return text.splitlines()[0] if text else "?"


def machine() -> str:
    """A few lines describing where and with what the figures were measured."""
    model = ""
    memory = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                memory = f", {int(line.split()[1]) / 2**20:.1f} GiB RAM"
                break
    except OSError:
        pass
    pin = f"pinned with `{' '.join(PIN)}`" if PIN else "not pinned (no taskset)"
    return (
        f"{platform.node()}: {os.cpu_count()} CPUs ({model}){memory}, kernel "
        f"{platform.release()}; tracer Python {platform.python_version()} ({sys.executable}); "
        f"{_first_line(['strace', '-V'])}; every command (tracers and untraced runs alike) {pin}"
    )


def load_average() -> str:
    """The 1/5/15-minute load averages: a busy machine moves every figure."""
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"


def code_version() -> str:
    """A short hash of the tracer's source: figures belong to one version of the code."""
    digest = hashlib.sha256()
    for path in sorted((ROOT / "tracer").glob("*.py")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def fixture(name: str) -> str:
    """Path of a built fixture program."""
    return str(FIXTURES / name)
