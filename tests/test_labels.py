"""Issue 4's acceptance: alloctrace's categories against an independent labelling.

Each case of the fixture matrix (seed, threads, big, usermmap, dlopen, forkexec under glibc
and jemalloc/tcmalloc/mimalloc preloaded; seed with jemalloc linked, dynamically and from
libjemalloc_pic.a; threads with glibc.malloc.hugetlb=2; big with MALLOC_CHECK_=3
(libc_malloc_debug.so preloaded); static; ownnames), ``/usr/bin/python3 -c "import json"``
and a Python program that frees pymalloc arenas (under /usr/bin/python3 and under the
interpreter running the tests), runs twice: under ``strace -f -k -y``,
labelled by tests/labeller.py (its own symbol lookup with nm and glibc's debug files, its own
rules), and under ``alloctrace record``, classified by analyzers.analysis.analyze. The two
runs' events are paired per thread (threads in creation order, since tids differ between
runs), in order, by syscall and length, brk by how far it moves its process's break
(tests/test_stacks.py's approach). The categories must agree for >= 99% of the paired events,
overall and per program, and no event of alloctrace's may be ``other``.
"""

from __future__ import annotations

import difflib
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import alloctrace
from analyzers.analysis import analyze
from analyzers.model import Classified
from tests.helpers import MEMORY_TRACE, PRELOADS, fixture, preload_env
from tests.labeller import Label, debug_file, label_calls, label_frames, name_frames
from tracer.recording import record
from tracer.records import Exec, Spawn, Syscall
from tracer.session import TraceOptions
from tracer.strace_log import StraceCall, parse_strace

PYTHON = "/usr/bin/python3"  # the system interpreter, not a pyenv shim found on PATH
# Dicts freed by PyObject_GC_Del empty whole arenas: their munmaps come from inlined free code.
FREES_ARENAS = "d = [{i: str(i)} for i in range(200000)]; del d"
PROGRAMS: dict[str, list[str]] = {
    "seed": [fixture("seed")],
    "threads": [fixture("threads")],
    "big": [fixture("big")],
    "usermmap": [fixture("usermmap")],
    "dlopen": [fixture("dlopen")],
    "forkexec": [fixture("forkexec")],
    "static": [fixture("static")],  # LD_PRELOAD means nothing to it
    "ownnames": [fixture("ownnames")],  # its own malloc: LD_PRELOAD would change nothing
    "python3": [PYTHON, "-c", "import json"],
    "python3-arenas": [PYTHON, "-c", FREES_ARENAS],
    # the interpreter running the tests: pyenv's here, with symbols, built --enable-shared
    "python3-tests": [sys.executable, "-c", FREES_ARENAS],
}
VARIANTS = ["glibc", "jemalloc", "tcmalloc", "mimalloc"]  # the last three preloaded
GLIBC_ONLY = ("static", "ownnames", "python3", "python3-arenas", "python3-tests")
MALLOC_DEBUG = "/usr/lib/x86_64-linux-gnu/libc_malloc_debug.so.0"  # glibc's, for MALLOC_CHECK_
ENVIRONMENTS = {
    "hugetlb": {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=2"},  # brk fails: the heap grows by mmap
    "malloc-debug": {"LD_PRELOAD": MALLOC_DEBUG, "MALLOC_CHECK_": "3"},  # malloc.c's own copy
}
CASES = [
    (program, variant)
    for program in PROGRAMS
    for variant in (["glibc"] if program in GLIBC_ONLY else VARIANTS)
] + [
    ("seed", "jemalloc-linked"),  # fixtures/build/seed-jemalloc: g++ ... -ljemalloc
    ("seed", "jemalloc-static"),  # fixtures/build/seed-jemalloc-static: libjemalloc_pic.a
    ("threads", "hugetlb"),
    ("big", "malloc-debug"),
]
AGREEMENT = 0.99
COVERAGE = 0.9  # paired / alloctrace's events: runs differ a little (threads race, ASLR)
# A clone or fork, whole or in halves: "<... clone3 resumed> => {...}, 88) = 1234".
_CLONE = re.compile(
    r"^(?P<caller>\d+)\s+(?P<resumed><\.\.\. )?(?:clone3?|v?fork)\b.*?"
    r"(?:\) = (?P<child>\d+)|<unfinished \.\.\.>)$",
    re.MULTILINE,
)
Key = tuple[str, int]
Threads = list[list[StraceCall]]
Processes = dict[int | None, int | None]

pytestmark = pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed")


@dataclass
class Case:
    """One (program, allocator) case: both runs' events and how the two labellings compare."""

    program: str
    variant: str
    ours: list[Classified] = field(default_factory=list)
    straced: int = 0
    paired: int = 0
    labelled: int = 0  # paired events with a reference label (strace could unwind them)
    agree: int = 0
    disagreements: list[str] = field(default_factory=list)
    labels: list[tuple[StraceCall, Label | None]] = field(default_factory=list)

    @property
    def id(self) -> str:
        return f"{self.program}-{self.variant}"


def _strace(tmp_path: Path, argv: Sequence[str], env: dict[str, str]) -> str:
    log = tmp_path / "strace.log"
    calls = f"{MEMORY_TRACE},clone,clone3,fork,vfork"
    subprocess.run(
        ["strace", "-f", "-k", "-y", "-e", calls, "-o", str(log), "--", *argv],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        timeout=120,
        check=False,
    )
    return log.read_text()


def _strace_threads(text: str, calls: list[StraceCall]) -> tuple[Threads, Processes]:
    """strace's calls per thread, threads in creation order (the first, then each clone's
    child), and each thread's process (a clone with CLONE_THREAD makes a thread)."""
    first = calls[0].pid if calls else None
    order: list[int | None] = [first]
    process: Processes = {first: first}
    makes_thread: dict[int, bool] = {}  # caller -> whether its clone shares the process
    for match in _CLONE.finditer(text):
        caller = int(match["caller"])
        if not match["resumed"]:
            makes_thread[caller] = "CLONE_THREAD" in match[0]
        if match["child"] is not None:
            child = int(match["child"])
            order.append(child)
            process[child] = process.get(caller, caller) if makes_thread.get(caller) else child
    by_tid: dict[int | None, list[StraceCall]] = {tid: [] for tid in order}
    for call in calls:
        by_tid.setdefault(call.pid, []).append(call)
    return list(by_tid.values()), {tid: process.get(tid, tid) for tid in by_tid}


def _our_threads(trace: alloctrace.Trace, classified: list[Classified]) -> list[list[Classified]]:
    """alloctrace's classified calls per thread, threads in creation order."""
    by_tid: dict[int, list[Classified]] = {}
    for item in trace.records:
        if isinstance(item, Exec | Syscall | Spawn) and not by_tid:
            by_tid[item.parent_tid if isinstance(item, Spawn) else item.tid] = []
        if isinstance(item, Spawn):
            by_tid.setdefault(item.tid, [])
    for event in classified:
        by_tid.setdefault(event.event.tid, []).append(event)
    return list(by_tid.values())


def _keys(calls: Sequence[Syscall | StraceCall], process: Processes) -> dict[object, Key]:
    """What two runs share: the syscall and its length; for brk, how far it moves its
    process's break (addresses differ under ASLR). ``calls`` in the order they were made."""
    out: dict[object, Key] = {}
    current: dict[int | None, int] = {}
    for call in calls:
        if call.syscall == "brk":
            pid = process.get(call.pid, call.pid)
            out[call] = ("brk", call.addr - current.get(pid, 0) if call.addr else 0)
            current[pid] = call.result or current.get(pid, 0)
        else:
            out[call] = (call.syscall, call.length or 0)
    return out


def _stack(call: StraceCall) -> str:
    return " < ".join(str(f) for f in name_frames(call.frames)[:6]) or "(no frames)"


def _compare(
    case: Case,
    ours: list[list[Classified]],
    theirs: Threads,
    keys: dict[object, Key],
    labels: dict[StraceCall, Label | None],
) -> None:
    for mine, other in zip(ours, theirs, strict=False):
        matcher = difflib.SequenceMatcher(
            None, [keys[c.event] for c in mine], [keys[c] for c in other], autojunk=False
        )
        for block in matcher.get_matching_blocks():
            for k in range(block.size):
                classified, call = mine[block.a + k], other[block.b + k]
                reference = labels[call]
                case.paired += 1
                case.labels.append((call, reference))
                if reference is None:
                    continue
                case.labelled += 1
                if classified.category == reference.category:
                    case.agree += 1
                else:
                    case.disagreements.append(
                        f"{case.id} {call.syscall} {call.length}: alloctrace "
                        f"{classified.category} ({classified.reason}) != labeller "
                        f"{reference.category} ({reference.why}) [{_stack(call)}]"
                    )


def _run_case(tmp_path: Path, program: str, variant: str) -> Case:
    linked = {"jemalloc-linked": "seed-jemalloc", "jemalloc-static": "seed-jemalloc-static"}
    argv = [fixture(linked[variant])] if variant in linked else PROGRAMS[program]
    env = preload_env(variant if variant in PRELOADS else None)
    env.update(ENVIRONMENTS.get(variant, {}))
    return compare_runs(tmp_path, Case(program, variant), argv, env)


def compare_runs(tmp_path: Path, case: Case, argv: Sequence[str], env: dict[str, str]) -> Case:
    """Run ``argv`` under strace and under alloctrace, and fill ``case`` with the comparison."""
    text = _strace(tmp_path, argv, env)
    calls = parse_strace(text).calls
    case.straced = len(calls)
    out = tmp_path / "trace.jsonl"
    record(list(argv), out, TraceOptions(), env=env)
    trace = alloctrace.load(out)
    case.ours = analyze(trace.data).events
    theirs, processes = _strace_threads(text, calls)
    keys = _keys(calls, processes)
    keys.update(_keys([c.event for c in case.ours], {}))  # a Syscall's pid is its process
    _compare(case, _our_threads(trace, case.ours), theirs, keys, label_calls(calls))
    return case


def _share(agree: int, labelled: int) -> float:
    return 100 * agree / labelled if labelled else 100.0


def _report(cases: Sequence[Case]) -> str:
    """The per-case table, a total line, then the first disagreements of each case."""
    rows = [f"{'case':<26}{'ours':>6}{'strace':>7}{'paired':>7}{'agree':>13}{'%':>8}"]
    for c in cases:
        rows.append(
            f"{c.id:<26}{len(c.ours):>6}{c.straced:>7}{c.paired:>7}"
            f"{f'{c.agree}/{c.labelled}':>13}{_share(c.agree, c.labelled):>8.2f}"
        )
    agree, labelled = sum(c.agree for c in cases), sum(c.labelled for c in cases)
    rows.append(f"{'total':<40}{f'{agree}/{labelled}':>13}{_share(agree, labelled):>8.2f}")
    rows += [d for c in cases for d in c.disagreements[:10]]
    return "\n".join(rows)


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory) -> list[Case]:
    if debug_file("/usr/lib/x86_64-linux-gnu/libc.so.6") is None:
        pytest.skip("glibc's debug symbols (libc6-dbg) are not installed")
    return [
        _run_case(tmp_path_factory.mktemp(f"labels-{program}-{variant}"), program, variant)
        for program, variant in CASES
    ]


def test_categories_agree_overall(cases: list[Case]) -> None:
    agree, labelled = sum(c.agree for c in cases), sum(c.labelled for c in cases)
    assert agree >= AGREEMENT * labelled, _report(cases)


@pytest.mark.parametrize("program", list(PROGRAMS))
def test_categories_agree_per_program(cases: list[Case], program: str) -> None:
    mine = [c for c in cases if c.program == program]
    agree, labelled = sum(c.agree for c in mine), sum(c.labelled for c in mine)
    assert agree >= AGREEMENT * labelled, _report(mine)


def test_the_comparison_covers_nearly_every_event(cases: list[Case]) -> None:
    for c in cases:
        assert c.paired >= COVERAGE * len(c.ours), f"{c.id}: few events paired\n{_report(cases)}"
        assert c.labelled >= COVERAGE * c.paired, f"{c.id}: strace unwound few\n{_report(cases)}"


def test_no_fixture_event_is_other(cases: list[Case]) -> None:
    others = [
        f"{c.id} {e.event.syscall} {e.event.length} seq={e.event.seq}: {e.reason}"
        for c in cases
        for e in c.ours
        if e.category == "other"
    ]
    assert not others, "\n".join(others)


def _labelled(cases: list[Case], case_id: str) -> list[tuple[StraceCall, str]]:
    found = next(c for c in cases if c.id == case_id)
    return [(call, lab.category if lab else "none") for call, lab in found.labels]


def test_the_labeller_itself(cases: list[Case]) -> None:
    """The reference must be right where the fixtures document the truth (fixtures/README.md,
    shared/allocators.md)."""
    seed = _labelled(cases, "seed-glibc")
    brks = [cat for call, cat in seed if call.syscall == "brk"]
    assert brks == ["loader", "allocator", "allocator"], seed  # ld.so's, then malloc's two
    assert all(cat == "loader" for call, cat in seed if call.syscall != "brk"), seed
    for variant in VARIANTS:  # exactly its own 12 calls, whatever interposes mmap
        users = [call for call, cat in _labelled(cases, f"usermmap-{variant}") if cat == "user"]
        assert len(users) == 12, variant
    static = [cat for call, cat in _labelled(cases, "static-glibc") if call.syscall == "brk"]
    assert static[:2] == ["loader", "loader"], static  # _dl_early_allocate: static TLS
    assert set(static[2:]) == {"allocator"}, static
    stacks = [call for call, cat in _labelled(cases, "threads-glibc") if cat == "thread-stack"]
    assert [c.syscall for c in stacks].count("mmap") == 4  # one 8 MiB + guard per thread
    assert [c.syscall for c in stacks].count("madvise") == 4  # released at each thread's exit
    python = _labelled(cases, "python3-glibc")
    assert sum(c.length == 2**20 and cat == "runtime" for c, cat in python) >= 1  # arenas
    for variant in ("jemalloc-linked", "jemalloc-static"):
        jemalloc = _labelled(cases, f"seed-{variant}")
        assert sum(cat == "allocator" for _c, cat in jemalloc) >= 5  # probes, base, extent
    assert label_frames([]) is None
