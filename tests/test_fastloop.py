"""The C loop (tracer/_fastloop.c) writes the same records as the Python loop, and true ones.

syscallmix makes one call of every shape the C code formats (anonymous mmap, failing mmap,
mprotect, madvise, moving and MREMAP_FIXED mremap, brk, munmap, failing calls) and some it hands
back to Python (a file mmap, prctl), each reported with its raw arguments and return value.
Three ways of recording it must all agree with those reports, field by field:
``--no-stacks`` (the C code writes the simple calls), stacks on (Python walks each new call
site; the C code writes the calls a remembered walk answers) and without the seccomp filter (the
Python loop alone). With stacks on, the C code's stacks must be the ones Python's walks give.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import pytest

import alloctrace
from tests.helpers import fixture, parse_reports
from tracer import fastloop
from tracer.errors import AlloctraceError
from tracer.recording import record
from tracer.records import Syscall
from tracer.session import Session, TraceOptions
from tracer.stacks import StackTable

_MODES = {
    "c-loop": TraceOptions(stacks=False),
    "c-loop, stacks": TraceOptions(stacks=True),
    "python loop, no filter": TraceOptions(stacks=False, seccomp=False),
}
_MASK = (1 << 64) - 1


def _trace(tmp_path: Path, options: TraceOptions) -> tuple[list[Syscall], list[str], str]:
    out = tmp_path / "t.jsonl"
    log = tmp_path / "stderr"
    notes: list[str] = []
    with log.open("w") as stderr_file:
        saved = os.dup(2)
        os.dup2(stderr_file.fileno(), 2)  # the fixture reports on fd 2
        try:
            outcome = record([fixture("syscallmix")], out, options, notify=notes.append)
        finally:
            os.dup2(saved, 2)
            os.close(saved)
    assert outcome.exit_code == 0, notes
    trace = alloctrace.load(out)
    assert trace.complete
    lines = [line for line in out.read_text().splitlines() if '"kind":"syscall"' in line]
    return list(trace.syscalls()), lines, log.read_text()


def _expected(report: dict[str, str]) -> dict[str, object]:
    """The fields a trace record must have for one reported call."""
    a = [int(report[f"a{i}"]) for i in range(5)]
    ret = int(report["ret"])
    call = report["call"]
    fields: dict[str, object] = {"syscall": call}
    if ret < 0 and call != "brk":
        fields["errno"], fields["result"] = -ret, None
    else:
        fields["result"], fields["errno"] = ret & _MASK, None
    if call == "mmap":
        fd = a[4] - (1 << 64) if a[4] >= 1 << 63 else a[4]
        fields.update(addr=a[0], length=a[1], prot=a[2], flags=a[3], fd=fd, offset=0)
    elif call in ("munmap", "mprotect", "madvise"):
        fields.update(addr=a[0], length=a[1])
        if call == "mprotect":
            fields["prot"] = a[2]
        if call == "madvise":
            fields["advice"] = a[2]
    elif call == "mremap":
        fields.update(addr=a[0], length=a[1], new_length=a[2], flags=a[3])
        if a[3] & 2:  # MREMAP_FIXED
            fields["new_addr"] = a[4]
    elif call == "brk":
        fields["addr"] = a[0]
    elif call == "prctl":
        fields.update(addr=a[2], length=a[3])
    return fields


@pytest.mark.parametrize("mode", list(_MODES))
def test_every_call_shape_is_recorded_exactly(tmp_path: Path, mode: str) -> None:
    syscalls, _lines, stderr = _trace(tmp_path, _MODES[mode])
    reports = parse_reports(stderr, "syscallmix")
    assert len(reports) == 15
    pid = max(e.pid for e in syscalls)
    # The fixture's calls are its last 15 memory syscalls (the loader's and libc's come first).
    mine = [e for e in syscalls if e.pid == pid][-15:]
    for report, event in zip(reports, mine, strict=True):
        expected = _expected(report)
        got = {key: getattr(event, key) for key in expected}
        assert got == expected, report
    file_map = mine[2]
    assert file_map.path == str(Path(fixture("syscallmix")).resolve())


def test_the_c_loop_writes_lines_the_python_loop_would(tmp_path: Path) -> None:
    """Same keys in the same order for every syscall shape, whichever loop wrote the line."""
    shapes: dict[str, dict[tuple[str, bool], list[str]]] = {}
    for mode, options in _MODES.items():
        (tmp_path / mode).mkdir()
        _syscalls, lines, _stderr = _trace(tmp_path / mode, options)
        found = shapes.setdefault(mode, {})
        for line in lines:
            obj = json.loads(line)
            obj.pop("stack", None)
            found.setdefault((obj["syscall"], "errno" in obj), list(obj))
    c_loop, python = shapes["c-loop"], shapes["python loop, no filter"]
    assert c_loop == python
    assert len(c_loop) >= 8  # mmap, munmap, mprotect, madvise, mremap, brk, prctl + failures


def test_an_unbuilt_c_loop_is_one_clear_error_and_leaves_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fastloop, "_library_path", lambda: fastloop.locate_library(tmp_path))
    fastloop._library.cache_clear()
    try:
        with pytest.raises(AlloctraceError, match="is not built"):
            record([fixture("seed")], tmp_path / "t.jsonl", TraceOptions(stacks=False))
    finally:
        fastloop._library.cache_clear()
    assert list(tmp_path.iterdir()) == []


def _stacks_by_call(path: Path) -> Counter[tuple[object, ...]]:
    """Each syscall's shape with its stack as (object, address in the file, how) frames."""
    trace = alloctrace.load(path)
    assert trace.complete
    found: Counter[tuple[object, ...]] = Counter()
    for event in trace.syscalls():
        frames = []
        for frame in trace.raw_frames(event):
            module = trace.module(frame)
            where = (None, frame.pc) if module is None else (module.path, frame.pc - module.bias)
            frames.append((*where, frame.how))
        found[event.syscall, event.length, event.result is None, tuple(frames)] += 1
    return found


# Each case, and whether the C loop must write some of its calls (a call site that repeats in
# one module map). remapmodules maps and unmaps objects from repeated call sites, and unmaps a
# module from a call site whose walk was remembered: that munmap must still reach Python.
_CASES = {
    "mmapbench": (["mmapbench", "300"], True),
    "threadbench": (["threadbench", "4", "100"], True),
    # 40 threads' stacks: 80 remembered walks in one process, more than the C table first holds
    "threadbench-40": (["threadbench", "40", "20"], True),
    "forkexec": (["forkexec"], False),
    "remapmodules": (["remapmodules"], True),
}


@pytest.mark.parametrize("case", list(_CASES))
def test_remembered_walks_give_the_stacks_python_gives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    words, c_writes = _CASES[case]
    argv = [fixture(words[0]), *words[1:]]
    seen_by_python: list[tuple[int, int]] = []  # (syscall number, length) of each exit stop
    record_exit = Session._record_exit

    def counted(session: Session, thread: object) -> None:
        seen_by_python.append((session._regs.orig_rax, session._regs.rsi))
        record_exit(session, thread)  # type: ignore[arg-type]

    monkeypatch.setattr(Session, "_record_exit", counted)
    with_c = tmp_path / "c.jsonl"
    assert record(argv, with_c, TraceOptions(stacks=True)).exit_code == 0
    python_exits = len(seen_by_python)
    monkeypatch.setattr(StackTable, "share", lambda self, fast: None)
    python_only = tmp_path / "python.jsonl"
    assert record(argv, python_only, TraceOptions(stacks=True)).exit_code == 0
    stacks = _stacks_by_call(with_c)
    assert stacks == _stacks_by_call(python_only)
    # Without sharing, every exit stop came to Python.
    assert len(seen_by_python) - python_exits == sum(stacks.values())
    assert (python_exits < sum(stacks.values())) == c_writes
    if case == "remapmodules":
        munmap, size = 11, Path(fixture("libplugin.so")).stat().st_size
        assert (munmap, size) in seen_by_python[:python_exits]


def test_fast_exec_reports_a_failed_exec_on_the_pipe(tmp_path: Path) -> None:
    """The C child reports what Python's did: ``E<errno>`` when execve fails (here EACCES, a
    directory), after installing the filter; nothing but that line, and exit status 127."""
    from tracer import seccomp

    bpf = seccomp.Filter(seccomp.build_filter([9]))  # mmap: unseized, a traced call fails
    run = fastloop.FilteredExec(str(tmp_path), [str(tmp_path)], {}, bpf)
    go_r, go_w = os.pipe()
    err_r, err_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(go_w)
            os.close(err_r)
            run.run(go_r, err_w)
        finally:
            os._exit(99)  # reached only if the C function returned
    os.close(go_r)
    os.close(err_w)
    os.write(go_w, b"g")
    os.close(go_w)
    with os.fdopen(err_r, "rb") as reader:
        report = reader.read()
    _, status = os.waitpid(pid, 0)
    assert report == b"E13\n"
    assert os.waitstatus_to_exitcode(status) == 127
