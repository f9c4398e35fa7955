"""Which malloc serves each process: glibc, jemalloc, tcmalloc, mimalloc, musl, static glibc or
static musl.

Decided from the objects the process had loaded (and how: linked through DT_NEEDED, injected
with LD_PRELOAD, or dlopen'd), with the version where the library reveals it in its own bytes;
failing that, from the calls an allocator's code linked into another object made (a static
libjemalloc_pic.a, which no object's file name reveals).
pymalloc is noted on top for CPython processes (unless PYTHONMALLOC turns it off).
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from analyzers.loader import LoadedObject
from analyzers.model import Classified
from tracer import elf
from tracer.traceformat import TraceData

# File name pattern, the allocator's name, and a regex finding its version in the library.
KNOWN: tuple[tuple[re.Pattern[str], str, re.Pattern[bytes] | None], ...] = (
    # jemalloc's version string, e.g. "5.3.0-0-g54eaed1d8b56..." (JEMALLOC_VERSION)
    (
        re.compile(r"libjemalloc.*\.so.*"),
        "jemalloc",
        re.compile(rb"(\d+\.\d+\.\d+)-\d+-g[0-9a-f]{40}"),
    ),
    # gperftools embeds "gperftools 2.10" (TC_VERSION_STRING)
    (
        re.compile(r"libtcmalloc.*\.so.*"),
        "tcmalloc",
        re.compile(rb"gperftools (\d+\.\d+(?:\.\d+)?)"),
    ),
    (re.compile(r"libmimalloc.*\.so.*"), "mimalloc", None),
)
_VERSIONS = {name: version for _file, name, version in KNOWN}


@dataclass(frozen=True)
class AllocatorInfo:
    """The malloc implementation serving one process."""

    name: str  # glibc | jemalloc | tcmalloc | mimalloc | musl | static glibc | static musl
    how: str  # default | linked | preloaded | dlopen | static | linked in (no library of its own)
    path: str | None = None
    version: str | None = None
    runtime: str | None = None  # "pymalloc" for CPython processes

    def describe(self) -> str:
        """One phrase: ``jemalloc 5.3.0 (preloaded)``."""
        version = f" {self.version}" if self.version else ""
        extra = f", with {self.runtime} on top" if self.runtime else ""
        return f"{self.name}{version} ({self.how}{extra})"


@functools.lru_cache(maxsize=64)
def library_version(path: str, pattern: re.Pattern[bytes] | None) -> str | None:
    """The version a library states in its own bytes, or in its file name (libx.so.2.0)."""
    if pattern is not None:
        try:
            found = pattern.search(Path(path).read_bytes())
        except OSError:
            found = None
        if found:
            return found.group(1).decode()
    match = re.search(r"\.so\.(\d+(?:\.\d+)+)$", os.path.realpath(path))
    return match.group(1) if match else None


def identify(path: str) -> tuple[str, str | None] | None:
    """(allocator name, version) when ``path`` is a known allocator library."""
    base = os.path.basename(path)
    for pattern, name, version in KNOWN:
        if pattern.fullmatch(base):
            return name, library_version(path, version)
    return None


def _glibc_version(trace: TraceData) -> str | None:
    libc = str(trace.header.machine.get("libc", ""))
    match = re.search(r"(\d+\.\d+)", libc)
    return match.group(1) if match else None


def _linked_in(events: Sequence[Classified]) -> dict[int, tuple[str, str]]:
    """pid -> (allocator, object) for the first call an allocator made from inside an object
    that is not its own library (the executable, or a library it was linked into)."""
    out: dict[int, tuple[str, str]] = {}
    own_library: dict[str, bool] = {}  # object -> is an allocator's library (asked once each)
    for c in events:
        if (
            c.category != "allocator"
            or c.owner not in _VERSIONS
            or c.decided_by != "stack"
            or not c.object
            or c.event.pid in out
        ):
            continue
        known = own_library.get(c.object)
        if known is None:
            known = own_library[c.object] = identify(c.object) is not None
        if not known:
            out[c.event.pid] = (c.owner, c.object)
    return out


@functools.lru_cache(maxsize=256)
def static_libc(exe: str) -> str | None:
    """The libc a statically linked executable (no PT_INTERP) carries: musl if it defines
    musl's __init_libc (src/env/__libc_start_main.c), else glibc; None if dynamic."""
    obj = elf.open_elf(exe)
    if obj is None or obj.interpreter:
        return None
    return "musl" if "__init_libc" in obj.function_symbols().names else "glibc"


def detect(
    trace: TraceData, objects: Sequence[LoadedObject], events: Sequence[Classified] = ()
) -> dict[int, AllocatorInfo]:
    """The allocator of every process that ran a program in this trace (``events``, its
    classified calls, reveal an allocator linked into another object)."""
    exes = {e.pid: e.path for e in trace.execs()}
    linked_in = _linked_in(events)
    by_pid: dict[int, list[LoadedObject]] = {}
    for obj in objects:
        by_pid.setdefault(obj.pid, []).append(obj)
    pymalloc_off = trace.header.env.get("PYTHONMALLOC", "").startswith("malloc")
    out: dict[int, AllocatorInfo] = {}
    for pid, exe in exes.items():
        loaded = by_pid.get(pid, [])
        runtime = (
            "pymalloc"
            if re.fullmatch(r"python3?(\.\d+)?", os.path.basename(exe)) and not pymalloc_off
            else None
        )
        info = None
        for obj in loaded:
            found = identify(obj.path)
            if found is not None:
                how = {"LD_PRELOAD": "preloaded", "dlopen": "dlopen"}.get(obj.how, "linked")
                info = AllocatorInfo(found[0], how, obj.path, found[1], runtime)
                break
        if info is None and pid in linked_in:
            name, path = linked_in[pid]
            version = library_version(path, _VERSIONS[name])
            info = AllocatorInfo(name, "linked in", path, version, runtime)
        if info is None:
            exe_elf = elf.open_elf(exe)
            interpreter = exe_elf.interpreter if exe_elf is not None else None
            if interpreter is not None and "ld-musl" in interpreter:
                info = AllocatorInfo("musl", "default", runtime=runtime)
            elif exe_elf is not None and interpreter is None:
                name = f"static {static_libc(exe) or 'glibc'}"
                info = AllocatorInfo(name, "static", exe, runtime=runtime)
            else:
                info = AllocatorInfo("glibc", "default", None, _glibc_version(trace), runtime)
        out[pid] = info
    return out
