"""Symbolization after recording: a frame's (object, build-id, pc - bias) → function + offset.

Names come from the object's own ``.symtab``/``.dynsym`` and from its separate debug file, found
by build-id (``/usr/lib/debug/.build-id/xx/yyyy.debug``) or by ``.gnu_debuglink`` (glibc's come
from libc6-dbg), read through tracer.elf. C++ names are demangled with cxxfilt. A frame whose
object cannot be read, or whose address no symbol covers, keeps its object and offset.

A return address (every frame but the innermost) points after its call instruction, which may
already be the next function when the call ends a function (a noreturn call): the function is
looked up at ``pc - 1``, the offset shown is still that of the return address, as gdb does.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Final

import cxxfilt
from elftools.common.exceptions import ELFError

from tracer import elf
from tracer.records import Frame, Module

DEBUG_ROOT: Final = "/usr/lib/debug"
_MAX_RESOLVED: Final = 200_000


@dataclass(frozen=True, slots=True)
class ResolvedFrame:
    """One frame with its names: where it is (object, function, offsets) and how it was found.

    ``address`` is the pc inside the object (``pc - bias``, an ELF virtual address, what
    ``addr2line -e OBJECT`` takes); ``offset`` the pc's offset in ``function``, or in the object
    when no function is known. ``pc``, ``module`` and ``how`` are the recorded Frame's.
    """

    pc: int
    module: int | None
    how: str
    object: str | None
    function: str | None
    offset: int
    address: int | None
    build_id: str | None = None

    @property
    def object_name(self) -> str:
        """The object's file name (``libc.so.6``), or ``?`` when the pc is in no known object."""
        return os.path.basename(self.object) if self.object else "?"

    def __str__(self) -> str:
        where = f"{self.function}+{self.offset:#x}" if self.function else f"+{self.offset:#x}"
        return f"{self.object_name}({where})"


@lru_cache(maxsize=65536)
def demangle(name: str) -> str:
    """A C++ symbol's readable name (``_ZNSt6vector...`` → ``std::vector<...>::...``)."""
    if not name.startswith("_Z"):
        return name
    try:
        return str(cxxfilt.demangle(name))
    except (cxxfilt.InvalidName, UnicodeDecodeError):
        return name


class Symbolizer:
    """Resolves frames; symbol tables cached per object, results per (build-id, address)."""

    def __init__(self, debug_root: str = DEBUG_ROOT) -> None:
        self.debug_root = debug_root
        # per object: the tables read so far, and the reader of the rest
        self._tables: dict[
            tuple[str, str | None],
            tuple[list[elf.FunctionSymbols], Iterator[elf.FunctionSymbols]],
        ] = {}
        self._resolved: OrderedDict[tuple[str, str | None, int], tuple[str | None, int]] = (
            OrderedDict()
        )

    # -- finding symbol files -------------------------------------------------------------------

    def debug_file(self, path: str | None, build_id: str | None) -> str | None:
        """The separate debug file of an object: by build-id first, else by .gnu_debuglink."""
        if build_id and len(build_id) > 2:
            candidate = Path(self.debug_root, ".build-id", build_id[:2], f"{build_id[2:]}.debug")
            if candidate.is_file():
                return str(candidate)
        if path is None:
            return None
        obj = elf.open_elf(path)
        link = obj.debuglink() if obj is not None else None
        if link is None:
            return None
        name, crc = link
        real = os.path.realpath(path)
        directory = os.path.dirname(real)
        for candidate_path in (
            os.path.join(directory, name),
            os.path.join(directory, ".debug", name),
            os.path.join(self.debug_root, directory.lstrip("/"), name),
        ):
            if (
                candidate_path != real
                and os.path.isfile(candidate_path)
                and _crc32(candidate_path) == crc
            ):
                return candidate_path
        return None

    def tables(self, path: str | None, build_id: str | None) -> Iterator[elf.FunctionSymbols]:
        """The symbol tables to search for an object, most complete first.

        Each is read when a lookup first gets to it: the object's own tables only when its debug
        file's have not answered (libc.so.6's take 12 ms to read, and libc6-dbg's answer all).
        """
        key = (path or "", build_id)
        entry = self._tables.get(key)
        if entry is None:
            entry = self._tables[key] = ([], self._read_tables(path, build_id))
        read, unread = entry
        yield from read
        for table in unread:
            read.append(table)
            yield table

    def _read_tables(self, path: str | None, build_id: str | None) -> Iterator[elf.FunctionSymbols]:
        try:
            debug = self.debug_file(path, build_id)
            if debug is not None:
                dobj = elf.open_elf(debug)
                if dobj is not None and (build_id is None or dobj.build_id in (None, build_id)):
                    yield dobj.function_symbols()
            if path is not None:
                obj = elf.open_elf(path)
                # A file replaced since the recording (another build-id) would give wrong names.
                if obj is not None and (build_id is None or obj.build_id == build_id):
                    yield obj.function_symbols()
        except (OSError, ValueError, KeyError, IndexError, struct.error, ELFError):
            pass  # a damaged object: what was read so far, else object+offset

    # -- resolving ------------------------------------------------------------------------------

    def function_at(
        self, path: str | None, build_id: str | None, address: int
    ) -> tuple[str, int] | None:
        """(demangled function name, start) of the function containing ``address``."""
        key = (path or "", build_id, address)
        hit = self._resolved.get(key)
        if hit is None:
            hit = (None, 0)
            for table in self.tables(path, build_id):
                found = table.lookup(address)
                if found is not None:
                    hit = (demangle(found[0]), address - found[1])
                    break
            self._resolved[key] = hit
            if len(self._resolved) > _MAX_RESOLVED:
                self._resolved.popitem(last=False)
        function, start = hit
        return None if function is None else (function, start)

    def resolve(self, frame: Frame, module: Module | None) -> ResolvedFrame:
        """Names for one recorded frame (``module`` is the Module record its id refers to)."""
        if module is None:
            return ResolvedFrame(frame.pc, frame.module, frame.how, None, None, frame.pc, None)
        address = frame.pc - module.bias
        lookup = address if frame.how == "regs" else address - 1
        found = self.function_at(module.path, module.build_id, lookup)
        if found is None and lookup != address:
            # A signal trampoline's return address is its first instruction (the handler
            # returns into it): pc - 1 is padding before it.
            found = self.function_at(module.path, module.build_id, address)
        if found is None:
            return ResolvedFrame(
                frame.pc,
                frame.module,
                frame.how,
                module.path,
                None,
                address,
                address,
                module.build_id,
            )
        name, start = found
        return ResolvedFrame(
            frame.pc,
            frame.module,
            frame.how,
            module.path,
            name,
            address - start,
            address,
            module.build_id,
        )

    def resolve_all(
        self, frames: Iterable[Frame], modules: dict[int, Module]
    ) -> tuple[ResolvedFrame, ...]:
        """Names for a whole stack."""
        return tuple(
            self.resolve(f, modules.get(f.module) if f.module is not None else None) for f in frames
        )


def _crc32(path: str) -> int:
    crc = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            crc = zlib.crc32(chunk, crc)
    return crc & 0xFFFFFFFF
