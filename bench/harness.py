"""Timing commands fairly on a small shared machine: same CPU, several runs, min/median/max."""

from __future__ import annotations

import os
import platform
import shutil
import statistics
import subprocess
import sys
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


def time_command(label: str, argv: Sequence[str], runs: int) -> Timing:
    """Run ``argv`` ``runs`` times (pinned, output discarded); fail loudly if it fails."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(
            [*PIN, *argv], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True
        )
        times.append(time.perf_counter() - start)
    return Timing(label, tuple(times))


def machine() -> str:
    """One line describing where the figures were measured."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    pin = "pinned to CPU 0" if PIN else "not pinned"
    return (
        f"{platform.node()}: {os.cpu_count()} CPUs ({model}), kernel {platform.release()}, "
        f"Python {platform.python_version()}; every command {pin}"
    )


def fixture(name: str) -> str:
    """Path of a built fixture program."""
    return str(FIXTURES / name)
