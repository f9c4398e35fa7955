"""An independent labelling of memory syscalls, the reference for tests/test_labels.py.

It reads what ``strace -f -k -y`` saw (parsed by tracer.strace_log) and names the frames
itself, without alloctrace's analyzers or its ELF reader, so that the two can be compared.

Naming a frame
    strace's bracketed number is the pc's *file offset* in the object; the PT_LOAD program
    headers (``readelf -lW``) turn it into an ELF address. A caller's return address minus
    one is looked up, so that a call ending a function stays in it. Symbols come from ``nm``:
    the detached debug file found by build-id (``readelf -n``) under /usr/lib/debug/.build-id
    (libc6-dbg for libc and ld.so) if there is one, else the object's ``.symtab``, else its
    ``.dynsym``. A name counts only if the symbol's size covers the address. CPython's binary
    is stripped and its arena allocator is static: the interpreter itself says where that
    function is (``PyObject_GetArenaAllocator``) and its ``.eh_frame`` entry how long it is.

Labelling a call
    The *decider* is the innermost frame that is not a syscall wrapper: libc's and ld.so's
    stubs, or the ``mmap``/``munmap``/``mremap``/``sbrk`` that tcmalloc interposes.

    1. decider in ld-linux                                  -> loader
    2. decider in libjemalloc, libtcmalloc, libmimalloc, or jemalloc's code linked into
       another object (its private namespace je_ or Rust's _rjem_je_, pages.c's
       os_pages_*: libjemalloc_pic.a)                     -> allocator
    3. decider in glibc (libc.so.6, libc_malloc_debug.so; in a static executable, a function
       that libc.a defines):
       looking at the glibc frames from the decider outwards, up to the first frame that is
       not glibc's,
       a static program's start-up TLS or RELRO (``__libc_setup_tls``, ``_dl_early_allocate``,
       ``_dl_protect_relro``: ld.so's work, done by libc.a's copy of it) -> loader,
       else a malloc-family function                   -> allocator,
       else pthread_create or a stack function         -> thread-stack,
       else                                            -> runtime (locale files, stdio...)
    4. decider in the interpreter (python3.X, or libpython3.X.so when it is built shared):
       one of its frames, outwards to the first frame outside the interpreter, is pymalloc's
       arena code (``_PyObject_Arena*``, 3.13's ``_PyMem_Arena*``, ``new_arena``) -> runtime;
       so is its munmap of exactly a range that code mapped (the arena free function
       tail-calls munmap: it is not on the stack)
    5. anything else: the executable or a library it uses  -> user

A call without a usable frame gets no label (None), nor does one decided in musl's libc
(ld-musl, libc.so): it has no symbols for its internals, nothing to name malloc's code by.
"""

from __future__ import annotations

import bisect
import functools
import os
import re
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import takewhile
from pathlib import Path

from tracer.strace_log import StraceCall, StraceFrame

DEBUG_ROOT = Path("/usr/lib/debug/.build-id")
LIBC_A = Path("/usr/lib/x86_64-linux-gnu/libc.a")

WRAPPERS = frozenset(
    {
        "mmap", "mmap64", "__mmap", "__mmap64", "munmap", "__munmap", "mprotect", "__mprotect",
        "madvise", "__madvise", "mremap", "__mremap", "brk", "__brk", "sbrk", "__sbrk",
        "syscall",
    }
)  # fmt: skip
# What a static program's start-up does in ld.so's stead: TLS (csu/libc-tls.c), RELRO.
STATIC_STARTUP = frozenset({"__libc_setup_tls", "_dl_early_allocate", "_dl_protect_relro"})
MALLOC = re.compile(
    r"(__libc_|_int_|_mid_)?(malloc|free|calloc|realloc|reallocarray|memalign|valloc|pvalloc"
    r"|aligned_alloc|posix_memalign)|.*(malloc|morecore|heap|arena|tcache|chunk|trim).*"
)
THREAD = re.compile(r".*(pthread_create|stack).*|start_thread")
PYMALLOC = re.compile(r"_PyObject_Arena.*|_PyMem_Arena.*|new_arena")  # 3.13: _PyMem_Arena*
ALLOCATOR_LIBS = ("libjemalloc", "libtcmalloc", "libmimalloc")
PYTHON = ("python", "libpython")  # the interpreter, or the library it is when built shared
JEMALLOC_LINKED = re.compile(r"(_rjem_)?je_.*|os_pages_.*")
GLIBC_LIBS = ("libc.so.6", "libc-2.", "libc_malloc_debug.so")  # not musl's libc.so
MUSL_LIBS = ("ld-musl", "libc.musl")

# Run inside the traced interpreter: where its arena allocator's functions are (ELF addresses).
_ASK_PYTHON = """
import ctypes, os, sys
class A(ctypes.Structure):
    _fields_ = [("ctx", ctypes.c_void_p), ("alloc", ctypes.c_void_p), ("free", ctypes.c_void_p)]
a = A()
ctypes.pythonapi.PyObject_GetArenaAllocator(ctypes.byref(a))
exe = os.path.realpath(sys.executable)
base = min(int(l.split("-")[0], 16) for l in open("/proc/self/maps") if l.rstrip().endswith(exe))
print(a.alloc - base, a.free - base)
"""


@dataclass(frozen=True)
class Label:
    """A call's category, the frame that decided it and why."""

    category: str
    decider: str  # "object:function" (function "?" when unnamed)
    why: str


@dataclass(frozen=True)
class Named:
    """A frame with the names of the function it lies in (empty when unknown)."""

    object: str  # file name
    names: frozenset[str]
    glibc: bool  # libc.so.6, or glibc's code linked into a static executable

    def __str__(self) -> str:
        return f"{self.object}:{'/'.join(sorted(self.names)) or '?'}"

    def has(self, pattern: re.Pattern[str] | frozenset[str]) -> bool:
        if isinstance(pattern, frozenset):
            return bool(self.names & pattern)
        return any(pattern.fullmatch(n) for n in self.names)


def _run(*argv: str) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=False).stdout


def _normal(name: str) -> str:
    """``pthread_create@@GLIBC_2.34`` and ``_int_free.part.0`` are pthread_create, _int_free."""
    return re.split(r"[@.]", name, maxsplit=1)[0].removeprefix("__GI_")


class _Object:
    """What the labeller knows of one ELF file: its segments and its functions."""

    def __init__(self, path: str) -> None:
        headers = _run("readelf", "-lW", path)
        self.loads = [
            (int(m[1], 16), int(m[2], 16), int(m[3], 16))  # offset, vaddr, filesz
            for m in re.finditer(r"^\s*LOAD\s+(0x\w+)\s+(0x\w+)\s+0x\w+\s+(0x\w+)", headers, re.M)
        ]
        # No interpreter, and not a shared library: no DYNAMIC at all, or a static-pie's
        # (which relocates itself; FLAGS_1 says PIE).
        self.static = "INTERP" not in headers and (
            "DYNAMIC" not in headers or "PIE" in _run("readelf", "-dW", path)
        )
        ranges = _function_symbols(path)
        if os.path.basename(path).startswith("python3"):
            ranges += self._python_arena_functions(path)
        by_range: dict[tuple[int, int], set[str]] = {}
        for start, end, name in ranges:
            by_range.setdefault((start, end), set()).add(name)
        self.functions = sorted((s, e, frozenset(n)) for (s, e), n in by_range.items())
        self.starts = [s for s, _e, _n in self.functions]

    def address(self, offset: int) -> int | None:
        """The ELF address of a file offset."""
        for file_offset, vaddr, size in self.loads:
            if file_offset <= offset < file_offset + size:
                return offset - file_offset + vaddr
        return None

    def names_at(self, address: int) -> frozenset[str]:
        """The names of the innermost function whose symbol covers ``address``."""
        index = bisect.bisect_right(self.starts, address) - 1
        for start, end, names in reversed(self.functions[max(0, index - 64) : index + 1]):
            if start <= address < end:
                return names
        return frozenset()

    def _python_arena_functions(self, path: str) -> list[tuple[int, int, str]]:
        """CPython's arena alloc/free functions, bounded by their .eh_frame entries."""
        try:
            alloc, free = (int(x) for x in _run(path, "-c", _ASK_PYTHON).split())
        except ValueError:
            return []
        first_page = min(vaddr for _offset, vaddr, _size in self.loads) & ~0xFFF
        fdes = [
            (int(lo, 16), int(hi, 16))
            for lo, hi in re.findall(r"pc=(\w+)\.\.(\w+)", _run("readelf", "-wf", path))
        ]
        return [
            (lo, hi, name)
            for name, offset in (("_PyObject_ArenaMmap", alloc), ("_PyObject_ArenaMunmap", free))
            for lo, hi in fdes
            if lo <= first_page + offset < hi
        ]


def _function_symbols(path: str) -> list[tuple[int, int, str]]:
    """(start, end, name) of the functions of ``path``: from its debug file if installed,
    else from its .symtab, else from its .dynsym."""
    debug = debug_file(path)
    for nm in ([["nm", str(debug)]] if debug else []) + [["nm", path], ["nm", "-D", path]]:
        out = _run(*nm, "--defined-only", "-S")
        found = [
            (int(m[1], 16), int(m[1], 16) + int(m[2], 16), _normal(m[3]))
            for m in re.finditer(r"^(\w+) (\w+) [TtWwi] (\S+)$", out, re.M)
        ]
        if found:
            return found
    return []


def debug_file(path: str) -> Path | None:
    """The detached debug file of ``path``, found by its build-id, if it is installed."""
    match = re.search(r"Build ID: (\w+)", _run("readelf", "-n", path))
    if match is None:
        return None
    debug = DEBUG_ROOT / match[1][:2] / f"{match[1][2:]}.debug"
    return debug if debug.exists() else None


@functools.cache
def _object(path: str) -> _Object:
    return _Object(path)


@functools.cache
def _libc_a_functions() -> frozenset[str]:
    out = _run("nm", "--defined-only", str(LIBC_A))
    return frozenset(_normal(m[1]) for m in re.finditer(r"^\w+ [TtWwi] (\S+)$", out, re.MULTILINE))


def name_frames(frames: Sequence[StraceFrame]) -> list[Named]:
    """Name strace's frames (innermost first) until the first one it could not place."""
    out: list[Named] = []
    for depth, frame in enumerate(frames):
        if frame.path is None or frame.address is None:
            break
        obj = _object(frame.path)
        address = obj.address(frame.address)
        names: frozenset[str] = frozenset()
        if address is not None:
            names = obj.names_at(address - (1 if depth else 0))
        base = os.path.basename(frame.path)
        glibc = base.startswith(GLIBC_LIBS) or (
            obj.static and bool(names) and names <= _libc_a_functions()
        )
        out.append(Named(base, names, glibc))
    return out


def label_frames(frames: Sequence[Named]) -> Label | None:
    """The category of a call made from ``frames`` (innermost first); None without frames."""
    index = next((i for i, f in enumerate(frames) if not f.has(WRAPPERS)), None)
    if index is None:
        return None
    decider = frames[index]
    where = str(decider)

    if decider.object.startswith(MUSL_LIBS) or decider.object == "libc.so":
        return None
    if decider.object.startswith("ld-linux"):
        return Label("loader", where, "ld.so's code")
    if decider.object.startswith(ALLOCATOR_LIBS):
        return Label("allocator", where, "an allocator library")
    if decider.has(JEMALLOC_LINKED):
        return Label("allocator", where, "jemalloc linked into another object")
    if decider.glibc:
        glibc = list(takewhile(lambda f: f.glibc, frames[index:]))
        for category, pattern, why in (
            ("loader", STATIC_STARTUP, "static start-up"),
            ("allocator", MALLOC, "glibc malloc"),
            ("thread-stack", THREAD, "nptl thread stacks"),
        ):
            hit = next((f for f in glibc if f.has(pattern)), None)
            if hit is not None:
                return Label(category, where, f"{why}: {hit}")
        return Label("runtime", where, "glibc's own code")
    if decider.object.startswith(PYTHON):
        python = takewhile(lambda f: f.object == decider.object, frames[index:])
        hit = next((f for f in python if f.has(PYMALLOC)), None)
        if hit is not None:
            return Label("runtime", where, f"pymalloc: {hit}")
    return Label("user", where, "the program or a library it uses")


def label_calls(calls: Sequence[StraceCall]) -> dict[StraceCall, Label | None]:
    """The independent category of each call of a log, taken in the log's order.

    One rule needs the calls before: CPython's arena free function tail-calls munmap, so it
    is not on the stack; an interpreter's munmap of exactly a range that pymalloc's arena
    code mapped is that function's.
    """
    out: dict[StraceCall, Label | None] = {}
    arenas: set[tuple[int | None, int | None]] = set()
    for call in calls:
        found = out[call] = label_frames(name_frames(call.frames))
        if found is None or not found.decider.startswith(PYTHON):
            continue
        if call.syscall == "mmap" and found.category == "runtime":
            arenas.add((call.result, call.length))
        elif call.syscall == "munmap" and (call.addr, call.length) in arenas:
            why = "pymalloc: unmaps an arena (_PyObject_ArenaMunmap tail-calls munmap)"
            out[call] = Label("runtime", found.decider, why)
    return out
