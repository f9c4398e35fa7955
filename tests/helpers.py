"""Helpers for tests: fixture paths, running alloctrace and strace on them, fixture reports."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

import alloctrace
from alloctrace.api import Trace
from tracer.records import Syscall

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures" / "build"
LIBDIR = Path("/usr/lib/x86_64-linux-gnu")
PRELOADS = {
    "jemalloc": LIBDIR / "libjemalloc.so.2",
    "tcmalloc": LIBDIR / "libtcmalloc_minimal.so.4",
    "mimalloc": LIBDIR / "libmimalloc.so.2",
}
MEMORY_TRACE = "trace=mmap,munmap,brk,mprotect,mremap,madvise"
_REPORT = re.compile(r"^fixture: (\S+)((?: \S+=\S*)*)$")


def fixture(name: str) -> str:
    """Path of a built fixture program."""
    return str(FIXTURES / name)


@dataclass
class Run:
    """One `alloctrace record` run: its exit code, output and the trace it wrote."""

    returncode: int
    stdout: str
    stderr: str
    trace: Trace | None

    def reports(self, name: str | None = None) -> list[dict[str, str]]:
        """The fixture's own ground-truth lines (``fixture: NAME key=value...``) as dicts."""
        return parse_reports(self.stderr, name)


def parse_reports(text: str, name: str | None = None) -> list[dict[str, str]]:
    """Parse fixture report lines; each dict has ``fixture`` plus the line's keys."""
    out: list[dict[str, str]] = []
    for line in text.splitlines():
        match = _REPORT.match(line)
        if match is None or (name is not None and match.group(1) != name):
            continue
        entry = {"fixture": match.group(1)}
        for pair in match.group(2).split():
            key, _, value = pair.partition("=")
            entry[key] = value
        out.append(entry)
    return out


def preload_env(allocator: str | None) -> dict[str, str]:
    """The environment that injects ``allocator`` (None: glibc malloc)."""
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    if allocator is not None:
        env["LD_PRELOAD"] = str(PRELOADS[allocator])
    return env


def record(
    tmp_path: Path,
    argv: Sequence[str],
    *options: str,
    env: dict[str, str] | None = None,
    name: str = "trace.jsonl",
) -> Run:
    """Run ``alloctrace record`` as a user would (a subprocess) and load its trace."""
    out = tmp_path / name
    proc = subprocess.run(
        [sys.executable, "-m", "alloctrace", "record", "-o", str(out), *options, "--", *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
        check=False,
    )
    trace = alloctrace.load(out) if out.exists() else None
    return Run(proc.returncode, proc.stdout, proc.stderr, trace)


def strace(
    tmp_path: Path, argv: Sequence[str], *flags: str, env: dict[str, str] | None = None
) -> str:
    """Run strace on ``argv`` with ``flags`` and return its log."""
    if shutil.which("strace") is None:
        pytest.skip("strace is not installed")
    log = tmp_path / "strace.log"
    subprocess.run(
        ["strace", "-o", str(log), *flags, "--", *argv],
        capture_output=True,
        env=env,
        timeout=240,
        check=False,
    )
    return log.read_text()


def syscalls_of(trace: Trace | None) -> Iterator[Syscall]:
    """The syscall events of a trace (fails the test when there is no trace)."""
    assert trace is not None, "no trace was written"
    return trace.syscalls()
