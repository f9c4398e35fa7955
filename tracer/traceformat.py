"""The trace file: JSON Lines written as a stream, and read back into typed records.

The writer only ever writes whole lines, goes to a temporary file beside the target and renames
it into place when the trace ends, so an existing trace is never half-overwritten and a trace cut
short (alloctrace killed) still ends on a line boundary. See docs/trace-format.md.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import gc
import io
import json
import os
import tempfile
import time
import types
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from tracer.errors import AlloctraceError, TraceFormatError, not_built
from tracer.records import (
    FORMAT_NAME,
    FORMAT_VERSION,
    Event,
    Exec,
    Exit,
    Footer,
    Frame,
    Header,
    Mapping,
    Memory,
    Module,
    Phase,
    Record,
    Spawn,
    Stack,
    Syscall,
    field_names,
)

try:  # the reader's line scan, in C (tracer/_lines.c says why)
    from tracer import _lines
except ImportError as exc:  # an install that skipped the C build
    raise not_built("tracer/_lines.c") from exc

_RECORD_TYPES: dict[str, type[Any]] = {
    cls.KIND: cls
    for cls in (Header, Syscall, Spawn, Exec, Exit, Phase, Module, Stack, Memory, Footer)
}
# Buffered lines are written out at least this often, so a live trace can be followed.
_FLUSH_INTERVAL_NS = 200_000_000
_FLUSH_LINES = 4096


def record_to_dict(record: Record) -> dict[str, Any]:
    """The JSON object of a record: ``kind`` first, fields that are None left out."""
    out: dict[str, Any] = {"kind": record.KIND}
    for name in field_names(type(record)):
        value = getattr(record, name)
        if value is None:
            continue
        if isinstance(record, Stack) and name == "frames":
            value = [[fr.pc, fr.module, fr.how] for fr in value]
        elif isinstance(record, Memory) and name == "mappings":
            value = [dataclasses.asdict(m) for m in value]
        out[name] = value
    return out


def encode(record: Record) -> str:
    """One line of the trace file (without the newline)."""
    return json.dumps(record_to_dict(record), separators=(",", ":"))


class TraceWriteError(AlloctraceError):
    """The trace could not be written (a full disk, a read-only or vanished directory)."""


class TraceWriter:
    """Streams records to a trace file; ``close`` renames the finished file into place."""

    def __init__(self, path: str | os.PathLike[str], header: Header) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            raise TraceWriteError(f"cannot write the trace to {self.path}: it is a directory")
        # A device or a pipe (-o /dev/null, -o /dev/stdout) is written as it is: renaming a
        # file over it would replace /dev/null itself.
        self._direct = self.path.exists() and not self.path.is_file()
        try:
            if self._direct:
                fd, tmp = os.open(self.path, os.O_WRONLY | os.O_CLOEXEC), str(self.path)
            else:
                fd, tmp = tempfile.mkstemp(
                    prefix=f".{self.path.name}.", suffix=".partial", dir=self.path.parent
                )
        except OSError as exc:
            raise self._error(exc) from exc
        self._tmp = Path(tmp)
        self._fd = fd
        self._lines: list[str] = []
        self._last_flush = time.monotonic_ns()
        self._closed = False
        self.events = 0
        try:
            self.write(header)
            self.flush()
        except BaseException:
            self.abandon()
            raise

    def _error(self, exc: OSError) -> TraceWriteError:
        return TraceWriteError(f"cannot write the trace to {self.path}: {exc.strerror or exc}")

    def write(self, record: Record) -> None:
        """Queue one record."""
        self._lines.append(encode(record))
        self._maybe_flush()

    def write_line(self, line: str) -> None:
        """Queue a line already encoded by a hot path (see tracer.session)."""
        self._lines.append(line)
        self._maybe_flush()

    def _maybe_flush(self) -> None:
        lines = self._lines
        if (
            len(lines) >= _FLUSH_LINES
            or time.monotonic_ns() - self._last_flush > _FLUSH_INTERVAL_NS
        ):
            self.flush()

    def flush(self) -> None:
        """Write queued lines out, whole lines only.

        The lines are dropped from the queue before they are written: an exception raised
        in between (alloctrace interrupted) loses them rather than writing them twice; a
        line cut in half is removed by ``close``.
        """
        if not self._lines:
            return
        data = ("\n".join(self._lines) + "\n").encode()
        self._lines.clear()
        view = memoryview(data)
        try:
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
        except OSError as exc:
            raise self._error(exc) from exc
        self._last_flush = time.monotonic_ns()

    def _cut_torn_line(self) -> None:
        """End the file on a line boundary (a write interrupted halfway left part of a line)."""
        if self._direct:
            return
        size = os.lseek(self._fd, 0, os.SEEK_END)
        if size == 0 or os.pread(self._fd, 1, size - 1) == b"\n":
            return
        start = max(0, size - (1 << 20))
        tail = os.pread(self._fd, size - start, start)
        cut = tail.rfind(b"\n")
        os.ftruncate(self._fd, start + cut + 1 if cut >= 0 else start)
        os.lseek(self._fd, 0, os.SEEK_END)

    def close(self, footer: Footer) -> None:
        """Write the footer and move the finished trace to its path.

        On failure (a full disk) the unfinished file is removed and TraceWriteError raised:
        a trace already at the path stays as it was.
        """
        if self._closed:
            return
        try:
            self._cut_torn_line()
            self.write(footer)
            self.flush()
            os.close(self._fd)
            self._closed = True
            if not self._direct:
                os.replace(self._tmp, self.path)
        except OSError as exc:
            self.abandon()
            raise self._error(exc) from exc
        except BaseException:
            self.abandon()
            raise

    def abandon(self) -> None:
        """Drop the unfinished trace: nothing half-written stays, an older trace is untouched."""
        if not self._closed:
            self._closed = True
            with contextlib.suppress(OSError):
                os.close(self._fd)
        if not self._direct:
            self._tmp.unlink(missing_ok=True)

    @property
    def partial_path(self) -> Path:
        """Where the trace lives until it is closed."""
        return self._tmp


@dataclass
class TraceData:
    """A trace file read back: its header, events in order, tables, and footer if present."""

    path: str
    header: Header
    events: list[Event] = field(default_factory=list)
    modules: dict[int, Module] = field(default_factory=dict)
    stacks: dict[int, Stack] = field(default_factory=dict)
    footer: Footer | None = None

    @property
    def complete(self) -> bool:
        """True when the trace ends with its footer (the tracer finished writing it)."""
        return self.footer is not None

    def syscalls(self) -> Iterator[Syscall]:
        """The syscall events, in order."""
        return (e for e in self.events if isinstance(e, Syscall))

    def execs(self) -> list[Exec]:
        """The exec events, in order."""
        # Nearly every event is a syscall: testing for it first takes half the time.
        return [e for e in self.events if not isinstance(e, Syscall) and isinstance(e, Exec)]


# -- reading: every field's JSON type is checked, so a bad file fails here, on its line -----------

_JSON_NAMES = {
    int: "an integer",
    str: "a string",
    bool: "true or false",
    float: "a number",
    list: "a list",
    dict: "an object",
    type(None): "null",
}
_Convert = Callable[[Any], Any]


def _describe(value: object) -> str:
    return _JSON_NAMES.get(type(value), type(value).__name__)


def _scalar_types(hint: Any) -> frozenset[type] | None:
    """The exact Python types a JSON value may have for a scalar field (None: not scalar)."""
    if hint in (int, str, bool):
        return frozenset({hint})
    if isinstance(hint, types.UnionType):
        members = typing.get_args(hint)
        if all(m in (int, str, bool, type(None)) for m in members):
            return frozenset(members)
    return None


def _list_of_str(value: Any) -> list[str]:
    if type(value) is not list or not all(type(v) is str for v in value):
        raise ValueError(f"must be a list of strings, not {_describe(value)}")
    return value


def _object(value: Any) -> dict[str, Any]:
    if type(value) is not dict:
        raise ValueError(f"must be an object, not {_describe(value)}")
    return value


def _object_of_str(value: Any) -> dict[str, str]:
    if type(value) is not dict or not all(type(v) is str for v in value.values()):
        raise ValueError(f"must be an object of strings, not {_describe(value)}")
    return value


def _frames(value: Any) -> tuple[Frame, ...]:
    if type(value) is not list:
        raise ValueError(f"must be a list of frames, not {_describe(value)}")
    out = []
    for item in value:
        if (
            type(item) is not list
            or len(item) != 3
            or type(item[0]) is not int
            or not (item[1] is None or type(item[1]) is int)
            or type(item[2]) is not str
        ):
            raise ValueError(f"a frame must be [pc, module id or null, how], not {item!r:.60}")
        out.append(Frame(item[0], item[1], item[2]))
    return tuple(out)


# The type tables below are built on the first read (functools.cache): typing.get_type_hints
# costs milliseconds, and the tracer, which only writes traces, imports this module at start-up.
@functools.cache
def _mapping_types() -> dict[str, frozenset[type] | None]:
    hints = typing.get_type_hints(Mapping)
    return {f.name: _scalar_types(hints[f.name]) for f in dataclasses.fields(Mapping)}


def _mappings(value: Any) -> tuple[Mapping, ...]:
    if type(value) is not list:
        raise ValueError(f"must be a list of mappings, not {_describe(value)}")
    out = []
    types_of = _mapping_types()
    for item in value:
        if type(item) is not dict:
            raise ValueError(f"a mapping must be an object, not {_describe(item)}")
        args = {}
        for key, v in item.items():
            allowed = types_of.get(key)
            if allowed is None:
                continue  # a field added later
            if type(v) not in allowed:
                raise ValueError(f"mapping field {key!r} must not be {_describe(v)}")
            args[key] = v
        out.append(Mapping(**args))
    return tuple(out)


_COMPOSITES: dict[Any, _Convert] = {
    list[str]: _list_of_str,
    dict[str, str]: _object_of_str,
    dict[str, Any]: _object,
    tuple[Frame, ...]: _frames,
    tuple[Mapping, ...]: _mappings,
}


@functools.cache
def _field_rules(kind: str) -> tuple[dict[str, frozenset[type]], dict[str, _Convert]]:
    cls = _RECORD_TYPES[kind]
    hints = typing.get_type_hints(cls)
    scalars: dict[str, frozenset[type]] = {}
    composites: dict[str, _Convert] = {}
    for name in field_names(cls):
        allowed = _scalar_types(hints[name])
        if allowed is not None:
            scalars[name] = allowed
        else:
            composites[name] = _COMPOSITES[hints[name]]
    return scalars, composites


def _build(kind: str, obj: dict[str, Any]) -> Record:
    """The record of one JSON object; ValueError or TypeError (naming the field) when a field
    has the wrong JSON type or a required one is missing. Unknown fields are skipped."""
    scalars, composites = _field_rules(kind)
    args: dict[str, Any] = {}
    for key, value in obj.items():
        allowed = scalars.get(key)
        if allowed is not None:
            if type(value) not in allowed:
                raise ValueError(f"field {key!r} must not be {_describe(value)}")
            args[key] = value
        else:
            convert = composites.get(key)
            if convert is not None:
                try:
                    args[key] = convert(value)
                except ValueError as exc:
                    raise ValueError(f"field {key!r} {exc}") from None
    record: Record = _RECORD_TYPES[kind](**args)
    return record


def _upgrade(version: int, obj: dict[str, Any]) -> dict[str, Any]:
    """Bring a record of an older format version to the current one (none exist yet)."""
    del version
    return obj


# The file is read in chunks of about this many bytes, each completed to a line's end.
_CHUNK_BYTES = 1 << 22


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Python's cycle collector off while many objects that form no cycles are built.

    Each 700 new objects start a collection and every few of those walk all the objects alive,
    the trace's too: a quarter to a half of reading a big trace, a sixth of analyzing it
    (measured). Reference counting frees objects as usual meanwhile.

    On the way out every object is moved to the oldest generation (gc.freeze then gc.unfreeze:
    two list splices), which only full collections walk; else the first young collection
    walks each object built meanwhile, and the middle generation's again later (threadbench's
    160,000 events: 0.03 s of reading them and 0.03 s of analyzing them; measured). A cycle
    made meanwhile, or young before, waits for a full collection. Not done when the program
    froze objects of its own: unfreeze would release them.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        if not gc.get_freeze_count():
            gc.freeze()
            gc.unfreeze()
        gc.enable()


def read_trace(path: str | os.PathLike[str]) -> TraceData:
    """Read a whole trace file; raise TraceFormatError naming the line on anything malformed."""
    name = os.fspath(path)
    try:
        handle: io.BufferedReader = open(name, "rb")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise TraceFormatError(name, None, exc.strerror or str(exc)) from exc
    data: TraceData | None = None
    lineno = 0
    # One buffer, read into again and again: a new chunk per read, completed to a line's end
    # by a copy, cost 12 of the 160 ms that reading threadbench's 30 MB took (measured).
    buf = bytearray(_CHUNK_BYTES)
    kept = 0  # bytes of a line the last read cut, moved to the front
    with handle, collector_paused():
        try:
            while True:
                got = handle.readinto(memoryview(buf)[kept:])
                stop = kept + got
                if not stop:
                    break
                # whole lines; at the end of the file, a last one cut short too
                end = buf.rfind(b"\n", 0, stop) + 1 if got else stop
                if not end:  # a line longer than the buffer: make room and read on
                    buf.extend(bytes(len(buf)))
                    kept = stop
                    continue
                start = 0
                if data is None:
                    start = buf.find(b"\n", 0, end) + 1 or end
                    header = _read_header(name, _text(name, 1, buf[:start]))
                    data = TraceData(path=name, header=header)
                    lineno = 1
                lineno = _read_chunk(data, name, lineno, buf, start, end)
                if not got:
                    break
                kept = stop - end
                buf[:kept] = buf[end:stop]
        except OSError as exc:  # a directory, an I/O error
            raise TraceFormatError(name, None, exc.strerror or str(exc)) from exc
    if data is None:
        raise TraceFormatError(name, None, "empty file, not an alloctrace trace")
    return data


def _text(name: str, lineno: int, raw: bytes | bytearray) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        why = "bytes that are not UTF-8 text"
        if lineno == 1:
            why = "not a text file, so not an alloctrace trace"
        raise TraceFormatError(name, lineno, why) from exc


def _read_chunk(
    data: TraceData, name: str, lineno: int, chunk: bytearray, start: int, stop: int
) -> int:
    """Records of the lines of ``chunk[start:stop]`` (they follow line ``lineno``): runs of
    syscall lines in one go, straight from the chunk. Returns the last line's number."""
    version = data.header.version
    end = max(chunk.rfind(b"\n", start, stop) + 1, start)  # then a last line cut short, if any
    if version == FORMAT_VERSION:
        # Syscall lines are nearly every line of a big trace: where the others start, and the
        # number of each line, from one pass in C (tracer/_lines.c says what it saves).
        others, numbers, lines = _lines.scan(chunk, start, end, _SYSCALL_PREFIX)
    else:  # older versions go through _upgrade, line by line
        others = _line_starts(chunk, start, end)
        numbers, lines = list(range(len(others))), len(others)
    others.append(end)
    numbers.append(lines)
    at, line = start, 0  # the number of the line at ``at``, counted from ``start``
    for other, number in zip(others, numbers, strict=True):
        if at < other:
            lineno = _read_syscalls(data, name, lineno, chunk, at, other, number - line)
        if other == end:
            break
        at, line = chunk.find(b"\n", other) + 1, number + 1
        lineno += 1
        _read_line(data, name, lineno, _text(name, lineno, chunk[other:at]), version)
    if end < stop:  # the line-by-line path says it is cut short
        lineno += 1
        _read_line(data, name, lineno, _text(name, lineno, chunk[end:stop]), version)
    return lineno


def _line_starts(chunk: bytearray, start: int, end: int) -> list[int]:
    """Where each line of ``chunk[start:end]`` (whole lines) starts."""
    if end == start:
        return []
    out = [start]
    for line in chunk[start : end - 1].split(b"\n"):
        out.append(out[-1] + len(line) + 1)
    out.pop()  # end
    return out


# How the writer starts every syscall line (record_to_dict puts ``kind`` first, and so does the
# tracer's hand-encoded hot path).
_SYSCALL_PREFIX = b'{"kind":"syscall",'


@functools.cache
def _syscall_decoder() -> Callable[[memoryview], list[Syscall]]:
    """The syscall records of JSON lines of syscall objects, decoded by msgspec.

    Syscall is a msgspec Struct: msgspec checks every JSON type as strictly as _build (no float
    or bool for an int), ignores unknown fields, takes the last of repeated keys and rejects a
    ``kind`` other than "syscall", so what it accepts reads as on the checking path.
    """
    return msgspec.json.Decoder(Syscall).decode_lines


def _read_syscalls(
    data: TraceData, name: str, lineno: int, chunk: bytearray, start: int, end: int, lines: int
) -> int:
    """Syscall records of the ``lines`` lines of ``chunk[start:end]`` (following line
    ``lineno``), decoded with one msgspec call; line by line on the checking path when that
    fails, for the error or for the odd line that only the checking path takes (a lone surrogate
    in a path). Returns the last line's number."""
    if data.footer is not None:
        raise TraceFormatError(name, lineno + 1, "records after the footer")
    try:
        calls = _syscall_decoder()(memoryview(chunk)[start:end])
    except (ValueError, RecursionError):  # msgspec.DecodeError and UnicodeDecodeError too
        calls = None
    if calls is not None and len(calls) == lines:  # each line held one object
        data.events.extend(calls)
        return lineno + lines
    for raw in chunk[start : end - 1].split(b"\n"):
        lineno += 1
        _read_line(data, name, lineno, _text(name, lineno, raw + b"\n"), data.header.version)
    return lineno


def _read_header(name: str, line: str) -> Header:
    try:
        obj = json.loads(line)
    except (ValueError, RecursionError) as exc:
        raise TraceFormatError(name, 1, "not an alloctrace trace (first line is not JSON)") from exc
    if not isinstance(obj, dict) or obj.get("kind") != "header" or obj.get("format") != FORMAT_NAME:
        raise TraceFormatError(name, 1, "not an alloctrace trace (first line is not its header)")
    version = obj.get("version")
    if type(version) is not int or version < 1:
        raise TraceFormatError(name, 1, f"header has an invalid format version {version!r}")
    if version > FORMAT_VERSION:
        raise TraceFormatError(
            name,
            1,
            f"trace format version {version} is newer than this alloctrace reads "
            f"(up to {FORMAT_VERSION}): upgrade alloctrace",
        )
    try:
        header = _build("header", _upgrade(version, obj))
    except (TypeError, ValueError) as exc:
        raise TraceFormatError(name, 1, f"malformed header: {exc}") from exc
    assert isinstance(header, Header)
    return header


def _read_line(data: TraceData, name: str, lineno: int, line: str, version: int) -> None:
    if not line.endswith("\n"):
        raise TraceFormatError(name, lineno, "line is cut short (the file was truncated)")
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise TraceFormatError(name, lineno, f"not valid JSON ({exc.msg})") from exc
    except (ValueError, RecursionError) as exc:  # a 5,000-digit number, nesting too deep
        raise TraceFormatError(name, lineno, f"not valid JSON ({exc})") from exc
    _add_record(data, name, lineno, obj, version)


def _add_record(data: TraceData, name: str, lineno: int, obj: Any, version: int) -> None:
    if data.footer is not None:
        raise TraceFormatError(name, lineno, "records after the footer")
    if not isinstance(obj, dict):
        raise TraceFormatError(name, lineno, "a record must be a JSON object")
    kind = obj.get("kind")
    if not isinstance(kind, str) or kind == "header":
        raise TraceFormatError(name, lineno, f"unexpected record kind {kind!r:.40}")
    if kind not in _RECORD_TYPES:
        return  # a record kind added by a newer writer: old readers skip it
    try:
        record = _build(kind, _upgrade(version, obj))
    except (TypeError, ValueError, KeyError) as exc:
        raise TraceFormatError(name, lineno, f"malformed {kind} record: {exc}") from exc
    if isinstance(record, Module):
        data.modules[record.id] = record
    elif isinstance(record, Stack):
        data.stacks[record.id] = record
    elif isinstance(record, Footer):
        data.footer = record
    else:
        assert not isinstance(record, Header)
        data.events.append(record)
