"""The trace file: JSON Lines written as a stream, and read back into typed records.

The writer only ever writes whole lines, goes to a temporary file beside the target and renames
it into place when the trace ends, so an existing trace is never half-overwritten and a trace cut
short (alloctrace killed) still ends on a line boundary. See docs/trace-format.md.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from tracer.errors import AlloctraceError, TraceFormatError
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
)

_RECORD_TYPES: dict[str, type[Any]] = {
    cls.KIND: cls
    for cls in (Header, Syscall, Spawn, Exec, Exit, Phase, Module, Stack, Memory, Footer)
}
_FIELDS: dict[str, frozenset[str]] = {
    kind: frozenset(f.name for f in dataclasses.fields(cls)) for kind, cls in _RECORD_TYPES.items()
}
# Buffered lines are written out at least this often, so a live trace can be followed.
_FLUSH_INTERVAL_NS = 200_000_000
_FLUSH_LINES = 4096


def record_to_dict(record: Record) -> dict[str, Any]:
    """The JSON object of a record: ``kind`` first, fields that are None left out."""
    out: dict[str, Any] = {"kind": record.KIND}
    for f in dataclasses.fields(record):
        value = getattr(record, f.name)
        if value is None:
            continue
        if isinstance(record, Stack) and f.name == "frames":
            value = [[fr.pc, fr.module, fr.how] for fr in value]
        elif isinstance(record, Memory) and f.name == "mappings":
            value = [dataclasses.asdict(m) for m in value]
        out[f.name] = value
    return out


def encode(record: Record) -> str:
    """One line of the trace file (without the newline)."""
    return json.dumps(record_to_dict(record), separators=(",", ":"))


class TraceWriter:
    """Streams records to a trace file; ``close`` renames the finished file into place."""

    def __init__(self, path: str | os.PathLike[str], header: Header) -> None:
        self.path = Path(path)
        directory = self.path.parent
        try:
            fd, tmp = tempfile.mkstemp(
                prefix=f".{self.path.name}.", suffix=".partial", dir=directory
            )
        except OSError as exc:
            raise AlloctraceError(f"cannot write the trace to {self.path}: {exc.strerror}") from exc
        self._tmp = Path(tmp)
        self._fd = fd
        self._lines: list[str] = []
        self._last_flush = time.monotonic_ns()
        self._closed = False
        self.events = 0
        self.write(header)
        self.flush()

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
        """Write queued lines out, whole lines only."""
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
            raise AlloctraceError(f"cannot write the trace to {self.path}: {exc.strerror}") from exc
        self._last_flush = time.monotonic_ns()

    def close(self, footer: Footer) -> None:
        """Write the footer and move the finished trace to its path."""
        if self._closed:
            return
        self.write(footer)
        self.flush()
        os.close(self._fd)
        self._closed = True
        os.replace(self._tmp, self.path)

    def abandon(self) -> None:
        """Drop the unfinished trace (the program never started): nothing half-written stays."""
        if not self._closed:
            os.close(self._fd)
            self._closed = True
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


def _build(kind: str, obj: dict[str, Any]) -> Record:
    cls = _RECORD_TYPES[kind]
    known = _FIELDS[kind]
    args = {k: v for k, v in obj.items() if k in known}
    if kind == "stack":
        args["frames"] = tuple(Frame(int(pc), mod, str(how)) for pc, mod, how in args["frames"])
    elif kind == "memory":
        args["mappings"] = tuple(Mapping(**m) for m in args["mappings"])
    record: Record = cls(**args)
    return record


def _upgrade(version: int, obj: dict[str, Any]) -> dict[str, Any]:
    """Bring a record of an older format version to the current one (none exist yet)."""
    del version
    return obj


def read_trace(path: str | os.PathLike[str]) -> TraceData:
    """Read a whole trace file; raise TraceFormatError naming the line on anything malformed."""
    name = os.fspath(path)
    try:
        handle: TextIO = open(name, encoding="utf-8")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise TraceFormatError(name, None, exc.strerror or str(exc)) from exc
    with handle:
        try:
            first = handle.readline()
        except UnicodeDecodeError as exc:
            raise TraceFormatError(name, 1, "not a text file, so not an alloctrace trace") from exc
        if not first:
            raise TraceFormatError(name, None, "empty file, not an alloctrace trace")
        header = _read_header(name, first)
        data = TraceData(path=name, header=header)
        lineno = 1
        try:
            for lineno, line in enumerate(handle, start=2):
                _read_line(data, name, lineno, line, header.version)
        except UnicodeDecodeError as exc:
            raise TraceFormatError(name, lineno + 1, "bytes that are not UTF-8 text") from exc
    return data


def _read_header(name: str, line: str) -> Header:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise TraceFormatError(name, 1, "not an alloctrace trace (first line is not JSON)") from exc
    if not isinstance(obj, dict) or obj.get("kind") != "header" or obj.get("format") != FORMAT_NAME:
        raise TraceFormatError(name, 1, "not an alloctrace trace (first line is not its header)")
    version = obj.get("version")
    if not isinstance(version, int) or version < 1:
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
    if data.footer is not None:
        raise TraceFormatError(name, lineno, "records after the footer")
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise TraceFormatError(name, lineno, f"not valid JSON ({exc.msg})") from exc
    if not isinstance(obj, dict):
        raise TraceFormatError(name, lineno, "a record must be a JSON object")
    kind = obj.get("kind")
    if kind not in _RECORD_TYPES or kind == "header":
        if isinstance(kind, str) and kind != "header":
            return  # a record kind added by a newer writer: old readers skip it
        raise TraceFormatError(name, lineno, f"unexpected record kind {kind!r}")
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
