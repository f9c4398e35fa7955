"""Fixture traces recorded once per test session, shared by the API, export and plot tests."""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

import alloctrace
from alloctrace.api import Trace
from tests.helpers import fixture, preload_env, record

_ROOT = Path(tempfile.mkdtemp(prefix="alloctrace-tests-"))
atexit.register(shutil.rmtree, _ROOT, True)


def trace_file(program: str, *args: str, allocator: str | None = None) -> Path:
    """The trace of a fixture run by ``alloctrace record`` (a subprocess, as a user would)."""
    return _recorded((program, *args), allocator)


def loaded(program: str, *args: str, allocator: str | None = None) -> Trace:
    """The Trace of ``trace_file`` (shared: its analysis runs once per session)."""
    return _loaded((program, *args), allocator)


@functools.cache
def _recorded(argv: tuple[str, ...], allocator: str | None) -> Path:
    out = Path(tempfile.mkdtemp(dir=_ROOT))
    run = record(out, [fixture(argv[0]), *argv[1:]], env=preload_env(allocator))
    assert run.returncode == 0, run.stderr
    return out / "trace.jsonl"


@functools.cache
def _loaded(argv: tuple[str, ...], allocator: str | None) -> Trace:
    return alloctrace.load(_recorded(argv, allocator))
