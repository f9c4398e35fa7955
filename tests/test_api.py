"""The notebook API: load/run/import into a Trace, its pandas views, errors, a light import."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import alloctrace
from alloctrace.api import EVENT_COLUMNS, Trace
from tests.helpers import ROOT, fixture
from tests.recorded import loaded, trace_file
from tracer.records import FORMAT_VERSION, Syscall

V1 = ROOT / "tests" / "data" / "traces" / "v1-seed.jsonl"
DOCS = ROOT / "docs" / "notebooks.md"
NAMES = [name for name, _ in EVENT_COLUMNS]
MIB = 1 << 20


def test_import_is_light() -> None:
    code = (
        "import sys, alloctrace\n"
        "heavy = {'pandas', 'pyarrow', 'matplotlib', 'numpy', 'ptrace', 'elftools'}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_loading_a_trace_stays_without_pandas() -> None:
    code = (
        f"import sys, alloctrace\nt = alloctrace.load({str(V1)!r})\n"
        "rows = list(t.event_rows())\n"
        "print(len(rows), sorted(m for m in sys.modules if m in ('pandas', 'matplotlib')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["15", "[]"]


def test_records_api_still_works() -> None:
    trace = alloctrace.load(V1)
    assert trace.path == str(V1) and trace.complete and trace.footer is not None
    assert trace.header.version == 1 and trace.data.header is trace.header
    assert len(list(trace.syscalls())) == 15 and len(trace.records) == 18
    first = next(trace.syscalls())
    assert trace.frames(first) == () and trace.raw_frames(first) == ()


def test_events_columns_and_types() -> None:
    trace = loaded("seed")
    events = trace.events
    assert list(events.columns) == NAMES
    assert len(events) == len(list(trace.syscalls()))
    assert events["seq"].tolist() == [e.seq for e in trace.syscalls()]
    assert str(events["seq"].dtype) == "int64" and str(events["length"].dtype) == "Int64"
    assert events["category"].cat.ordered
    assert list(events["phase"].cat.categories[:3]) == ["startup", "main", "exit"]
    mmap = events[events.syscall == "mmap"].iloc[0]
    assert mmap["prot_names"] == "PROT_READ|PROT_WRITE"
    assert mmap["flags_names"] == "MAP_PRIVATE|MAP_ANONYMOUS"
    brks = events[events.syscall == "brk"]
    assert brks["category"].tolist() == ["loader", "allocator", "allocator"]
    assert brks["role"].tolist()[1:] == ["grow main heap"] * 2
    assert events["stack"].notna().all() and events["function"].notna().all()
    assert events["stack"].iloc[0].startswith("ld-linux-x86-64.so.2(")
    libc = events[events.path.astype(str).str.endswith("libc.so.6")]
    assert len(libc) == 4 and set(libc["segment"]) == {"span", "text", "rodata", "data"}


def test_every_column_is_documented() -> None:
    text = DOCS.read_text()
    table = dict(re.findall(r"^\| `(\w+)` \| (.+) \|$", text, re.MULTILINE))
    for name, meaning in EVENT_COLUMNS:
        assert name in table, f"docs/notebooks.md does not list the column {name}"
        documented = re.sub(r"[`'\\]", "", table[name])
        assert documented.startswith(re.sub(r"[`']", "", meaning)), name


def test_analysis_runs_once_per_trace(monkeypatch: pytest.MonkeyPatch) -> None:
    import analyzers.analysis

    calls = []
    real = analyzers.analysis.analyze

    def counting(*args: object, **kwargs: object) -> analyzers.analysis.Analysis:
        calls.append(1)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(analyzers.analysis, "analyze", counting)
    trace = alloctrace.load(trace_file("seed"))
    trace.events.drop(columns=["seq"])  # views are copies: the cache stays intact
    assert list(trace.events.columns) == NAMES
    for view in (trace.processes, trace.objects, trace.arenas, trace.mappings, trace.summary()):
        assert isinstance(view, pd.DataFrame)
    assert trace.sentences and trace.upfront()
    assert len(calls) == 1


def test_processes_and_objects_of_a_fork_and_exec() -> None:
    trace = loaded("forkexec")
    procs = trace.processes.set_index("pid")
    assert len(procs) == 2
    root, child = procs.index
    assert procs.loc[child, "parent_pid"] == root
    assert Path(procs.loc[child, "program"]).name == "exitcode"
    assert procs.loc[child, "status"] == 0 and procs.loc[root, "status"] == 0
    assert (procs["allocator"] == "glibc").all()
    assert (procs["startup_calls"] > 0).all()
    objects = trace.objects
    assert set(objects.pid) == {root, child}
    libc = objects[(objects.name == "libc.so.6") & (objects.pid == child)]
    assert libc["how"].tolist() == ["DT_NEEDED"] and libc["mmaps"].tolist() == [5]


def test_jemalloc_objects_and_allocator() -> None:
    trace = loaded("seed-jemalloc")
    assert trace.label.startswith("jemalloc 5.")
    objects = trace.objects.set_index("name")
    assert objects.loc["libjemalloc.so.2", "needed_by"] == fixture("seed-jemalloc")
    assert objects.loc["libjemalloc.so.2", "how"] == "DT_NEEDED"
    assert str(objects.loc["libstdc++.so.6.0.30", "needed_by"]).endswith("libjemalloc.so.2")
    procs = trace.processes
    assert procs["allocator"].tolist() == ["jemalloc"]
    assert procs["allocator_how"].tolist() == ["linked"]


def _row(frame: pd.DataFrame, key: tuple[str, str]) -> dict[str, Any]:
    return {str(k): v for k, v in frame.loc[[key]].iloc[0].items()}


def test_summary_and_diff_of_glibc_and_jemalloc() -> None:
    glibc, jemalloc = loaded("seed"), loaded("seed-jemalloc")
    summary = glibc.summary()
    assert summary.loc[("total", ""), "mmap"] == 8
    assert summary.loc[("total", ""), "calls"] == len(glibc.events)
    assert summary.loc[("startup", "loader"), "mmap"] == 8
    diff = glibc.diff(jemalloc)
    assert diff.attrs["labels"] == [glibc.label, jemalloc.label]
    mmaps = _row(diff, ("calls", "mmap"))
    assert mmaps[glibc.label] == 8 and mmaps[jemalloc.label] >= 30
    assert mmaps["change"] == mmaps[jemalloc.label] - 8
    assert _row(diff, ("allocator", "calls before main"))[jemalloc.label] > 0
    assert any("libjemalloc.so.2" in s for s in diff.attrs["sentences"])
    named = glibc.diff(jemalloc, labels=["a", "b"])
    assert list(named.columns) == ["unit", "a", "b", "change"]
    with pytest.raises(alloctrace.AlloctraceError, match="distinct labels"):
        glibc.diff(jemalloc, labels=["a", "a"])
    assert glibc.upfront() == {"loader": 13}


def test_thread_arenas() -> None:
    trace = loaded("threads", "8")
    arenas = trace.arenas
    heaps = arenas[arenas.kind == "glibc arena heap"]
    stacks = arenas[arenas.kind == "thread stack"]
    assert len(stacks) == 8 and 1 <= len(heaps) <= 8
    assert (heaps.tid != heaps.pid).all(), "each heap is made by the thread that needed it"
    assert set(heaps.reserved) <= {64 * MIB, 128 * MIB}
    assert trace.processes["threads"].tolist() == [9]


def test_mappings_follow_mremap_and_munmap() -> None:
    trace = loaded("big")
    maps = trace.mappings
    large = maps[maps.role == "large allocation"]
    assert large["removed_by"].tolist() == ["mremap", "munmap"] and (large["size"] == 0).all()
    moved = maps[maps.syscall == "mremap"]
    assert len(moved) == 1 and moved["removed_by"].tolist() == ["munmap"]
    heap = maps[maps.syscall == "brk"]
    assert heap["category"].tolist() == ["allocator"]
    loader = maps[maps.category == "loader"]
    assert loader["removed_by"].isin(["exit", "munmap"]).all()


def test_run_traces_from_a_cell(tmp_path: Path) -> None:
    out = tmp_path / "run.jsonl"
    trace = alloctrace.run([fixture("seed")], allocator="jemalloc", output=out)
    assert trace.path == str(out) and trace.footer is not None and trace.footer.status == 0
    assert trace.header.allocator == "jemalloc" and "libjemalloc" in trace.header.env["LD_PRELOAD"]
    assert trace.label.startswith("jemalloc") and trace.processes["allocator_how"][0] == "preloaded"
    scratch = alloctrace.run(f"{fixture('exitcode')} 3", stacks=False)
    assert scratch.footer is not None and scratch.footer.status == 3
    assert Path(scratch.path).exists() and scratch.header.options["stacks"] is False
    with pytest.raises(alloctrace.AlloctraceError, match="unknown allocator"):
        alloctrace.run([fixture("seed")], allocator="nomalloc")
    with pytest.raises(alloctrace.AlloctraceError, match="command not found"):
        alloctrace.run(["no-such-program-here"])


def test_rules_files_are_used(tmp_path: Path) -> None:
    rules = tmp_path / "mine.toml"
    rules.write_text(
        '[[rule]]\nid = "mine"\ncategory = "runtime"\nowner = "me"\nrole = "everything"\n'
        'objects = ["{exe}", "*"]\n'
    )
    trace = alloctrace.load(trace_file("seed"), rules=rules)
    stacked = trace.events[trace.events.decided_by == "stack"]
    assert set(stacked["owner"]) == {"me"}


def _write(path: Path, lines: list[str], end: str = "\n") -> Path:
    path.write_text("\n".join(lines) + end)
    return path


HEADER = json.dumps({"kind": "header", "format": "alloctrace", "version": 1, "program": "x",
                     "argv": ["x"]})  # fmt: skip
EVENT = '{"kind":"syscall","seq":1,"ts_ns":0,"dur_ns":0,"pid":1,"tid":1,"syscall":"brk","addr":0}'


@pytest.mark.parametrize(
    ("lines", "end", "message"),
    [
        ([], "", "empty file, not an alloctrace trace"),
        ([HEADER, EVENT[:40]], "", ":2: line is cut short (the file was truncated)"),
        (["mmap(NULL, 4096, PROT_READ) = 0x7f00"], "\n", ":1: not an alloctrace trace"),
        (
            [HEADER.replace('"version": 1', f'"version": {FORMAT_VERSION + 1}')],
            "\n",
            f":1: trace format version {FORMAT_VERSION + 1} is newer than this alloctrace reads",
        ),
        ([HEADER, "{not json"], "\n", ":2: not valid JSON"),
    ],
    ids=["empty", "truncated", "wrong-format", "newer-version", "malformed-line"],
)
def test_bad_files_raise_one_error_type(
    tmp_path: Path, lines: list[str], end: str, message: str
) -> None:
    path = _write(tmp_path / "bad.jsonl", lines, end)
    with pytest.raises(alloctrace.AlloctraceError) as caught:
        alloctrace.load(path)
    assert str(caught.value).startswith(str(path)) and message in str(caught.value)
    cli = subprocess.run(
        [sys.executable, "-m", "alloctrace", "export", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert cli.returncode != 0 and cli.stdout == ""
    assert cli.stderr.count("\n") == 1 and message in cli.stderr


def test_a_trace_without_footer_loads(tmp_path: Path) -> None:
    path = _write(tmp_path / "cut.jsonl", [HEADER, EVENT])
    trace = alloctrace.load(path)
    assert not trace.complete and len(trace.events) == 1
    assert trace.events["category"].tolist() == ["loader"]


def test_trace_dataclass_takes_data() -> None:
    trace = Trace(alloctrace.load(V1).data)
    assert isinstance(next(trace.syscalls()), Syscall) and trace.import_report is None
