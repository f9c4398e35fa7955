"""Syscall lines as the writer lays them out (``{"kind":"syscall",`` first) are decoded a run at a
time by msgspec; any other line goes through the checking path. Both must read a line alike:
the same record, or the same error on the same line.

The checking path is reached through the public reader by the same line with a space after
``"kind":``, which the fast path does not take and which JSON reads the same.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from tracer import _lines, traceformat
from tracer.errors import TraceFormatError
from tracer.records import Exit, Syscall
from tracer.traceformat import read_trace

HEADER = (Path(__file__).parent / "data" / "traces" / "v1-seed.jsonl").read_text().splitlines()[0]
PREFIX = '{"kind":"syscall",'
BASE = '"seq":1,"ts_ns":2,"dur_ns":3,"pid":4,"tid":4,"syscall":"mmap"'


def _read(path: Path, lines: list[str]) -> list[Any] | str:
    """The events of a trace of ``lines``, or its one error."""
    path.write_text("\n".join([HEADER, *lines]) + "\n", encoding="utf-8", errors="surrogatepass")
    try:
        return read_trace(path).events
    except TraceFormatError as exc:
        return str(exc)


def _checking_path(line: str) -> str:
    return line.replace(PREFIX, '{"kind": "syscall",', 1)


def _both_ways(tmp_path: Path, lines: list[str]) -> list[Any] | str:
    path = tmp_path / "t.jsonl"
    fast = _read(path, lines)
    assert fast == _read(path, [_checking_path(line) for line in lines])
    return fast


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("", Syscall(1, 2, 3, 4, 4, "mmap")),
        (',"addr":18446744073709551616', Syscall(1, 2, 3, 4, 4, "mmap", addr=1 << 64)),
        (',"seq":7', Syscall(7, 2, 3, 4, 4, "mmap")),  # the last of repeated keys
        (',"path":"\\ud800"', Syscall(1, 2, 3, 4, 4, "mmap", path="\ud800")),  # msgspec refuses
        (',"later":{"x":[1.5,null]}', Syscall(1, 2, 3, 4, 4, "mmap")),  # unknown fields skipped
        (',"kind":"exit"', Exit(1, 2, 4, 4)),  # the last "kind" says what the record is
        (',"addr":1.0', "malformed syscall record: field 'addr'"),
        (',"addr":true', "malformed syscall record: field 'addr'"),
        (',"path":7', "malformed syscall record: field 'path'"),
        ('}{"x":1', "not valid JSON"),
        ('},{"kind":"syscall",' + BASE, "not valid JSON"),  # two objects on one line
    ],
)
def test_a_syscall_line_reads_the_same_on_both_paths(
    tmp_path: Path, extra: str, expected: Syscall | Exit | str
) -> None:
    found = _both_ways(tmp_path, [PREFIX + BASE + extra + "}"] * 3)
    if isinstance(expected, str):
        assert isinstance(found, str) and f":2: {expected}" in found
    else:
        assert found == [expected] * 3


def test_a_bad_line_in_a_long_run_is_named(tmp_path: Path) -> None:
    lines = [PREFIX + BASE + "}"] * 5000
    lines[3000] = PREFIX + BASE + ',"length":"4096"}'
    found = _both_ways(tmp_path, lines)
    assert isinstance(found, str)
    assert ":3002: malformed syscall record: field 'length' must not be a string" in found


def test_runs_of_syscalls_between_other_records_keep_their_order(tmp_path: Path) -> None:
    exit_line = '{"kind":"exit","seq":9,"ts_ns":0,"pid":4,"tid":5,"status":0}'
    lines = [PREFIX + BASE.replace('"seq":1', f'"seq":{i}') + "}" for i in range(6)]
    found = _both_ways(tmp_path, [*lines[:3], exit_line, *lines[3:]])
    assert isinstance(found, list)
    assert [type(e).__name__ for e in found] == ["Syscall"] * 3 + ["Exit"] + ["Syscall"] * 3
    assert [e.seq for e in found] == [0, 1, 2, 9, 3, 4, 5]


def test_syscalls_after_the_footer_are_an_error(tmp_path: Path) -> None:
    footer = '{"kind":"footer","outcome":"exited","duration_ns":1,"events":0}'
    found = _both_ways(tmp_path, [footer, PREFIX + BASE + "}"])
    assert isinstance(found, str) and ":3: records after the footer" in found


def test_a_syscall_line_cut_short_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text(f"{HEADER}\n{PREFIX}{BASE}}}\n{PREFIX}{BASE}}}")
    with pytest.raises(TraceFormatError, match=":3: line is cut short"):
        read_trace(path)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=6,
)
FIELDS = ["seq", "ts_ns", "pid", "addr", "length", "prot", "path", "name", "result", "stack"]


@st.composite
def syscall_lines(draw: st.DrawFn) -> str:
    """A good syscall line, sometimes with a field set to any JSON value or dropped."""
    obj: dict[str, Any] = {"kind": "syscall", **json.loads("{" + BASE + "}")}
    obj["addr"] = draw(st.integers(0, 2**64 - 1))
    obj["path"] = draw(st.none() | st.text(max_size=8))
    for key in draw(st.lists(st.sampled_from([*FIELDS, "kind", "other"]), max_size=2)):
        if draw(st.booleans()):
            obj[key] = draw(json_values)
        else:
            obj.pop(key, None)
    return json.dumps(obj, separators=(",", ":"))


@given(st.lists(syscall_lines(), min_size=1, max_size=8))
@example(['{"kind":"syscall",' + BASE + "}"])
def test_any_syscall_lines_read_the_same_on_both_paths(lines: list[str]) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        _both_ways(Path(tmp), lines)


@pytest.mark.parametrize("chunk", [1, 50, 400])
def test_chunks_of_any_size_read_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    """A chunk is completed to a line's end: a line longer than a chunk, a chunk boundary
    anywhere in a run or in another record, and a last line cut short read as in one chunk."""
    exit_line = '{"kind":"exit","seq":9,"ts_ns":0,"pid":4,"tid":5,"status":0}'
    lines = [PREFIX + BASE.replace('"seq":1', f'"seq":{i}') + "}" for i in range(40)]
    lines[7:7] = [exit_line, exit_line]
    whole = _read(tmp_path / "whole.jsonl", lines)
    cut = (tmp_path / "whole.jsonl").read_text()[:-30]
    monkeypatch.setattr(traceformat, "_CHUNK_BYTES", chunk)
    assert _read(tmp_path / "chunked.jsonl", lines) == whole
    assert isinstance(whole, list) and len(whole) == 42
    (tmp_path / "cut.jsonl").write_text(cut)
    with pytest.raises(TraceFormatError, match=":43: line is cut short"):
        read_trace(tmp_path / "cut.jsonl")


@given(st.lists(st.sampled_from(["sy", "s", "", "x", "sysy", "syx"]), max_size=12), st.data())
def test_the_line_scan_matches_splitting_the_lines(lines: list[str], data: st.DataObject) -> None:
    """tracer/_lines.c against the lines Python splits: where the lines not starting with the
    prefix start, their numbers, and how many lines end with a newline, from any start offset
    and with or without a last line cut short."""
    chunk = ("\n".join(lines) + data.draw(st.sampled_from(["", "\n", "\nsy", "\nx"]))).encode()
    start = data.draw(st.integers(0, len(chunk)))
    stop = data.draw(st.integers(start, len(chunk)))
    whole = chunk[start:stop]
    offsets, numbers, at = [], [], start
    for number, line in enumerate(whole.split(b"\n")):
        if at == stop:
            break
        if not line.startswith(b"sy"):
            offsets.append(at)
            numbers.append(number)
        at += len(line) + 1
    expected = (offsets, numbers, whole.count(b"\n"))
    assert _lines.scan(bytearray(chunk), start, stop, b"sy") == expected
