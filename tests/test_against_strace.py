"""Differential test: alloctrace records the same memory syscalls as strace, event for event."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import MEMORY_TRACE, fixture, record, strace, syscalls_of
from tracer.strace_log import parse_strace

Key = tuple[str, int | None, int | None, int | None, str | None]


@pytest.mark.parametrize("program", ["seed", "seed-jemalloc", "static", "big", "dlopen"])
def test_same_calls_as_strace(tmp_path: Path, program: str) -> None:
    argv = [fixture(program)]
    log = parse_strace(strace(tmp_path, argv, "-f", "-y", "-e", MEMORY_TRACE))
    assert not log.unparsed
    expected: list[Key] = [
        (c.syscall, c.length, c.prot, c.flags, c.path) for c in log.calls if c.syscall != "prctl"
    ]
    result = record(tmp_path, argv, "--no-stacks")
    assert result.returncode == 0, result.stderr
    traced: list[Key] = [
        (e.syscall, e.length, e.prot, e.flags, e.path)
        for e in syscalls_of(result.trace)
        if e.syscall != "prctl"
    ]
    assert traced == expected
