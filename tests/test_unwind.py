"""The unwinder, module map and ELF access: CFI from .eh_frame and .debug_frame, signal frames,
the frame-pointer and stack-scanning fallbacks, module bookkeeping, expressions."""

from __future__ import annotations

import ctypes
import os
import shutil
import struct
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

import alloctrace
from alloctrace.api import Trace
from analyzers.symbols import ResolvedFrame
from tests.helpers import fixture, preload_env
from tracer import elf, unwind
from tracer.modules import ProcessModules
from tracer.recording import record
from tracer.session import TraceOptions

# inner → outer → main; each keeps its frame (no tail calls: work after the call).
CHAIN_C = r"""
#include <sys/mman.h>
__attribute__((noinline)) void *inner(unsigned long n) {
    void *p = mmap(0, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    __asm__ volatile("" ::: "memory");
    return p;
}
__attribute__((noinline)) void *outer(unsigned long n) {
    void *p = inner(n * 2);
    __asm__ volatile("" ::: "memory");
    return p;
}
int main(void) {
    void *p = outer(0x2e800);
    __asm__ volatile("" ::: "memory");
    munmap(p, 0x5d000);
    return 0;
}
"""

SIGNAL_C = r"""
#include <signal.h>
#include <sys/mman.h>
static void handler(int sig) {
    (void)sig;
    void *p = mmap(0, 20480, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    munmap(p, 20480);
}
int main(void) {
    signal(SIGUSR1, handler);
    raise(SIGUSR1);
    return 0;
}
"""

needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed")


def _build(tmp_path: Path, source: str, name: str, *flags: str) -> str:
    src = tmp_path / f"{name}.c"
    src.write_text(source)
    out = tmp_path / name
    subprocess.run(["gcc", "-O1", *flags, "-o", str(out), str(src)], check=True)
    return str(out)


def _trace(tmp_path: Path, argv: list[str], name: str = "t.jsonl") -> Trace:
    out = tmp_path / name
    record(argv, out, TraceOptions(), env=preload_env(None))
    return alloctrace.load(out)


def _stack_of(trace: Trace, syscall: str, length: int) -> tuple[ResolvedFrame, ...]:
    for event in trace.syscalls():
        if event.syscall == syscall and event.length == length:
            return trace.frames(event)
    raise AssertionError(f"no {syscall} of {length} bytes")


def _names(frames: tuple[ResolvedFrame, ...]) -> list[str | None]:
    return [f.function for f in frames]


@needs_gcc
def test_debug_frame_cfi(tmp_path: Path) -> None:
    # -g without unwind tables: GCC describes the frames in .debug_frame instead of .eh_frame.
    prog = _build(tmp_path, CHAIN_C, "dbgframe", "-g", "-fno-asynchronous-unwind-tables")
    obj = elf.open_elf(prog)
    assert obj is not None and obj.section_data(".debug_frame")
    frames = _stack_of(_trace(tmp_path, [prog]), "mmap", 0x5D000)
    names = _names(frames)
    assert names[1:4] == ["inner", "outer", "main"], names
    assert all(f.how in ("regs", "cfi") for f in frames), [f.how for f in frames]


@needs_gcc
def test_frame_pointer_fallback(tmp_path: Path) -> None:
    prog = _build(
        tmp_path,
        CHAIN_C,
        "fp",
        "-g0",
        "-fno-asynchronous-unwind-tables",
        "-fno-unwind-tables",
        "-fno-omit-frame-pointer",
    )
    frames = _stack_of(_trace(tmp_path, [prog]), "mmap", 0x5D000)
    names = _names(frames)
    assert names[1:4] == ["inner", "outer", "main"], names
    hows = [f.how for f in frames]
    assert hows[2] == "fp" and hows[3] == "fp", hows  # inner and outer have no CFI
    assert "__libc_start_call_main" in names  # and CFI takes over again in libc


@needs_gcc
def test_stack_scanning_fallback(tmp_path: Path) -> None:
    prog = _build(
        tmp_path,
        CHAIN_C,
        "scan",
        "-g0",
        "-fno-asynchronous-unwind-tables",
        "-fno-unwind-tables",
        "-fomit-frame-pointer",
    )
    frames = _stack_of(_trace(tmp_path, [prog]), "mmap", 0x5D000)
    names = _names(frames)
    assert names[1:4] == ["inner", "outer", "main"], names
    assert "scan" in [f.how for f in frames[2:4]], [f.how for f in frames]


@needs_gcc
def test_through_a_signal_frame(tmp_path: Path) -> None:
    prog = _build(tmp_path, SIGNAL_C, "sig", "-g")
    frames = _stack_of(_trace(tmp_path, [prog]), "mmap", 20480)
    names = _names(frames)
    assert names[1] == "handler", names
    assert "__restore_rt" in names, names
    assert "main" in names, names  # through the signal frame (CFI expressions) to main
    assert all(f.how in ("regs", "cfi") for f in frames), [f.how for f in frames]


def test_loader_frames_are_cfi_all_the_way(tmp_path: Path) -> None:
    trace = _trace(tmp_path, [fixture("seed")])
    for event in trace.syscalls():
        frames = trace.frames(event)
        assert frames[0].how == "regs"
        assert all(f.how == "cfi" for f in frames[1:]), [str(f) for f in frames]
        assert frames[-1].function in ("_start", "_dl_start_user"), [str(f) for f in frames]


# -- the module map ---------------------------------------------------------------------------


def _ids() -> Callable[[], int]:
    counter = iter(range(1, 1000))
    return lambda: next(counter)


def test_module_map_follows_mmap_and_munmap() -> None:
    space = ProcessModules(0, _ids())
    libc = "/usr/lib/x86_64-linux-gnu/libc.so.6"
    base = 0x7F0000000000
    # ld.so: reserve the whole span (offset 0), then the segments MAP_FIXED inside it.
    space.add_file(base, 0x1E2000, 0, libc)
    space.add_file(base + 0x26000, 0x156000, 0x26000, libc)
    space.remove(base + 0x1D9000, 0x9000)  # .bss: anonymous MAP_FIXED over the tail
    module = space.find(base + 0x30000)
    assert module is not None and module.path == libc
    assert module.bias == base
    assert module.build_id == "93ac61ec5a8eb1396f9fbd350e3169a558528a40" or module.build_id
    assert space.find(base + 0x1DA000) is None
    assert len(space.modules()) == 1
    child = space.copy(1)
    assert child.find(base + 0x30000) is module and child.layout == space.layout
    space.remove(base, 0x1E2000)  # dlclose
    assert space.find(base + 0x30000) is None
    assert child.find(base + 0x30000) is module  # the fork's copy is its own
    # Another object adjacent to nothing: a new module; unknown paths stay unopened.
    space.add_file(base, 0x1000, 0, "/nonexistent/libx.so")
    other = space.find(base)
    assert other is not None and other.id != module.id and other.elf() is None


def test_module_map_falls_back_to_proc_maps() -> None:
    space = ProcessModules(os.getpid(), _ids())
    address = ctypes.cast(ctypes.CDLL(None).malloc, ctypes.c_void_p).value
    assert address is not None
    assert space.find(address) is None
    assert space.refresh()
    module = space.find(address)
    assert module is not None and module.path.endswith("libc.so.6")


def test_exec_seeding_from_maps_lines() -> None:
    space = ProcessModules(0, _ids())
    exe = fixture("seed")
    space.seed(
        [
            (0x555555554000, 0x555555555000, "r--p", 0, exe),
            (0x555555555000, 0x555555556000, "r-xp", 0x1000, exe),
            (0x555555556000, 0x555555557000, "r--p", 0x2000, exe),
            (0x555555558000, 0x555555559000, "rw-p", 0x3000, exe),
            (0x555555559000, 0x55555557A000, "rw-p", 0, "[heap]"),
            (0x7FFFF7FC1000, 0x7FFFF7FC3000, "r-xp", 0, "[vdso]"),
        ]
    )
    assert [m.path for m in space.modules()] == [exe, "[vdso]"]
    module = space.find(0x555555555100)
    assert module is not None and module.bias == 0x555555554000
    assert space.find(0x555555560000) is None


# -- pieces -----------------------------------------------------------------------------------


def test_after_call_detection() -> None:
    assert unwind._after_call(b"\x90\x90\xe8\x10\x20\x30\x40")  # call rel32
    assert unwind._after_call(b"\x90\x90\x90\x90\x90\xff\xd0")  # call *%rax
    assert unwind._after_call(b"\x90\xff\x15\x01\x02\x03\x04")  # call *0x..(%rip)
    assert not unwind._after_call(b"\x90\x90\x90\x90\x90\x90\xc3")
    assert not unwind._after_call(b"\xe8")


class _Memory:
    def __init__(self, base: int, words: list[int]) -> None:
        self.base = base
        self.data = struct.pack(f"<{len(words)}Q", *words)

    def read(self, addr: int, size: int) -> bytes:
        off = addr - self.base
        if off < 0 or off >= len(self.data):
            return b""
        return self.data[off : off + size]


def test_plt_style_expression() -> None:
    # PLT entries: CFA = rsp + 8 + ((rip & 15) >= 11 ? 8 : 0).
    expr: elf.Expression = (
        ("DW_OP_breg7", (8,)),
        ("DW_OP_breg16", (0,)),
        ("DW_OP_lit15", ()),
        ("DW_OP_and", ()),
        ("DW_OP_lit11", ()),
        ("DW_OP_ge", ()),
        ("DW_OP_lit3", ()),
        ("DW_OP_shl", ()),
        ("DW_OP_plus", ()),
    )
    stack = unwind._Stack(_Memory(0x1000, [0] * 8), 0x1000, b"", False)
    regs: list[int | None] = [None] * elf.REGISTER_COUNT
    regs[elf.RSP] = 0x1000
    regs[elf.RA] = 0x40102B  # & 15 == 11
    assert unwind._evaluate(expr, regs, stack, None) == 0x1000 + 16
    regs[elf.RA] = 0x401026
    assert unwind._evaluate(expr, regs, stack, None) == 0x1000 + 8
    deref: elf.Expression = (("DW_OP_breg7", (8,)), ("DW_OP_deref", ()))
    memory = _Memory(0x1000, [0, 0xDEAD, 0])
    stack = unwind._Stack(memory, 0x1000, memory.read(0x1000, 24), True)
    assert unwind._evaluate(deref, regs, stack, None) == 0xDEAD


def test_eh_frame_hdr_index_matches_a_full_parse() -> None:
    obj = elf.open_elf("/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")
    assert obj is not None
    sources = obj._open_cfi()
    indexed = sources[0]
    assert indexed.entries is None  # found through .eh_frame_hdr, nothing parsed yet
    full = elf._CfiSource(indexed.cfi)
    assert full.starts == indexed.starts
    for start in indexed.starts[:: max(1, len(indexed.starts) // 50)]:
        assert indexed.find(start + 1) is not None
        assert (
            indexed.find(start + 1)["initial_location"] == full.find(start + 1)["initial_location"]
        )


def test_elf_layout_and_build_id() -> None:
    static = elf.open_elf(fixture("static"))
    assert static is not None and static.e_type == "ET_EXEC"
    assert static.bias_for(0x400000, 0) == 0
    seed = elf.open_elf(fixture("seed"))
    assert seed is not None and seed.e_type == "ET_DYN" and seed.build_id
    assert seed.bias_for(0x555555554000, 0) == 0x555555554000
    assert elf.open_elf("/nonexistent") is None
    assert elf.open_elf("/etc/hostname") is None  # not ELF
