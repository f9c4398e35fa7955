"""The recording tracer against the fixtures' own ground truth: counts, tids, pids, endings."""

from __future__ import annotations

import signal
from collections import Counter
from pathlib import Path

import pytest

from tests.helpers import fixture, record, syscalls_of
from tracer.records import Exec, Exit, Footer, Memory, Phase, Spawn


def _reported_calls(reports: list[dict[str, str]]) -> Counter[tuple[int, str, int, int, int]]:
    calls: Counter[tuple[int, str, int, int, int]] = Counter()
    for r in reports:
        if "call" not in r:
            continue
        calls[
            int(r["tid"]), r["call"], int(r["addr"], 16), int(r["length"]), int(r["result"], 16)
        ] += 1
    return calls


@pytest.mark.parametrize("run", range(20))
def test_usermmap_threads_counts_and_tids_exact(tmp_path: Path, run: int) -> None:
    """Every call the program reports is traced once, on the thread that made it."""
    del run
    result = record(tmp_path, [fixture("usermmap"), "--threads", "16"], "--no-stacks")
    assert result.returncode == 0, result.stderr
    reports = result.reports("usermmap")
    totals = {int(r["tid"]): int(r["total"]) for r in reports if "total" in r}
    assert len(totals) == 16
    expected = _reported_calls(reports)
    assert sum(expected.values()) == sum(totals.values())
    traced: Counter[tuple[int, str, int, int, int]] = Counter()
    for e in syscalls_of(result.trace):
        if e.tid not in totals or e.syscall not in {
            "mmap",
            "munmap",
            "mprotect",
            "mremap",
            "madvise",
        }:
            continue
        addr = e.addr if e.syscall != "mmap" else 0
        key = (e.tid, e.syscall, addr or 0, e.length or 0, e.result or 0)
        if key in expected:
            traced[key] += 1
    assert traced == expected
    # Each worker's own calls are exactly its total (the rest of its events are glibc's).
    per_tid = Counter(k[0] for k in traced.elements())
    assert per_tid == Counter(totals)


def test_forkexec_child_has_its_pid_and_exec(tmp_path: Path) -> None:
    result = record(tmp_path, [fixture("forkexec")], "--no-stacks")
    assert result.returncode == 0, result.stderr
    assert result.trace is not None
    (report,) = result.reports("forkexec")
    parent, child = int(report["parent"]), int(report["child"])
    events = result.trace.records
    spawns = [e for e in events if isinstance(e, Spawn)]
    assert [(s.parent_pid, s.pid, s.how) for s in spawns] == [(parent, child, "fork")]
    execs = [e for e in events if isinstance(e, Exec)]
    assert [e.pid for e in execs] == [parent, child]
    assert execs[1].path.endswith("/exitcode")
    assert execs[1].argv[1:] == ["0"]
    child_calls = [e for e in syscalls_of(result.trace) if e.pid == child]
    assert child_calls, "the child's own memory syscalls were not traced"
    assert all(e.tid == child for e in child_calls)
    # The child's ld.so maps libc for the new program: its events follow its exec.
    exec_seq = execs[1].seq
    assert all(e.seq > exec_seq for e in child_calls if e.path and "libc.so" in e.path)
    exits = {e.pid: e.status for e in events if isinstance(e, Exit)}
    assert exits == {parent: 0, child: 0}


def test_crash_trace_complete_with_sigsegv(tmp_path: Path) -> None:
    result = record(tmp_path, [fixture("crash")], "--no-stacks")
    assert result.returncode == 128 + signal.SIGSEGV
    assert result.trace is not None and result.trace.complete
    footer = result.trace.footer
    assert isinstance(footer, Footer)
    assert (footer.outcome, footer.signal) == ("killed", signal.SIGSEGV)
    assert any(isinstance(e, Memory) for e in result.trace.records)
    assert any(e.syscall == "brk" for e in syscalls_of(result.trace))


@pytest.mark.parametrize("code", [0, 7, 255])
def test_exit_status_is_passed_on(tmp_path: Path, code: int) -> None:
    result = record(tmp_path, [fixture("exitcode"), str(code)], "--no-stacks")
    assert result.returncode == code
    assert result.trace is not None and result.trace.footer is not None
    assert (result.trace.footer.outcome, result.trace.footer.status) == ("exited", code)


def test_static_program_traced(tmp_path: Path) -> None:
    result = record(tmp_path, [fixture("static")], "--no-stacks")
    assert result.returncode == 0, result.stderr
    reports = result.reports("static")
    events = list(syscalls_of(result.trace))
    big = next(int(r["ptr"], 16) for r in reports if r["op"] == "malloc" and r["size"] == "262144")
    own = next(int(r["ptr"], 16) for r in reports if r["op"] == "mmap")
    # The allocator's mmap (the chunk header sits 16 bytes before the pointer) and its own.
    assert any(e.syscall == "mmap" and e.result == big - 16 for e in events)
    assert any(e.syscall == "mmap" and e.result == own and e.length == 4096 for e in events)
    assert any(e.syscall == "munmap" and e.addr == own for e in events)
    assert not any(e.path for e in events), "a static program maps no shared object"


def test_big_realloc_is_an_mremap(tmp_path: Path) -> None:
    result = record(tmp_path, [fixture("big")], "--no-stacks")
    assert result.returncode == 0, result.stderr
    reports = {r["op"] + r.get("size", ""): r for r in result.reports("big")}
    first = int(reports["malloc262144"]["ptr"], 16) - 16
    moved = int(reports["realloc1048576"]["ptr"], 16) - 16
    remaps = [e for e in syscalls_of(result.trace) if e.syscall == "mremap"]
    assert [(e.addr, e.result) for e in remaps] == [(first, moved)]
    assert remaps[0].new_length is not None and remaps[0].new_length >= 1 << 20


def test_missing_program_is_one_line_error(tmp_path: Path) -> None:
    result = record(tmp_path, ["/nonexistent/program"])
    assert result.returncode != 0
    assert result.stderr.count("\n") == 1 and "alloctrace:" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.trace is None
    assert not list(tmp_path.iterdir()), "no partial trace is left behind"


def test_threads_are_spawned_and_exit(tmp_path: Path) -> None:
    result = record(tmp_path, [fixture("threads"), "4"], "--no-stacks")
    assert result.returncode == 0, result.stderr
    assert result.trace is not None
    tids = {int(r["tid"]) for r in result.reports("threads") if "tid" in r}
    spawned = {e.tid for e in result.trace.records if isinstance(e, Spawn) and e.how == "thread"}
    assert spawned == tids
    exited = {e.tid for e in result.trace.records if isinstance(e, Exit)}
    assert tids <= exited
    threads_with_calls = {e.tid for e in syscalls_of(result.trace)}
    assert tids <= threads_with_calls, "every thread's arena calls are recorded on its tid"


@pytest.mark.parametrize(
    "argv", [[fixture("seed")], [fixture("static")], ["/usr/bin/python3", "-c", "pass"]]
)
def test_phase_breakpoints_mark_main_and_exit(tmp_path: Path, argv: list[str]) -> None:
    """main (by symbol, or via __libc_start_main for stripped programs) and exit are marked."""
    result = record(tmp_path, argv, "--no-stacks")
    assert result.returncode == 0, result.stderr
    assert result.trace is not None
    phases = [e for e in result.trace.records if isinstance(e, Phase)]
    assert [p.phase for p in phases] == ["main", "exit"]
    assert all(p.how == "breakpoint" for p in phases)
    seqs = [e.seq for e in result.trace.records]
    assert seqs == sorted(seqs)


def test_seed_heap_growth_happens_in_main(tmp_path: Path) -> None:
    result = record(tmp_path, [fixture("seed")], "--no-stacks")
    assert result.trace is not None
    main = next(e.seq for e in result.trace.records if isinstance(e, Phase) and e.phase == "main")
    brks = [e for e in syscalls_of(result.trace) if e.syscall == "brk"]
    assert [e.seq > main for e in brks] == [False, True, True], "ld.so's brk, then malloc's two"
