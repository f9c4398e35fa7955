"""strace logs into traces (tracer/strace_import.py, ``alloctrace import-strace``).

The article's two listings, hand-written logs for each rule of the importer, and ``strace -f -k
-y`` logs of the fixtures classified against alloctrace's own traces of the same programs.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

import alloctrace
from analyzers.model import Classified
from tests.helpers import MEMORY_TRACE, fixture, preload_env, record, strace
from tracer.errors import AlloctraceError
from tracer.records import Exec, Exit, Memory, Module, Spawn, Syscall
from tracer.strace_import import import_strace
from tracer.traceformat import read_trace

DATA = Path(__file__).parent / "data" / "strace"
KIB = 1024


def _import(tmp_path: Path, text: str, name: str = "log.txt") -> tuple[Path, Path]:
    log = tmp_path / name
    log.write_text(text)
    return log, tmp_path / (name + ".jsonl")


def _strace_f(tmp_path: Path, argv: list[str], to: str) -> str:
    """``strace -f`` of argv (every syscall): its -o FILE, or its stderr, where strace's notes
    cut lines in two and pids are printed only while two processes run."""
    if to == "file":
        return strace(tmp_path, argv, "-f")
    if shutil.which("strace") is None:
        pytest.skip("strace is not installed")
    run = subprocess.run(
        ["strace", "-f", "--", *argv], capture_output=True, text=True, timeout=240, check=False
    )
    return run.stderr


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "alloctrace", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


# -- the article's listings ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "mmaps"), [("article-glibc.log", 8), ("article-jemalloc.log", 32)]
)
def test_article_listings_give_8_and_32_mmaps(tmp_path: Path, name: str, mmaps: int) -> None:
    report = import_strace(DATA / name, tmp_path / "t.jsonl")
    assert report.calls == mmaps and not report.unparsed
    data = read_trace(tmp_path / "t.jsonl")
    assert [e.syscall for e in data.syscalls()] == ["mmap"] * mmaps
    assert data.complete and data.footer is not None and data.footer.outcome == "detached"
    assert data.header.options["imported"]["from"] == "strace"
    assert {(e.pid, e.tid) for e in data.syscalls()} == {(0, 0)}  # no -f: one thread


def test_article_jemalloc_listing_is_classified_by_signature(tmp_path: Path) -> None:
    trace = alloctrace.import_strace(DATA / "article-jemalloc.log", tmp_path / "t.jsonl")
    events = trace.classified
    file_backed = [c for c in events if (c.event.fd or -1) >= 0]
    noreserve = [c for c in events if (c.event.flags or 0) & 0x4000]
    loader_anonymous = [c for c in events if c not in file_backed and c not in noreserve]
    assert len(file_backed) == 21 and len(noreserve) == 4 and len(loader_anonymous) == 7
    assert [c.category for c in file_backed] == ["loader"] * 21
    assert [c.category for c in loader_anonymous] == ["loader"] * 7
    assert noreserve == events[-4:]
    assert [c.category for c in noreserve] == ["allocator"] * 4
    assert {c.owner for c in noreserve} == {"jemalloc"}


def test_article_glibc_listing_loader_calls_by_signature(tmp_path: Path) -> None:
    """What the heuristics decide today without paths: the small anonymous maps are ld.so's."""
    trace = alloctrace.import_strace(DATA / "article-glibc.log", tmp_path / "t.jsonl")
    first, *_, last = trace.classified
    assert (first.category, first.owner) == ("loader", "ld.so")
    assert (last.category, last.event.length) == ("loader", 12 * KIB)
    assert all(c.decided_by == "heuristic" for c in trace.classified)


# -- strace -f -k -y against alloctrace ----------------------------------------------------


def _key(c: Classified) -> tuple[object, ...]:
    e = c.event
    return (e.syscall, e.length, e.prot, e.flags, os.path.basename(e.path or ""))


def _agreement(imported: list[Classified], traced: list[Classified]) -> tuple[int, int, int]:
    """Pair the two runs' calls by their arguments, in order; count pairs and equal categories."""
    pending: dict[tuple[object, ...], list[Classified]] = defaultdict(list)
    for c in traced:
        pending[_key(c)].append(c)
    paired = same = 0
    for c in imported:
        candidates = pending.get(_key(c))
        if candidates:
            other = candidates.pop(0)
            paired += 1
            same += other.category == c.category
    return paired, same, len(imported)


@pytest.mark.parametrize(
    "argv",
    [["seed-jemalloc"], ["threads", "8"], ["forkexec"], ["dlopen"], ["usermmap", "--threads", "2"]],
    ids="-".join,
)
def test_k_logs_classify_like_alloctrace(tmp_path: Path, argv: list[str]) -> None:
    program = [fixture(argv[0]), *argv[1:]]
    text = strace(tmp_path, program, "-f", "-k", "-y", "-e", MEMORY_TRACE)
    log = tmp_path / "k.log"
    log.write_text(text)
    imported = alloctrace.import_strace(log, tmp_path / "k.jsonl")
    assert imported.import_report is not None
    assert not imported.import_report.unparsed and not imported.import_report.foreign_objects
    run = record(tmp_path, program)
    assert run.returncode == 0 and run.trace is not None, run.stderr
    paired, same, total = _agreement(imported.classified, run.trace.classified)
    assert paired >= 0.95 * total, (paired, total)
    assert same >= 0.99 * paired, (same, paired)
    assert {c.decided_by for c in imported.classified} <= {"stack", "region"}


def test_k_frames_resolve_to_functions(tmp_path: Path) -> None:
    program = [fixture("big")]
    log = tmp_path / "k.log"
    log.write_text(strace(tmp_path, program, "-f", "-k", "-y", "-e", MEMORY_TRACE))
    trace = alloctrace.import_strace(log, tmp_path / "k.jsonl")
    assert trace.header.program == program[0], "found in the stacks: the log has no execve"
    functions = {f.function for e in trace.syscalls() for f in trace.frames(e)}
    assert {"main", "sysmalloc", "_dl_map_object_from_fd", "realloc"} <= functions
    libc = [m for m in trace.data.modules.values() if m.path.endswith("/libc.so.6")]
    mmaps = [e for e in trace.syscalls() if e.path == libc[0].path and e.offset == 0]
    assert libc[0].bias == mmaps[0].result, "the bias comes from the -y mmap of offset 0"
    roles = {c.role for c in trace.classified}
    assert {"large allocation", "realloc move", "free large allocation"} <= roles


def test_k_frames_of_another_build_are_left_unresolved(tmp_path: Path) -> None:
    libc = "/usr/lib/x86_64-linux-gnu/libc.so.6"
    text = (
        f"100 mmap(NULL, 4096, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)"
        f" = 0x7f0000000000\n > {libc}(not_a_function+0x3) [0x28003]\n"
        f" > {libc}(__libc_start_main+0x1) [0x28001]\n100 +++ exited with 0 +++\n"
    )
    log, out = _import(tmp_path, text)
    report = import_strace(log, out)
    assert report.foreign_objects == {libc: 2}
    data = read_trace(out)
    assert [f.module for s in data.stacks.values() for f in s.frames] == [None, None]
    assert any("differs from the object strace saw" in line for line in report.lines())


# -- processes, threads, time --------------------------------------------------------------


@pytest.mark.parametrize("to", ["file", "stderr"])
def test_processes_from_clone_lines(tmp_path: Path, to: str) -> None:
    text = _strace_f(tmp_path, [fixture("forkexec")], to)  # every syscall: clone and execve too
    log, out = _import(tmp_path, text)
    report = import_strace(log, out)
    assert report.process_rule == "clone lines" and report.processes == 2
    data = read_trace(out)
    execs = [e for e in data.events if isinstance(e, Exec)]
    spawns = [e for e in data.events if isinstance(e, Spawn)]
    assert [os.path.basename(e.path) for e in execs] == ["forkexec", "exitcode"]
    assert len(spawns) == 1 and spawns[0].how == "fork"
    assert execs[1].pid == spawns[0].pid != spawns[0].parent_pid == execs[0].pid
    assert data.header.program == fixture("forkexec")
    assert data.footer is not None and data.footer.outcome == "exited"
    assert data.footer.status == 0


@pytest.mark.parametrize("to", ["file", "stderr"])
def test_threads_from_clone3_lines(tmp_path: Path, to: str) -> None:
    text = _strace_f(tmp_path, [fixture("threads"), "3"], to)
    log, out = _import(tmp_path, text)
    import_strace(log, out)
    data = read_trace(out)
    spawns = [e for e in data.events if isinstance(e, Spawn)]
    assert [s.how for s in spawns] == ["thread"] * 3
    assert {e.pid for e in data.events} == {spawns[0].parent_pid}
    assert len({e.tid for e in data.syscalls()}) == 4


def test_processes_inferred_without_clone_lines(tmp_path: Path) -> None:
    text = """\
10 brk(NULL) = 0x5000
10 mmap(NULL, 8392704, PROT_NONE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_STACK, -1, 0) = 0x7f0000000000
11 mmap(NULL, 134217728, PROT_NONE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_NORESERVE, -1, 0) = 0x7e0000000000
12 brk(NULL) = 0x9000
12 mmap(NULL, 8192, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = 0x7d0000000000
13 brk(NULL) = 0x5000
12 +++ exited with 0 +++
11 +++ exited with 0 +++
13 +++ exited with 0 +++
10 +++ exited with 3 +++
"""
    log, out = _import(tmp_path, text)
    report = import_strace(log, out)
    assert report.process_rule == "inferred" and report.processes == 2 and report.threads == 4
    data = read_trace(out)
    assert [(e.tid, e.pid) for e in data.syscalls()] == [
        (10, 10),
        (10, 10),
        (11, 10),  # a new thread after a MAP_STACK mmap: the stack's process
        (12, 12),  # brk returned a break no process has: an exec
        (12, 12),
        (13, 10),  # brk returned process 10's break: its thread
    ]
    exits = [(e.pid, e.tid, e.status) for e in data.events if isinstance(e, Exit)]
    assert exits == [(12, 12, 0), (10, 11, 0), (10, 13, 0), (10, 10, 3)]
    assert data.footer is not None and (data.footer.outcome, data.footer.status) == ("exited", 3)


def test_timestamps_durations_and_midnight(tmp_path: Path) -> None:
    text = """\
[pid  7] 23:59:59.500000 brk(NULL) = 0x5000 <0.000010>
[pid  7] 23:59:59.900000 mmap(NULL, 8192, PROT_READ, MAP_PRIVATE, -1, 0 <unfinished ...>
[pid  8] 00:00:00.100000 munmap(0x7f0000000000, 4096) = 0 <0.000002>
[pid  7] 00:00:00.200000 <... mmap resumed>) = 0x7f0000000000 <0.300000>
"""
    log, out = _import(tmp_path, text)
    import_strace(log, out)
    calls = list(read_trace(out).syscalls())
    assert [(c.syscall, c.ts_ns, c.dur_ns) for c in calls] == [
        ("brk", 0, 10_000),
        ("mmap", 400_000_000, 300_000_000),  # entered before midnight, in order of entry
        ("munmap", 600_000_000, 2_000),
    ]


def test_exec_argv_and_k_program(tmp_path: Path) -> None:
    text = (
        'execve("/bin/true", ["true", "a\\"b", "c d"], 0x7ffd /* 3 vars */) = 0\n'
        "brk(NULL) = 0x5000\n+++ exited with 0 +++\n"
    )
    log, out = _import(tmp_path, text)
    import_strace(log, out)
    data = read_trace(out)
    assert (data.header.program, data.header.argv) == ("/bin/true", ["true", 'a"b', "c d"])
    import_strace(log, out, program="/usr/bin/other", argv=["other"])
    assert read_trace(out).header.argv == ["other"]


def test_exec_in_a_thread(tmp_path: Path) -> None:
    """execve returns in the leader's pid, on a line without one: the process's new program."""
    out = tmp_path / "exec.jsonl"
    import_strace(DATA / "exec-in-a-thread.log", out)
    data = read_trace(out)
    assert (data.header.program, data.header.argv) == ("/bin/true", ["/bin/true"])
    # An import has no Memory events (nor their lack of a tid).
    assert [(e.KIND, e.pid, e.tid) for e in data.events if not isinstance(e, Memory)] == [
        ("syscall", 9399, 9399),
        ("syscall", 9399, 9400),
        ("exec", 9399, 9399),
        ("syscall", 9399, 9399),
        ("exit", 9399, 9399),
    ]


# -- problems ------------------------------------------------------------------------------


def test_unparsed_lines_are_counted_and_reported(tmp_path: Path) -> None:
    text = (
        "brk(NULL) = 0x5000\nthis is not strace\n"
        "mmap(NULL, 4096, PROT_BOGUS, MAP_PRIVATE, -1, 0) = 0x7f00\n+++ exited with 0 +++\n"
    )
    log, out = _import(tmp_path, text)
    report = import_strace(log, out)
    assert [n for n, _ in report.unparsed] == [2, 3]
    assert any("2 lines not understood" in line for line in report.lines())
    data = read_trace(out)
    assert data.header.options["imported"]["unparsed_lines"] == 2
    assert data.footer is not None and "2 lines not understood" in (data.footer.message or "")
    with pytest.warns(UserWarning, match="2 lines not understood"):
        trace = alloctrace.import_strace(log, tmp_path / "api.jsonl")
    assert trace.import_report is not None and len(trace.import_report.unparsed) == 2
    cli = _cli("import-strace", str(log), "-o", str(tmp_path / "cli.jsonl"))
    assert cli.returncode == 0
    assert f"{log}:2: this is not strace" in cli.stderr
    strict = _cli("import-strace", "--strict", str(log), "-o", str(tmp_path / "cli.jsonl"))
    assert strict.returncode == 1


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty file, not an strace log"),
        (b"\n  \n", "empty file, not an strace log"),
        (b"\x7fELF\x02\x01\x00\x00", "binary data, not an strace log"),
        (b"hello\nworld\n", "not an strace log (no line looks like strace output)"),
        (b"brk(NULL) = 0x5000\nmmap(NULL, 4096, PROT_RE", "line is cut short (the file was"),
        (b'{"kind":"header","format":"alloctrace","version":1}\n', "an alloctrace trace, not"),
    ],
    ids=["empty", "blank", "binary", "prose", "truncated", "a-trace"],
)
def test_bad_logs_raise_one_precise_error(tmp_path: Path, content: bytes, message: str) -> None:
    log = tmp_path / "bad.log"
    log.write_bytes(content)
    with pytest.raises(AlloctraceError, match=f"^{re.escape(str(log))}.*{re.escape(message)}"):
        import_strace(log, tmp_path / "t.jsonl")
    assert not (tmp_path / "t.jsonl").exists()
    with pytest.raises(alloctrace.AlloctraceError):
        alloctrace.import_strace(log, tmp_path / "t.jsonl")
    cli = _cli("import-strace", str(log), "-o", str(tmp_path / "t.jsonl"))
    assert cli.returncode != 0
    assert cli.stderr.count("\n") == 1 and cli.stderr.startswith("alloctrace: ")
    assert message in cli.stderr


def test_missing_log(tmp_path: Path) -> None:
    with pytest.raises(AlloctraceError, match=r"cannot read .*nothing\.log"):
        import_strace(tmp_path / "nothing.log", tmp_path / "t.jsonl")


def test_modules_precede_the_stacks_that_use_them(tmp_path: Path) -> None:
    log = tmp_path / "k.log"
    log.write_text(strace(tmp_path, [fixture("seed")], "-f", "-k", "-y", "-e", MEMORY_TRACE))
    out = tmp_path / "k.jsonl"
    import_strace(log, out)
    seen_modules: set[int] = set()
    seen_stacks: set[int] = set()
    data = read_trace(out)
    assert data.modules and data.stacks
    for line in out.read_text().splitlines():
        if '"kind":"module"' in line:
            seen_modules.add(int(line.split('"id":')[1].split(",")[0]))
        elif '"kind":"stack"' in line:
            sid = int(line.split('"id":')[1].split(",")[0])
            assert {f.module for f in data.stacks[sid].frames} - {None} <= seen_modules
            seen_stacks.add(sid)
        elif '"kind":"syscall"' in line and '"stack":' in line:
            assert int(line.rsplit('"stack":', 1)[1].rstrip("}")) in seen_stacks
    assert all(isinstance(m, Module) for m in data.modules.values())
    assert all(isinstance(e, Syscall) for e in data.syscalls())


def test_k_log_phases_come_from_the_stacks(tmp_path: Path) -> None:
    """An strace log has no Phase records: the roles that depend on the phase take it from the
    stacks. jemalloc probes with one page at start-up only; with dirty_decay_ms:0 its
    one-page madvise calls in main are purges (as in a trace the tracer wrote)."""
    env = {**os.environ, **preload_env("jemalloc"), "MALLOC_CONF": "dirty_decay_ms:0"}
    text = strace(tmp_path, [fixture("threads")], "-f", "-k", "-y", "-e", MEMORY_TRACE, env=env)
    log = tmp_path / "k.log"
    log.write_text(text)
    imported = alloctrace.import_strace(log, tmp_path / "k.jsonl")
    own = [c for c in imported.classified if c.owner == "jemalloc"]
    assert {c.phase for c in own if c.role == "page probe"} == {"startup"}
    one_page = [c for c in own if c.event.syscall == "madvise" and c.event.length == 4096]
    assert {c.role for c in one_page if c.phase == "main"} == {"purge"}
