"""The loader's work per object: what it mapped for each shared object, and why it was loaded.

An object is loaded because the kernel mapped it at exec (the executable and its interpreter),
because an already loaded object names it in DT_NEEDED (read with pyelftools), because
LD_PRELOAD names it, or because code called dlopen (the stack says from which object).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from analyzers.model import Classified
from analyzers.symbols import ResolvedFrame
from tracer import elf
from tracer.records import Syscall
from tracer.traceformat import TraceData

_DLOPEN = re.compile(r"dlopen.*|__dlopen.*|_dl_open|dl_open_worker.*|dlmopen.*|__libc_dlopen.*")
_SYSTEM = re.compile(r"(ld-linux|ld-musl|libc\.so|libc\.musl|libdl\.so).*")


@dataclass
class LoadedObject:
    """One ELF object in one process, with what the loader did for it."""

    pid: int
    path: str
    how: str  # "kernel" | "DT_NEEDED" | "LD_PRELOAD" | "dlopen"
    needed_by: str | None = None  # the object whose DT_NEEDED (or dlopen call) brought it in
    mmaps: int = 0
    mprotects: int = 0
    munmaps: int = 0
    reserved: int = 0  # length of the first mapping, which spans the whole object
    mapped: int = 0  # bytes of all its mmaps
    segments: list[str] = field(default_factory=list)
    first_seq: int = 0

    @property
    def name(self) -> str:
        """The file name (``libc.so.6``)."""
        return os.path.basename(self.path)

    @property
    def calls(self) -> int:
        """Loader syscalls made for this object."""
        return self.mmaps + self.mprotects + self.munmaps


def _names(path: str) -> set[str]:
    """The names an object answers to in DT_NEEDED: its file name, soname, resolved name."""
    names = {os.path.basename(path), os.path.basename(os.path.realpath(path))}
    obj = elf.open_elf(path)
    if obj is not None:
        soname, _ = obj.dynamic()
        if soname:
            names.add(soname)
    return names


def _needed(path: str) -> tuple[str, ...]:
    obj = elf.open_elf(path)
    return () if obj is None else obj.dynamic()[1]


def _preloaded(trace: TraceData) -> set[str]:
    value = trace.header.env.get("LD_PRELOAD", "")
    return {os.path.basename(p) for p in re.split(r"[ :]", value) if p}


def loaded_objects(
    trace: TraceData,
    classified: Sequence[Classified],
    frames_of: Callable[[Syscall], Sequence[ResolvedFrame]],
) -> list[LoadedObject]:
    """Every object each process had mapped by its loader (or the kernel), in load order."""
    preloaded = _preloaded(trace)
    objects: dict[tuple[int, str], LoadedObject] = {}
    order: dict[int, list[LoadedObject]] = {}
    for event in trace.execs():
        order[event.pid] = []
        exe = LoadedObject(event.pid, event.path, "kernel", first_seq=event.seq)
        objects[event.pid, event.path] = exe
        order[event.pid].append(exe)
    for c in classified:
        if c.category != "loader" or not c.object or c.object == "/etc/ld.so.cache":
            continue
        e = c.event
        key = (e.pid, c.object)
        entry = objects.get(key)
        if entry is None:
            entry = objects[key] = _new_object(e, c.object, order, preloaded, frames_of)
            order.setdefault(e.pid, []).append(entry)
        if e.syscall == "mmap":
            entry.mmaps += 1
            entry.mapped += e.length or 0
            if c.segment == "span":
                entry.reserved = e.length or 0
        elif e.syscall == "mprotect":
            entry.mprotects += 1
        elif e.syscall == "munmap":
            entry.munmaps += 1
        if c.segment and c.segment not in entry.segments:
            entry.segments.append(c.segment)
    return [o for objs in order.values() for o in objs]


def _new_object(
    event: Syscall,
    path: str,
    order: dict[int, list[LoadedObject]],
    preloaded: set[str],
    frames_of: Callable[[Syscall], Sequence[ResolvedFrame]],
) -> LoadedObject:
    earlier = order.get(event.pid, [])
    names = _names(path)
    if names & preloaded:
        return LoadedObject(event.pid, path, "LD_PRELOAD", first_seq=event.seq)
    # ld.so maps breadth first (the object asked for, at exec or by dlopen, then what it names
    # in DT_NEEDED, and so on): the first loaded object naming this one brought it in.
    needer = next((o.path for o in earlier if names & set(_needed(o.path))), None)
    frames = frames_of(event)
    if needer is None and any(f.function and _DLOPEN.fullmatch(f.function) for f in frames):
        caller = next(
            (f.object for f in frames if f.object and not _SYSTEM.match(f.object_name)), None
        )
        return LoadedObject(event.pid, path, "dlopen", caller, first_seq=event.seq)
    exe = earlier[0].path if earlier and earlier[0].how == "kernel" else None
    exe_elf = elf.open_elf(exe) if exe else None
    interpreter = exe_elf.interpreter if exe_elf is not None else None
    if interpreter is not None and os.path.realpath(interpreter) == os.path.realpath(path):
        return LoadedObject(event.pid, path, "kernel", first_seq=event.seq)  # PT_INTERP
    return LoadedObject(event.pid, path, "DT_NEEDED", needer, first_seq=event.seq)
