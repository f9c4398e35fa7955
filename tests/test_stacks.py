"""Recorded call stacks against ``strace -f -k`` on every fixture and allocator.

For each event, the object of the first frame outside the syscall wrapper (frame 1: frame 0 is
the wrapper's own pc) must be the one strace's libunwind names, for at least 99% of the events
both tools saw; and every event that strace shows under ``main`` must reach ``main`` in ours.
Events are matched per thread, threads in order of first appearance, by syscall and length.
alloctrace runs in this process (warm ELF caches) while strace runs beside it.
"""

from __future__ import annotations

import difflib
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

import alloctrace
from alloctrace.api import Trace
from tests.helpers import FIXTURES, MEMORY_TRACE, PRELOADS, fixture, preload_env
from tracer.recording import record
from tracer.records import Syscall
from tracer.session import TraceOptions
from tracer.strace_log import StraceCall, parse_strace

# Small arguments keep strace -k (about 1.5 ms per call) quick.
CASES: dict[str, list[str]] = {
    "seed": [],
    "threads": ["3"],
    "big": [],
    "usermmap": [],
    "usermmap-threads": ["--threads", "2"],
    "forkexec": [],
    "dlopen": [],
    "crash": [],
    "exitcode": ["3"],
    "mmapbench": ["100"],
    "getpidbench": ["1000", "50"],
    "threadbench": ["3", "50"],
    "allocstress": ["2", "300"],
}
ALLOCATORS: list[str | None] = [None, "jemalloc", "tcmalloc", "mimalloc"]
PARAMS = [(name, alloc) for name in CASES for alloc in ALLOCATORS] + [
    ("seed-jemalloc", None),
    ("static", None),
]
if (FIXTURES / "seed-musl").exists() or shutil.which("musl-gcc"):
    PARAMS.append(("seed-musl", None))

pytestmark = pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed")


def _argv(name: str) -> list[str]:
    binary = "usermmap" if name == "usermmap-threads" else name
    return [fixture(binary), *CASES.get(name, [])]


def _record_and_strace(
    tmp_path: Path, argv: Sequence[str], env: dict[str, str], options: TraceOptions
) -> tuple[Trace, list[StraceCall]]:
    log = tmp_path / "strace.log"
    strace = subprocess.Popen(
        ["strace", "-f", "-k", "-e", MEMORY_TRACE, "-o", str(log), "--", *argv],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    out = tmp_path / "trace.jsonl"
    try:
        record(list(argv), out, options, env=env)
    finally:
        strace.wait(timeout=120)
    return alloctrace.load(out), parse_strace(log.read_text()).calls


def _threads_in_order(trace: Trace) -> list[list[Syscall]]:
    out: dict[int, list[Syscall]] = {}
    for event in trace.syscalls():
        out.setdefault(event.tid, []).append(event)
    return list(out.values())


def _strace_threads_in_order(calls: list[StraceCall]) -> list[list[StraceCall]]:
    out: dict[int | None, list[StraceCall]] = {}
    for call in calls:
        out.setdefault(call.pid, []).append(call)
    return list(out.values())


def _object(path: str | None) -> str:
    return os.path.basename(os.path.realpath(path)) if path else "?"


def _ours(trace: Trace, event: Syscall) -> tuple[str, bool]:
    """(object of frame 1, whether the stack reaches main)."""
    frames = trace.frames(event)
    first = frames[1] if len(frames) > 1 else (frames[0] if frames else None)
    reaches_main = any(f.function == "main" for f in frames)
    return _object(first.object if first else None), reaches_main


def _theirs(call: StraceCall) -> tuple[str | None, bool]:
    """(object of frame 1 or None when strace could not unwind it, whether it shows main)."""
    frames = call.frames
    first = frames[1] if len(frames) > 1 else (frames[0] if frames else None)
    if first is None or first.path is None:
        return None, False
    return _object(first.path), any(f.function == "main" for f in frames)


def _keys(calls: Sequence[Syscall | StraceCall]) -> list[tuple[str, int]]:
    """What two runs share: the syscall and its length; for brk, how far it moves the break
    (addresses differ under ASLR, and allocators that align the break make a varying number
    of brk calls at start-up, which must not pair with main's)."""
    out: list[tuple[str, int]] = []
    current = 0
    for call in calls:
        if call.syscall == "brk":
            delta = 0 if not call.addr else call.addr - current
            current = call.result or current
            out.append(("brk", delta))
        else:
            out.append((call.syscall, call.length or 0))
    return out


def _matcher(mine: list[Syscall], other: list[StraceCall]) -> difflib.SequenceMatcher[object]:
    return difflib.SequenceMatcher(None, _keys(mine), _keys(other), autojunk=False)


def _pair_threads(
    ours: list[list[Syscall]], theirs: list[list[StraceCall]]
) -> list[tuple[list[Syscall], list[StraceCall]]]:
    """Pair each of our threads with the strace thread whose calls match it best (greedy)."""
    scores = sorted(
        (
            (-sum(b.size for b in _matcher(m, t).get_matching_blocks()), i, j)
            for i, m in enumerate(ours)
            for j, t in enumerate(theirs)
        ),
    )
    used_i: set[int] = set()
    used_j: set[int] = set()
    pairs: list[tuple[list[Syscall], list[StraceCall]]] = []
    for _score, i, j in scores:
        if i not in used_i and j not in used_j:
            used_i.add(i)
            used_j.add(j)
            pairs.append((ours[i], theirs[j]))
    return pairs


def compare(trace: Trace, calls: list[StraceCall]) -> tuple[int, int, int, list[str]]:
    """(events matched, agreeing on frame 1's object, strace events not matched, problems)."""
    ours = _threads_in_order(trace)
    theirs = _strace_threads_in_order(calls)
    matched = agree = 0
    problems: list[str] = []
    unmatched = sum(len(t) for t in theirs)
    for mine, other in _pair_threads(ours, theirs):
        matcher = _matcher(mine, other)
        for block in matcher.get_matching_blocks():
            for k in range(block.size):
                event, call = mine[block.a + k], other[block.b + k]
                unmatched -= 1
                their_object, their_main = _theirs(call)
                if their_object is None:
                    continue  # strace itself could not unwind this one
                matched += 1
                my_object, my_main = _ours(trace, event)
                if my_object == their_object:
                    agree += 1
                else:
                    problems.append(
                        f"{event.syscall} seq={event.seq}: {my_object} != {their_object}"
                    )
                if their_main and not my_main:
                    problems.append(f"{event.syscall} seq={event.seq}: does not reach main")
    return matched, agree, unmatched, problems


@pytest.mark.parametrize(
    ("name", "allocator"), PARAMS, ids=[f"{n}-{a or 'glibc'}" for n, a in PARAMS]
)
def test_frames_agree_with_strace(tmp_path: Path, name: str, allocator: str | None) -> None:
    if name == "seed-musl" and not (FIXTURES / "seed-musl").exists():
        pytest.skip("musl-gcc is not installed")
    trace, calls = _record_and_strace(tmp_path, _argv(name), preload_env(allocator), TraceOptions())
    matched, agree, unmatched, problems = compare(trace, calls)
    total = sum(1 for _ in trace.syscalls())
    # Threads race (arenas, cross-thread frees), so runs differ; most events still pair up.
    assert matched >= 0.5 * total, f"only {matched} of {total} events matched strace's"
    main_misses = [p for p in problems if "main" in p]
    assert not main_misses, main_misses[:10]
    assert agree >= 0.99 * matched, (agree, matched, problems[:10])
    del unmatched


def test_every_event_has_a_stack_and_modules_come_first(tmp_path: Path) -> None:
    out = tmp_path / "t.jsonl"
    record([fixture("dlopen")], out, TraceOptions(), env=preload_env(None))
    lines = out.read_text().splitlines()
    seen_modules: set[int] = set()
    seen_stacks: set[int] = set()
    import json

    for line in lines:
        obj = json.loads(line)
        if obj["kind"] == "module":
            seen_modules.add(obj["id"])
        elif obj["kind"] == "stack":
            for _pc, module, _how in obj["frames"]:
                assert module is None or module in seen_modules
            seen_stacks.add(obj["id"])
        elif obj["kind"] == "syscall":
            assert obj["stack"] in seen_stacks
    trace = alloctrace.load(out)
    paths = {m.path for m in trace.data.modules.values()}
    assert {fixture("dlopen"), "/usr/lib/x86_64-linux-gnu/libc.so.6"} <= paths
    for module in trace.data.modules.values():
        if module.path.startswith("/usr/lib/x86_64-linux-gnu/lib"):
            assert module.build_id, module


def test_repeated_stacks_are_interned(tmp_path: Path) -> None:
    out = tmp_path / "t.jsonl"
    record([fixture("mmapbench"), "2000"], out, TraceOptions(), env=preload_env(None))
    trace = alloctrace.load(out)
    events = list(trace.syscalls())
    assert len(events) > 4000
    assert len(trace.data.stacks) < 60  # two stacks for the loop, the rest start-up


def test_no_stacks_and_depth(tmp_path: Path) -> None:
    out = tmp_path / "none.jsonl"
    record([fixture("seed")], out, TraceOptions(stacks=False), env=preload_env(None))
    trace = alloctrace.load(out)
    assert all(e.stack is None for e in trace.syscalls())
    assert not trace.data.stacks and not trace.data.modules
    out = tmp_path / "depth.jsonl"
    record([fixture("seed")], out, TraceOptions(stack_depth=3), env=preload_env(None))
    trace = alloctrace.load(out)
    assert max(len(s.frames) for s in trace.data.stacks.values()) == 3


def test_static_unwinds(tmp_path: Path) -> None:
    out = tmp_path / "static.jsonl"
    record([fixture("static")], out, TraceOptions(), env=preload_env(None))
    trace = alloctrace.load(out)
    assert {m.path for m in trace.data.modules.values()} == {fixture("static")}
    events = list(trace.syscalls())
    under_main = [e for e in events if any(f.function == "main" for f in trace.frames(e))]
    # malloc's brk calls, the large malloc's mmap, the program's own mmap/munmap, the frees.
    assert len(under_main) >= 4
    for event in events:
        frames = trace.frames(event)
        assert frames and frames[-1].function in ("_start", "main"), [str(f) for f in frames]
        assert all(f.how in ("regs", "cfi") for f in frames)


def test_preloaded_allocator_frames_are_named(tmp_path: Path) -> None:
    out = tmp_path / "je.jsonl"
    record([fixture("seed")], out, TraceOptions(), env=preload_env("jemalloc"))
    trace = alloctrace.load(out)
    objects = {f.object_name for e in trace.syscalls() for f in trace.frames(e)[1:2] if f.object}
    assert PRELOADS["jemalloc"].name in objects
