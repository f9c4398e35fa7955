"""``alloctrace export``: the analyzed events as JSON Lines, CSV and Parquet."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from alloctrace.api import EVENT_COLUMNS
from alloctrace.export import format_of
from tests.recorded import loaded, trace_file
from tracer.errors import AlloctraceError

NAMES = [name for name, _ in EVENT_COLUMNS]
REQUIRED = ["seq", "pid", "tid", "syscall", "addr", "length", "prot", "flags", "result", "path"]
REQUIRED += ["category", "owner", "role", "phase", "object", "function", "reason"]


def _export(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "alloctrace", "export", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_jsonl_to_stdout_one_event_per_line() -> None:
    trace = loaded("seed-jemalloc")
    out = _export(str(trace_file("seed-jemalloc")))
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert len(rows) == len(list(trace.syscalls()))
    for row in rows:
        assert list(row) == NAMES
        assert set(REQUIRED) <= set(row)
    assert [r["seq"] for r in rows] == [e.seq for e in trace.syscalls()]
    jemalloc = [r for r in rows if r["owner"] == "jemalloc"]
    assert jemalloc and {r["category"] for r in jemalloc} == {"allocator"}
    assert all(r["phase"] == "startup" for r in jemalloc)
    first = rows[0]
    assert first["syscall"] == "brk" and first["length"] is None and first["category"] == "loader"


def test_jsonl_export_needs_no_pandas() -> None:
    code = (
        "import sys\nfrom alloctrace.cli import app\n"
        f"try:\n    app(['export', {str(trace_file('seed'))!r}, '-o', '/dev/null'])\n"
        "except SystemExit:\n    pass\n"
        "print(sorted(m for m in sys.modules if m in ('pandas', 'pyarrow', 'matplotlib')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.stdout.strip().endswith("[]"), out.stderr


def test_csv_round_trips_through_pandas(tmp_path: Path) -> None:
    trace = loaded("big")
    path = tmp_path / "big.csv"
    out = _export(str(trace_file("big")), "-o", str(path))
    assert out.returncode == 0, out.stderr
    rows = list(csv.reader(io.StringIO(path.read_text())))
    assert rows[0] == NAMES and len(rows) == len(trace.events) + 1
    frame = pd.read_csv(path)
    assert frame["seq"].tolist() == trace.events["seq"].tolist()
    assert frame["category"].tolist() == trace.events["category"].astype(str).tolist()
    mremap = frame[frame.syscall == "mremap"]
    assert mremap["flags_names"].tolist() == ["MREMAP_MAYMOVE"]
    assert mremap["new_length"].tolist() == [1052672]
    stdout = _export(str(trace_file("big")), "--format", "csv")
    assert stdout.stdout == path.read_text()


def test_parquet_keeps_types(tmp_path: Path) -> None:
    trace = loaded("threads", "8")
    path = tmp_path / "threads.parquet"
    out = _export(str(trace_file("threads", "8")), "--format", "parquet", "-o", str(path))
    assert out.returncode == 0, out.stderr
    frame = pd.read_parquet(path)
    assert list(frame.columns) == NAMES and len(frame) == len(trace.events)
    assert str(frame["length"].dtype) == "Int64" and str(frame["category"].dtype) == "category"
    expected = trace.events
    pd.testing.assert_frame_equal(frame, expected, check_categorical=False)
    api = tmp_path / "api.parquet"
    trace.to_parquet(api)
    pd.testing.assert_frame_equal(pd.read_parquet(api), expected, check_categorical=False)


def test_api_csv_and_jsonl_writers(tmp_path: Path) -> None:
    trace = loaded("seed")
    trace.to_csv(tmp_path / "a.csv")
    trace.to_jsonl(tmp_path / "a.jsonl")
    assert pd.read_csv(tmp_path / "a.csv")["seq"].tolist() == trace.events["seq"].tolist()
    back = pd.read_json(tmp_path / "a.jsonl", lines=True)
    assert back["owner"].tolist() == trace.events["owner"].astype(str).tolist()


@pytest.mark.parametrize(
    ("path", "given", "expected"),
    [
        ("x.parquet", None, "parquet"),
        ("x.pq", None, "parquet"),
        ("x.CSV", None, "csv"),
        ("x.ndjson", None, "jsonl"),
        (None, None, "jsonl"),
        ("x.txt", "csv", "csv"),
    ],
)
def test_format_from_extension(path: str | None, given: str | None, expected: str) -> None:
    assert format_of(path, given) == expected


def test_format_errors() -> None:
    with pytest.raises(AlloctraceError, match="cannot tell the format"):
        format_of("x.txt", None)
    with pytest.raises(AlloctraceError, match="unknown format 'xml'"):
        format_of(None, "xml")
    out = _export(str(trace_file("seed")), "--format", "parquet")
    assert out.returncode != 0 and out.stdout == ""
    assert out.stderr == "alloctrace: --format parquet writes a file: give it with -o FILE\n"
    bad = _export(str(trace_file("seed")), "-o", "/nonexistent/dir/x.csv")
    assert bad.returncode != 0 and bad.stderr.startswith("alloctrace: cannot write")
