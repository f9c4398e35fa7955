"""Symbolization after recording: debug files by build-id and .gnu_debuglink, pc - 1 for return
addresses, C++ demangling, unresolved frames, and what the API and `report --stacks` show."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import alloctrace
from alloctrace.api import Trace
from analyzers.symbols import ResolvedFrame, Symbolizer, demangle
from tests.helpers import fixture, preload_env
from tracer import elf
from tracer.recording import record
from tracer.records import Frame, Module, Syscall
from tracer.session import TraceOptions

LIBC = "/usr/lib/x86_64-linux-gnu/libc.so.6"
LD_SO = "ld-linux-x86-64.so.2"
MAP_ANONYMOUS = 0x20
MAP_DENYWRITE = 0x800
needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed")


@pytest.fixture(scope="module")
def seed(tmp_path_factory: pytest.TempPathFactory) -> Trace:
    out = tmp_path_factory.mktemp("seed") / "seed.jsonl"
    record([fixture("seed")], out, TraceOptions(), env=preload_env(None))
    return alloctrace.load(out)


def _functions(trace: Trace, event: Syscall, obj: str) -> list[str]:
    return [f.function or "" for f in trace.frames(event) if f.object_name == obj]


def _libc_has_debug_symbols() -> bool:
    obj = elf.open_elf(LIBC)
    return obj is not None and Symbolizer().debug_file(LIBC, obj.build_id) is not None


needs_libc6_dbg = pytest.mark.skipif(
    not _libc_has_debug_symbols(), reason="libc6-dbg is not installed"
)


@needs_libc6_dbg
def test_seed_heap_growth_is_sysmalloc(seed: Trace) -> None:
    grows = [e for e in seed.syscalls() if e.syscall == "brk" and e.addr]
    assert grows
    for event in grows:
        assert "sysmalloc" in _functions(seed, event, "libc.so.6"), [
            str(f) for f in seed.frames(event)
        ]


@needs_libc6_dbg
def test_seed_loader_maps_segments(seed: Trace) -> None:
    loader = [
        e
        for e in seed.syscalls()
        if e.syscall == "mmap" and e.flags is not None and e.flags & MAP_DENYWRITE
    ]
    assert len(loader) >= 4  # libc: the reservation and its segments
    for event in loader:
        names = _functions(seed, event, LD_SO)
        assert {"_dl_map_segments", "_dl_map_object_from_fd"} & set(names), names


@needs_libc6_dbg
def test_seed_tls_block(seed: Trace) -> None:
    events = list(seed.syscalls())
    first_mprotect = next(i for i, e in enumerate(events) if e.syscall == "mprotect")
    tls = [
        e
        for e in events[:first_mprotect]
        if e.syscall == "mmap" and e.flags is not None and e.flags & MAP_ANONYMOUS
    ][-1]
    assert "_dl_allocate_tls_storage" in _functions(seed, tls, LD_SO), [
        str(f) for f in seed.frames(tls)
    ]


def test_frames_have_objects_functions_offsets(seed: Trace) -> None:
    event = next(e for e in seed.syscalls() if e.syscall == "brk" and e.addr)
    frames = seed.frames(event)
    assert all(isinstance(f, ResolvedFrame) for f in frames)
    main = next(f for f in frames if f.function == "main")
    assert main.object == fixture("seed") and main.how == "cfi"
    assert main.address is not None and main.offset > 0
    module = seed.module(main)
    assert module is not None and main.pc - module.bias == main.address
    raw = seed.raw_frames(event)
    assert [f.pc for f in raw] == [f.pc for f in frames]


def test_return_addresses_are_looked_up_before_the_call() -> None:
    obj = elf.open_elf(LIBC)
    assert obj is not None
    symbols = obj.function_symbols()
    # A function that starts right where the previous one ends.
    i = next(
        k
        for k in range(1, len(symbols.starts))
        if symbols.ends[k - 1] == symbols.starts[k] and symbols.names[k] != symbols.names[k - 1]
    )
    start = symbols.starts[i]
    module = Module(1, 1, LIBC, 0, 0x200000, 0, obj.build_id)
    symbolizer = Symbolizer()
    as_return = symbolizer.resolve(Frame(start, 1, "cfi"), module)
    as_pc = symbolizer.resolve(Frame(start, 1, "regs"), module)
    assert as_pc.function == demangle(symbols.names[i]) and as_pc.offset == 0
    assert as_return.function == demangle(symbols.names[i - 1])
    assert as_return.offset == start - symbols.starts[i - 1]


def test_unresolved_frames_keep_object_and_offset(tmp_path: Path) -> None:
    blob = tmp_path / "blob.so"
    blob.write_bytes(b"not an ELF object")
    module = Module(7, 1, str(blob), 0x10000, 0x20000, 0x10000, None)
    frame = Symbolizer().resolve(Frame(0x10123, 7, "cfi"), module)
    assert frame.function is None and frame.object == str(blob)
    assert frame.offset == 0x123 and frame.address == 0x123
    assert str(frame) == "blob.so(+0x123)"
    lost = Symbolizer().resolve(Frame(0x4242, None, "scan"), None)
    assert lost.object is None and lost.offset == 0x4242 and str(lost) == "?(+0x4242)"


def test_libc_debug_file_by_build_id() -> None:
    obj = elf.open_elf(LIBC)
    assert obj is not None and obj.build_id
    path = Symbolizer().debug_file(LIBC, obj.build_id)
    if path is None:
        pytest.skip("libc6-dbg is not installed")
    assert path.endswith(f"{obj.build_id[2:]}.debug")
    assert "/.build-id/" in path


@needs_gcc
def test_debug_file_by_debuglink(tmp_path: Path) -> None:
    if shutil.which("objcopy") is None:
        pytest.skip("binutils is not installed")
    src = tmp_path / "prog.c"
    src.write_text(
        "__attribute__((noinline)) static int helper(int x) { return x * 3 + 1; }\n"
        "int main(int argc, char **argv) { (void)argv; return helper(argc); }\n"
    )
    prog = tmp_path / "prog"
    subprocess.run(["gcc", "-O1", "-g", "-o", str(prog), str(src)], check=True)
    debug = tmp_path / "prog.debug"
    subprocess.run(["objcopy", "--only-keep-debug", str(prog), str(debug)], check=True)
    subprocess.run(["objcopy", "--strip-all", str(prog)], check=True)
    subprocess.run(["objcopy", f"--add-gnu-debuglink={debug}", str(prog)], check=True)
    stripped = elf.open_elf(str(prog))
    assert stripped is not None and not stripped.has_symtab()
    full = elf.open_elf(str(debug))
    assert full is not None
    symbols = full.function_symbols()
    helper = symbols.starts[symbols.names.index("helper")]
    symbolizer = Symbolizer(debug_root=str(tmp_path / "no-debug-root"))
    assert symbolizer.debug_file(str(prog), stripped.build_id) == str(debug)
    module = Module(1, 1, str(prog), 0, 0x10000, 0, stripped.build_id)
    frame = symbolizer.resolve(Frame(helper + 2, 1, "regs"), module)
    assert (frame.function, frame.offset) == ("helper", 2)


@needs_gcc
def test_cplusplus_names_are_demangled(tmp_path: Path) -> None:
    if shutil.which("g++") is None:
        pytest.skip("g++ is not installed")
    src = tmp_path / "prog.cpp"
    src.write_text(
        "#include <sys/mman.h>\n"
        "namespace pool {\n"
        "__attribute__((noinline)) void *grow(unsigned long n) {\n"
        "  void *p = mmap(0, n, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);\n"
        '  __asm__ volatile("" ::: "memory");\n'
        "  return p;\n"
        "}\n"
        "}\n"
        "int main() { return pool::grow(0x13000) == MAP_FAILED; }\n"
    )
    prog = tmp_path / "prog"
    subprocess.run(["g++", "-O1", "-g", "-o", str(prog), str(src)], check=True)
    out = tmp_path / "t.jsonl"
    record([str(prog)], out, TraceOptions(), env=preload_env(None))
    trace = alloctrace.load(out)
    event = next(e for e in trace.syscalls() if e.length == 0x13000)
    assert "pool::grow(unsigned long)" in [f.function for f in trace.frames(event)]
    assert demangle("_ZN4pool4growEm") == "pool::grow(unsigned long)"
    assert demangle("not_mangled") == "not_mangled"


def test_report_stacks_prints_strace_style(seed: Trace) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "alloctrace", "report", "--stacks", seed.path],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert any(
        line.split("  ", 1)[-1].startswith(
            "mmap(NULL, 8192, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = 0x"
        )
        for line in lines
    )
    assert any(line.startswith(" > libc.so.6(malloc+0x") for line in lines)
    assert any(line.startswith(" > seed(main+0x") for line in lines)
    plain = subprocess.run(
        [sys.executable, "-m", "alloctrace", "report", seed.path],
        capture_output=True,
        text=True,
        check=False,
    )
    assert plain.returncode == 0 and " > " not in plain.stdout


def test_report_of_a_missing_trace_is_one_line(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "alloctrace", "report", "--stacks", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("alloctrace:")


@needs_gcc
def test_the_plainest_alias_names_an_address(tmp_path: Path) -> None:
    """Of the symbols at one address: the fewest leading underscores, then global over weak
    over local, then the shortest name; whichever order the table lists them in."""
    src = tmp_path / "aliases.c"
    src.write_text(
        "int __impl_one(int x) { return x + 1; }\n"
        'int __libc_one(int) __attribute__((alias("__impl_one")));\n'
        'int one(int) __attribute__((weak, alias("__impl_one")));\n'
        'int _one(int) __attribute__((alias("__impl_one")));\n'
        "static int two_local(int x) { return x * 2; }\n"
        'int two_weak(int) __attribute__((weak, alias("two_local")));\n'
        'int two_global_name(int) __attribute__((alias("two_local")));\n'
        "int three(int x) { return x * 3; }\n"
    )
    lib = tmp_path / "libaliases.so"
    subprocess.run(["gcc", "-O1", "-shared", "-fPIC", "-o", str(lib), str(src)], check=True)
    obj = elf.open_elf(str(lib))
    assert obj is not None
    symbols = obj.function_symbols()
    found = set(symbols.names)  # one name per address
    assert {"one", "two_global_name", "three"} <= found
    assert not found & {"__impl_one", "__libc_one", "_one", "two_local", "two_weak"}
