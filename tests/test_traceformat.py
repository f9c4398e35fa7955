"""The trace file contract: round trips, old versions, and one precise error per bad file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import alloctrace
from tracer.errors import AlloctraceError, TraceFormatError
from tracer.records import FORMAT_VERSION, Footer, Frame, Header, Module, Stack, Syscall
from tracer.traceformat import TraceWriter, read_trace

DATA = Path(__file__).parent / "data" / "traces"


def _header() -> Header:
    return Header(format="alloctrace", version=FORMAT_VERSION, program="p", argv=["p"])


def test_committed_version_1_trace_loads() -> None:
    trace = alloctrace.load(DATA / "v1-seed.jsonl")
    assert trace.header.version == 1
    assert trace.complete
    calls = list(trace.syscalls())
    assert [c.syscall for c in calls].count("mmap") == 8
    assert trace.footer is not None and trace.footer.status == 0


addresses = st.integers(min_value=0, max_value=(1 << 64) - 1)


@given(
    st.lists(
        st.builds(
            Syscall,
            seq=st.integers(0, 10**9),
            ts_ns=st.integers(0, 10**15),
            dur_ns=st.integers(0, 10**9),
            pid=st.integers(1, 1 << 22),
            tid=st.integers(1, 1 << 22),
            syscall=st.sampled_from(["mmap", "munmap", "brk", "mprotect", "mremap", "madvise"]),
            addr=addresses | st.none(),
            length=addresses | st.none(),
            path=st.text() | st.none(),
            result=addresses | st.none(),
            errno=st.integers(1, 133) | st.none(),
        ),
        max_size=20,
    )
)
def test_round_trip(events: list[Syscall]) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "t.jsonl"
        writer = TraceWriter(path, _header())
        writer.write(Module(1, 7, "/lib/libc.so.6", 0x1000, 0x2000, 0x1000, "abcd"))
        writer.write(Stack(3, (Frame(0x1234, 1, "regs"), Frame(0x99, None, "scan"))))
        for e in events:
            writer.write(e)
        writer.close(Footer("exited", 5, len(events), status=0))
        data = read_trace(path)
    assert data.events == events
    assert data.stacks[3].frames[1] == Frame(0x99, None, "scan")
    assert data.modules[1].build_id == "abcd"
    assert data.footer == Footer("exited", 5, len(events), status=0)


def _write(tmp_path: Path, text: str | bytes) -> Path:
    path = tmp_path / "bad.jsonl"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


HEADER = json.dumps(
    {"kind": "header", "format": "alloctrace", "version": 1, "program": "p", "argv": []}
)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "empty file"),
        ("hello\n", "first line is not JSON"),
        ('{"kind":"header","format":"perf"}\n', "not an alloctrace trace"),
        (HEADER.replace('"version": 1', '"version": 99') + "\n", "version 99 is newer"),
        (HEADER + '\n{"kind":"syscall","seq":1', "cut short"),
        (HEADER + "\n{not json}\n", "not valid JSON"),
        (HEADER + '\n{"kind":"syscall","bogus":1}\n', "malformed syscall record"),
        (
            HEADER + '\n{"kind":"footer","outcome":"exited","duration_ns":1,"events":0}\n{}\n',
            "after the footer",
        ),
        (b"\xff\xfe\x00garbage", "not an alloctrace trace"),
    ],
)
def test_bad_files_raise_one_precise_error(
    tmp_path: Path, content: str | bytes, message: str
) -> None:
    path = _write(tmp_path, content)
    with pytest.raises(TraceFormatError) as info:
        alloctrace.load(path)
    assert message in str(info.value)
    assert str(path) in str(info.value)
    assert isinstance(info.value, AlloctraceError)


def test_trace_without_footer_loads_as_incomplete(tmp_path: Path) -> None:
    lines = (DATA / "v1-seed.jsonl").read_text().splitlines()
    path = _write(tmp_path, "\n".join(lines[:-1]) + "\n")
    trace = alloctrace.load(path)
    assert not trace.complete
    assert len(list(trace.syscalls())) == 15


def test_unknown_record_kinds_and_fields_are_skipped(tmp_path: Path) -> None:
    extra = json.dumps({"kind": "future-thing", "x": 1})
    call = json.dumps(
        {
            "kind": "syscall",
            "seq": 1,
            "ts_ns": 0,
            "dur_ns": 0,
            "pid": 1,
            "tid": 1,
            "syscall": "brk",
            "addr": 0,
            "result": 4096,
            "new_field": "later",
        }
    )
    trace = alloctrace.load(_write(tmp_path, f"{HEADER}\n{extra}\n{call}\n"))
    (event,) = trace.syscalls()
    assert event.result == 4096


def test_existing_trace_is_not_overwritten_until_done(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text("old contents\n")
    writer = TraceWriter(path, _header())
    assert path.read_text() == "old contents\n"
    writer.close(Footer("exited", 1, 0, status=0))
    assert alloctrace.load(path).complete


def test_unwritable_location_is_one_error(tmp_path: Path) -> None:
    with pytest.raises(AlloctraceError, match="cannot write the trace"):
        TraceWriter(tmp_path / "missing-dir" / "t.jsonl", _header())


def test_collector_is_paused_only_inside_and_restored() -> None:
    import gc

    from tracer.traceformat import collector_paused

    assert gc.isenabled()
    with pytest.raises(KeyError), collector_paused():
        assert not gc.isenabled()
        raise KeyError
    assert gc.isenabled()
    gc.disable()
    try:
        with collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # left as it was found
    finally:
        gc.enable()


def test_what_was_built_while_paused_is_left_to_full_collections() -> None:
    """Moved to the oldest generation, which young collections do not walk; unless the program
    froze objects of its own, which stay frozen."""
    import gc

    from tracer.traceformat import collector_paused

    gc.unfreeze()  # what the CLI froze, when a test ran it in this process (alloctrace/cli.py)
    with collector_paused():
        built: list[list[int]] = [[]]
    assert any(o is built for o in gc.get_objects(generation=2))
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        with collector_paused():
            again: list[list[int]] = [[]]
        assert gc.get_freeze_count() == frozen
        assert any(o is again for o in gc.get_objects(generation=0))
    finally:
        gc.unfreeze()
