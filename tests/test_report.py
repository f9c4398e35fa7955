"""The report of one trace: figures, sentences, text/markdown snapshots, JSON against its schema.

Snapshots are taken on traces recorded once and committed under tests/data/traces/ (recorded from
the repository root with relative program paths, the root then removed from every path), read
from the repository root so the executables' DT_NEEDED can be read. They show no addresses and
no timestamps other than the committed trace's own.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from syrupy.assertion import SnapshotAssertion

from alloctrace.reporters import Format, reporter
from alloctrace.reporters import json as json_reporter
from analyzers import diff as diff_module
from analyzers import summarize as summarize_module
from analyzers.analysis import analyze
from analyzers.summarize import Summary, size_text, summarize
from tests.helpers import MEMORY_TRACE, ROOT, fixture, strace
from tracer.records import Footer, Header
from tracer.strace_log import StraceCall, parse_strace
from tracer.traceformat import TraceData, read_trace

TRACES = ROOT / "tests" / "data" / "traces"
REPORTED = [
    "report-seed-glibc",
    "report-seed-jemalloc-linked",
    "report-seed-jemalloc-preload",
    "report-threads8-glibc",
    "report-threads8-jemalloc",
    "report-threads8-mimalloc",
]
MAP_FIXED = 0x10
MAP_ANONYMOUS = 0x20


@pytest.fixture(autouse=True)
def _at_root(monkeypatch: pytest.MonkeyPatch) -> None:
    """The committed traces name the fixtures by paths relative to the repository root."""
    monkeypatch.chdir(ROOT)


def committed(name: str) -> Summary:
    """The summary of a committed trace, read by its path relative to the repository root."""
    return summarize(analyze(read_trace(f"tests/data/traces/{name}.jsonl")))


# ---- snapshots -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["report-seed-glibc", "report-seed-jemalloc-linked", "report-threads8-glibc"]
)
@pytest.mark.parametrize("fmt", [Format.TEXT, Format.MARKDOWN])
def test_report_snapshot(name: str, fmt: Format, snapshot: SnapshotAssertion) -> None:
    assert reporter(fmt).render_report(committed(name)) == snapshot


def test_report_shows_no_addresses() -> None:
    text = reporter(Format.TEXT).render_report(committed("report-threads8-jemalloc"))
    assert "0x" not in text
    assert " > " not in text  # the --stacks listing's frame marker


# ---- JSON ----------------------------------------------------------------------------------


def _schema() -> dict[str, Any]:
    return json_reporter.schema()


def validate(instance: object) -> None:
    """Validate against report.schema.json (jsonschema ships no type stubs: typed Any here)."""
    jsonschema: Any = importlib.import_module("jsonschema")
    schema = _schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(instance, schema)


@pytest.mark.parametrize("name", [*REPORTED, "v1-seed"])
def test_json_report_validates_against_its_schema(name: str) -> None:
    text = reporter(Format.JSON).render_report(committed(name))
    validate(json.loads(text))


def test_schema_documents_every_field() -> None:
    """Every dataclass the JSON carries is in the schema, field for field, each described."""
    defs = _schema()["$defs"]
    for module in (summarize_module, diff_module):
        for name in dir(module):
            cls = getattr(module, name)
            if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)) or name[0] == "_":
                continue
            if cls.__module__ != module.__name__:
                continue
            assert name in defs, f"{name} is missing from report.schema.json"
            fields = [f.name for f in dataclasses.fields(cls)]
            assert defs[name]["required"] == fields, name
            assert all(p.get("description") for p in defs[name]["properties"].values()), name


def test_json_carries_the_text_figures() -> None:
    summary = committed("report-seed-jemalloc-linked")
    data = json.loads(reporter(Format.JSON).render_report(summary))["report"]
    assert data["sentences"] == summary.sentences
    assert data["totals"]["calls"]["mmap"] == 33
    assert [o["name"] for o in data["objects"] if o["mmaps"]] == [
        "libjemalloc.so.2",
        "libc.so.6",
        "libm.so.6",
        "libstdc++.so.6",
        "libgcc_s.so.1",
    ]


# ---- figures -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", REPORTED)
def test_figures_add_up(name: str) -> None:
    s = committed(name)
    assert s.totals.total == sum(r.figures.total for r in s.table) == s.header.syscalls
    for kind in ("mmap", "munmap", "mprotect", "brk", "madvise"):
        assert s.totals.calls[kind] == sum(r.figures.calls[kind] for r in s.table)
    loader = sum(r.figures.total for r in s.table if r.category == "loader")
    per_object = sum(o.mmaps + o.mprotects + o.munmaps for o in s.objects)
    assert loader == per_object + sum(r.figures.total for r in s.loader_data)
    allocator = sum(r.figures.total for r in s.table if r.category == "allocator")
    assert allocator == sum(r.figures.total for r in s.allocator_roles)
    early = sum(
        r.figures.total for r in s.table if r.category == "allocator" and r.phase == "startup"
    )
    assert early == len(s.allocator_startup)
    assert s.totals.resident == sum(r.figures.resident for r in s.table) > 0
    assert s.header.resident_known


def test_seed_jemalloc_linked_says_what_the_article_mmaps_were() -> None:
    """The article's `g++ ... -ljemalloc`: which of the mmaps the loader made, for which object,
    and which jemalloc made itself (Debian's 5.3.0: 28 + 5 = 33, not the article's 32)."""
    s = committed("report-seed-jemalloc-linked")
    objects = {o.name: o for o in s.objects if o.mmaps}
    assert {n: o.mmaps for n, o in objects.items()} == {
        "libjemalloc.so.2": 5,
        "libc.so.6": 5,
        "libm.so.6": 4,
        "libstdc++.so.6": 5,
        "libgcc_s.so.1": 4,
    }
    assert objects["libjemalloc.so.2"].needed_by == "seed-jemalloc"
    for name in ("libm.so.6", "libstdc++.so.6", "libgcc_s.so.1"):
        assert objects[name].needed_by == "libjemalloc.so.2"
    jemalloc_mmaps = [c for c in s.allocator_startup if c.syscall == "mmap"]
    assert [c.size for c in jemalloc_mmaps] == [4096, 4096, 2 << 20, 2 << 20, 4 << 20]
    assert {c.owner for c in s.allocator_startup} == {"jemalloc"}
    text = " ".join(s.sentences)
    assert "the loader made 28 of the 33 mmaps, 23 of them mapping 5 shared objects" in text
    assert "libjemalloc.so.2 needed libm.so.6, libstdc++.so.6 and libgcc_s.so.1" in text
    assert "jemalloc itself made 10 calls before main: 5 mmap:" in text
    assert "Its other 5 mmaps served ld.so itself" in text


def test_seed_glibc_shows_the_brk_strace_e_mmap_hides() -> None:
    s = committed("report-seed-glibc")
    [row] = s.allocator_roles
    assert (row.owner, row.role, row.phase, row.figures.calls["brk"]) == (
        "glibc",
        "grow main heap",
        "main",
        2,
    )
    assert sum(row.sizes["brk"]) == 0x21000  # 132 KiB: 640-byte tcache + 516 + top_pad
    assert any("`strace -e mmap` shows none of them" in line for line in s.sentences)
    assert s.upfront.figures.total == 13 and s.upfront.by_category == {"loader": 13}


def test_threads_stacks_and_arenas_per_thread() -> None:
    s = committed("report-threads8-glibc")
    assert s.stacks is not None
    assert (s.stacks.threads, s.stacks.stacks, s.stacks.sizes) == (8, 8, [8 * 1024 * 1024 + 4096])
    assert s.stacks.figures.committed == 8 * 8 * 1024 * 1024
    [heaps] = [a for a in s.arenas if a.kind == "glibc arena heap"]
    assert heaps.by_main == 0 and 1 <= heaps.threads <= 8
    workers = [t for t in s.threads if not t.main]
    assert len(workers) == 8
    assert sum(t.arenas.get("glibc arena heap", 0) for t in workers) == heaps.count


def test_sentences_are_generated_from_the_figures() -> None:
    """Change a figure and the sentence changes with it: nothing is canned."""
    s = committed("report-seed-jemalloc-linked")
    s.totals.calls["mmap"] = 99
    s.totals.total = 113
    text = " ".join(summarize_module.sentences(s))
    assert "the loader made 28 of the 99 mmaps" in text
    assert "made 113 memory syscalls" in text


def test_no_stacks_trace_says_phases_are_unknown() -> None:
    s = committed("v1-seed")
    assert not s.header.phases_known
    assert s.header.decided_by.get("heuristic")
    assert any("where main began is unknown" in line for line in s.sentences)
    assert not any(line.startswith("Upfront cost") for line in s.sentences)


def test_empty_and_incomplete_traces() -> None:
    header = Header("alloctrace", 1, "prog", ["prog"])
    empty = summarize(analyze(TraceData("t.jsonl", header)))
    assert empty.sentences == ["prog made no memory syscall that the trace recorded."]
    assert empty.header.outcome.startswith("unknown: the trace is incomplete")
    assert not empty.header.resident_known
    killed = TraceData("t.jsonl", header, footer=Footer("killed", 1000, 0, signal=11))
    assert summarize(analyze(killed)).header.outcome == "killed by SIGSEGV"
    for fmt in Format:
        assert reporter(fmt).render_report(empty)


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0 B"),
        (512, "512 B"),
        (4096, "4 KiB"),
        (34931, "34.1 KiB"),
        (2 << 20, "2 MiB"),
        (8392704, "8 MiB + 4 KiB"),
        (1974096, "1.9 MiB"),
        (939556864, "896 MiB"),
        (3 << 30, "3 GiB"),
        (-4096, "-4 KiB"),
    ],
)
def test_size_text(n: int, text: str) -> None:
    assert size_text(n) == text


# ---- against strace ------------------------------------------------------------------------


def _strace_calls(tmp_path: Path, argv: list[str], env: dict[str, str]) -> list[StraceCall]:
    log = parse_strace(strace(tmp_path, argv, "-f", "-y", "-e", MEMORY_TRACE, env=env))
    assert not log.unparsed
    return [c for c in log.calls if c.syscall != "prctl"]


def loader_mmaps_by_object(calls: list[StraceCall]) -> Counter[str]:
    """From an strace log alone: each object's file mmaps plus the anonymous MAP_FIXED .bss
    mapped right after them (the loader's sequence, shared/allocators.md section 2)."""
    counts: Counter[str] = Counter()
    current = None
    for c in calls:
        if c.syscall != "mmap":
            continue
        if c.path and c.path != "/etc/ld.so.cache":
            current = os.path.basename(c.path)
            counts[current] += 1
        elif current and (c.flags or 0) & MAP_FIXED and (c.flags or 0) & MAP_ANONYMOUS:
            counts[current] += 1
        else:
            current = None
    return counts


def after_the_loader(calls: list[StraceCall]) -> list[StraceCall]:
    """The calls after ld.so unmapped ld.so.cache: the end of its work before main."""
    size = next(c.length for c in calls if c.path == "/etc/ld.so.cache")
    end = next(i for i, c in enumerate(calls) if c.syscall == "munmap" and c.length == size)
    return calls[end + 1 :]


def test_seed_jemalloc_report_counts_equal_strace(tmp_path: Path) -> None:
    """`alloctrace fixtures/build/seed-jemalloc` (the default command) against `strace -f`."""
    argv = [fixture("seed-jemalloc")]
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    out = tmp_path / "seed-jemalloc.jsonl"
    proc = subprocess.run(
        [sys.executable, "-m", "alloctrace", "-o", str(out), "--format", "json", "--", *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert f"alloctrace: trace written to {out}" in proc.stderr
    report = json.loads(proc.stderr[proc.stderr.index("{") :])["report"]
    calls = _strace_calls(tmp_path, argv, env)
    assert report["totals"]["calls"] == {
        **dict.fromkeys(report["totals"]["calls"], 0),
        **Counter(c.syscall for c in calls),
    }
    by_object = loader_mmaps_by_object(calls)
    ours = {o["name"]: o["mmaps"] for o in report["objects"] if o["mmaps"]}
    assert len(ours) == len(by_object) == 5
    for name, mmaps in ours.items():
        [path] = [p for p in by_object if p.startswith(name)]
        assert by_object[path] == mmaps, name
    own = [
        (c["syscall"], c["size"] if c["syscall"] != "brk" else None)
        for c in report["allocator_startup"]
    ]
    expected = [
        (c.syscall, c.length if c.syscall != "brk" else None) for c in after_the_loader(calls)
    ]
    assert own == expected
    assert sum(1 for c in own if c[0] == "mmap") == 5
