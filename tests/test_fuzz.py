"""Fuzzing the two readers of outside input: a trace file and an strace log either load or raise
AlloctraceError (one line for the user), never anything else. A loaded trace has the field types
its records promise. ``make fuzz`` runs these with many more examples (tests/conftest.py).
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import types
import typing
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from tracer.errors import AlloctraceError
from tracer.records import (
    Exec,
    Exit,
    Footer,
    Header,
    Memory,
    Module,
    Phase,
    Spawn,
    Stack,
    Syscall,
    field_names,
)
from tracer.strace_import import import_strace
from tracer.strace_log import StraceLog, parse_strace
from tracer.traceformat import TraceData, read_trace

DATA = Path(__file__).parent / "data"
TRACE_LINES = (DATA / "traces" / "v1-seed.jsonl").read_text().splitlines()
KINDS = [cls.KIND for cls in (Header, Syscall, Spawn, Exec, Exit, Phase, Module, Stack, Memory)]
FIELD_NAMES = sorted(
    {
        name
        for cls in (Header, Syscall, Spawn, Exec, Exit, Phase, Module, Stack, Memory, Footer)
        for name in field_names(cls)
    }
)

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def _load(text: str | bytes) -> TraceData | None:
    """read_trace on ``text``: the data, or None when it raised AlloctraceError."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "t.jsonl")
        with open(path, "wb") as handle:
            handle.write(text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text)
        try:
            return read_trace(path)
        except AlloctraceError as exc:
            assert str(exc).startswith(path), "the error names the file"
            assert "\n" not in str(exc), "the error is one line"
            return None


def _type_ok(value: Any, hint: Any) -> bool:
    """Does ``value`` (a loaded field) have the type the record declares?"""
    origin = typing.get_origin(hint)
    if hint is Any:
        return True
    if isinstance(hint, types.UnionType):
        return any(_type_ok(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint in (int, str, bool):
        return type(value) is hint
    if origin is list:
        (item,) = typing.get_args(hint)
        return type(value) is list and all(_type_ok(v, item) for v in value)
    if origin is dict:
        _, item = typing.get_args(hint)
        return type(value) is dict and all(_type_ok(v, item) for v in value.values())
    if origin is tuple:
        return type(value) is tuple and all(dataclasses.is_dataclass(v) for v in value)
    return isinstance(value, hint)


def _check_types(data: TraceData) -> None:
    records: list[Any] = [data.header, *data.events, *data.modules.values(), *data.stacks.values()]
    if data.footer is not None:
        records.append(data.footer)
    for record in records:
        hints = typing.get_type_hints(type(record))
        for name in field_names(type(record)):
            value = getattr(record, name)
            assert _type_ok(value, hints[name]), (type(record).__name__, name, value)
    for stack in data.stacks.values():
        for frame in stack.frames:
            assert type(frame.pc) is int and type(frame.how) is str
            assert frame.module is None or type(frame.module) is int


@st.composite
def mutated_traces(draw: st.DrawFn) -> str:
    """The committed trace, with a few lines changed the ways files get damaged."""
    lines = list(TRACE_LINES)
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(lines) - 1))
        how = draw(
            st.sampled_from(
                ["value", "drop-key", "add-key", "delete", "swap", "cut", "byte", "text"]
            )
        )
        if how in ("value", "drop-key", "add-key"):
            try:
                obj = json.loads(lines[i])
            except ValueError:
                continue
            if not isinstance(obj, dict) or not obj:
                continue
            key = draw(st.sampled_from(sorted(obj)))
            if how == "value":
                obj[key] = draw(json_values)
            elif how == "drop-key":
                del obj[key]
            else:
                obj[draw(st.sampled_from(FIELD_NAMES))] = draw(json_values)
            lines[i] = json.dumps(obj)
        elif how == "delete" and len(lines) > 1:
            del lines[i]
        elif how == "swap":
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        elif how == "cut":
            lines[i] = lines[i][: draw(st.integers(0, len(lines[i])))]
        elif how == "byte" and lines[i]:
            k = draw(st.integers(0, len(lines[i]) - 1))
            lines[i] = lines[i][:k] + draw(st.characters()) + lines[i][k + 1 :]
        elif how == "text":
            lines.insert(i, draw(st.text(max_size=40)))
    text = "\n".join(lines)
    return text if draw(st.booleans()) else text + "\n"


@st.composite
def random_records(draw: st.DrawFn) -> str:
    """A valid header, then records of known kinds with fields of any JSON type."""
    out = [TRACE_LINES[0]]
    for _ in range(draw(st.integers(0, 6))):
        obj: dict[str, Any] = {"kind": draw(st.sampled_from([*KINDS, "footer", "future"]))}
        for key in draw(st.lists(st.sampled_from(FIELD_NAMES), max_size=8)):
            obj[key] = draw(json_values)
        out.append(json.dumps(obj))
    return "\n".join(out) + "\n"


@given(mutated_traces())
@example("\n".join(TRACE_LINES) + "\n")
def test_damaged_trace_loads_or_raises_the_one_error(text: str) -> None:
    data = _load(text)
    if data is not None:
        _check_types(data)


@given(random_records())
def test_records_of_any_shape_load_typed_or_raise(text: str) -> None:
    data = _load(text)
    if data is not None:
        _check_types(data)


@given(st.binary(max_size=300) | st.text(max_size=300))
@example(b"")
@example(b"\xef\xbb\xbf" + TRACE_LINES[0].encode() + b"\n")
@example(TRACE_LINES[0] + "\n" + "[" * 100_000 + "\n")
@example(TRACE_LINES[0] + "\n" + '{"kind":"syscall","seq":' + "9" * 5000 + "}\n")
@example(TRACE_LINES[0] + '\n{"kind":["syscall"]}\n')
def test_any_bytes_load_or_raise(raw: str | bytes) -> None:
    data = _load(raw if isinstance(raw, bytes) else TRACE_LINES[0] + "\n" + raw)
    if data is not None:
        _check_types(data)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("pid", "abc"),
        ("pid", 1.5),
        ("seq", None),
        ("addr", "0x10"),
        ("result", True),
        ("stack", [1]),
        ("syscall", 9),
    ],
)
def test_a_field_of_the_wrong_type_is_a_format_error(field: str, value: object) -> None:
    call = {
        "kind": "syscall",
        "seq": 1,
        "ts_ns": 0,
        "dur_ns": 0,
        "pid": 1,
        "tid": 1,
        "syscall": "brk",
        "addr": 0,
        "result": 4096,
    }
    call[field] = value
    with pytest.raises(AlloctraceError, match=rf"malformed syscall record: field '{field}'"):
        read_trace_text(TRACE_LINES[0] + "\n" + json.dumps(call) + "\n")


def read_trace_text(text: str) -> TraceData:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "t.jsonl"
        path.write_text(text)
        return read_trace(path)


# -- strace logs ------------------------------------------------------------------------------

STRACE_LINES = [
    *(DATA / "strace" / "article-glibc.log").read_text().splitlines(),
    *(DATA / "strace" / "article-jemalloc.log").read_text().splitlines()[:8],
    "[pid  101] 10:00:00.000001 mmap(NULL, 8192, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS,"
    " -1, 0 <unfinished ...>",
    "[pid  101] 10:00:00.000003 <... mmap resumed>) = 0x7f0000002000 <0.000002>",
    "[pid  102] 10:00:00.000005 <... munmap resumed>) = -1 EINVAL (Invalid argument) <0.000003>",
    "[pid  104] 10:00:00.000008 <... mprotect resumed> <unfinished ...>) = ?",
    "8063  1795750570.833000 mmap(NULL, 4096, PROT_READ, MAP_SHARED, 3</tmp/a, b\\76(1).txt>"
    "(deleted), 0x1000) = 0x7f0000000000 <0.000010>",
    "8062  1795750570.876436 +++ killed by SIGSEGV (core dumped) +++",
    'prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME, 0x7f0000000000, 8192, "a \\"long\\", name"...) = 0',
    "prctl(0x53564d41 /* PR_??? */, 0, 0x7f0000000000, 8192, 0x55d000001000) = 0",
    "mremap(0x7f0000000000, 4096, 8192, MREMAP_MAYMOVE|MREMAP_FIXED, 0x7f0000100000) = "
    "0x7f0000100000",
    "madvise(0x7f0000000000, 4096, 0x66 /* MADV_??? */) = 0",
    "munmap(0x7f0000000000, 4096) = ? ERESTARTSYS (To be restarted if SA_RESTART is set)",
    "brk(0xffffffffffff)                     = 0x55d000000000",
    "--- SIGRT_2 {si_signo=SIGRT_2, si_code=SI_TKILL, si_pid=1, si_uid=0} ---",
    "--- stopped by SIGSTOP ---",
    "strace: Process 77 detached",
    " > /usr/lib/x86_64-linux-gnu/libc.so.6(__mmap+0x26) [0xf4a26]",
    " > unexpected_backtracing_error [0x7f0000001234]",
    '[pid  9400] execve("/bin/true", ["/bin/true"], 0x7ffe2e4242a8 /* 35 vars */ <pid changed to '
    "9399 ...>",
    "+++ superseded by execve in pid 9400 +++",
    "<... execve resumed>)                   = 0",
    "+++ exited with 0 +++",
]


@st.composite
def mutated_strace_logs(draw: st.DrawFn) -> str:
    lines = draw(st.lists(st.sampled_from(STRACE_LINES), min_size=1, max_size=12))
    for _ in range(draw(st.integers(0, 4))):
        i = draw(st.integers(0, len(lines) - 1))
        line = lines[i]
        how = draw(st.sampled_from(["cut", "char", "insert", "number"]))
        k = draw(st.integers(0, len(line)))
        if how == "cut":
            lines[i] = line[:k]
        elif how == "char":
            lines[i] = line[:k] + draw(st.characters(blacklist_characters="\x00")) + line[k + 1 :]
        elif how == "insert":
            lines[i] = line[:k] + draw(st.text(max_size=12)) + line[k:]
        else:
            lines[i] = line[:k] + str(draw(st.integers(-(2**70), 2**70))) + line[k:]
    return "\n".join(lines) + "\n"


@given(mutated_strace_logs() | st.text(max_size=400))
@example("mmap(NULL, 4096, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = 0x" + "f" * 400)
@example("--- SIGSEGV {si_signo=SIGSEGV} ---\n" * 3)
@example("+++ exited with " + "9" * 5000 + " +++\n")
@example("[pid " + "9" * 5000 + "] brk(NULL) = 0x1000\n")
def test_strace_log_parses_or_raises_the_one_error(text: str) -> None:
    try:
        log = parse_strace(text)
    except AlloctraceError as exc:
        assert "\n" not in str(exc)
        return
    assert isinstance(log, StraceLog)


TASK_LINES = [
    '[pid  9400] execve("/bin/true", ["/bin/true"], 0x7ffe2e4242a8 /* 35 vars */) = 0',
    "clone(child_stack=NULL, flags=CLONE_CHILD_CLEARTID|CLONE_CHILD_SETTID|SIGCHLD, "
    "child_tidptr=0x7f0000000a10) = 9401",
    "clone3({flags=CLONE_VM|CLONE_FS|CLONE_FILES|CLONE_SIGHAND|CLONE_THREAD, "
    "child_tid=0x7f0000000910, stack=0x7f0000000000, stack_size=0x7fff00}, 88) = 9402",
    "vfork() = 9403",
    "[pid  9403] +++ exited with 3 +++",
]


@given(
    st.lists(st.sampled_from(STRACE_LINES + TASK_LINES), min_size=1, max_size=12).map(
        lambda lines: "\n".join(lines) + "\n"
    )
    | mutated_strace_logs()
)
def test_strace_import_writes_a_loadable_trace_or_raises(text: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        log, out = Path(tmp) / "s.log", Path(tmp) / "t.jsonl"
        log.write_text(text, encoding="utf-8", errors="surrogatepass")
        try:
            import_strace(log, out)
        except AlloctraceError as exc:
            assert "\n" not in str(exc)
            assert not out.exists()
            return
        _check_types(read_trace(out))
