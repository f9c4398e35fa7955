"""Writing a trace's analyzed events as CSV, JSON Lines or Parquet (``alloctrace export``).

CSV and JSON Lines need no pandas: they are written from ``Trace.event_columns()``. Parquet goes
through the ``events`` DataFrame and pyarrow. Every format has the columns of
``alloctrace.api.EVENT_COLUMNS``, in that order.
"""

from __future__ import annotations

import csv
import json
import os
from typing import TYPE_CHECKING, TextIO

from tracer.errors import AlloctraceError

if TYPE_CHECKING:
    from alloctrace.api import Trace

FORMATS = ("parquet", "csv", "jsonl")


def format_of(path: str | os.PathLike[str] | None, given: str | None) -> str:
    """The export format: the one given, else the output's extension, else jsonl."""
    if given is not None:
        name = given.lower()
        if name not in FORMATS:
            raise AlloctraceError(f"unknown format {given!r} (choose {', '.join(FORMATS)})")
        return name
    if path is None:
        return "jsonl"
    suffix = os.path.splitext(os.fspath(path))[1].lower().lstrip(".")
    aliases = {"pq": "parquet", "json": "jsonl", "ndjson": "jsonl"}
    name = aliases.get(suffix, suffix)
    if name not in FORMATS:
        raise AlloctraceError(
            f"{os.fspath(path)}: cannot tell the format from the extension (use --format)"
        )
    return name


def write_jsonl(trace: Trace, out: TextIO) -> int:
    """One JSON object per syscall, every column present (null where it does not apply)."""
    count = 0
    dumps = json.dumps
    for row in trace.event_rows():
        out.write(dumps(row, separators=(",", ":")) + "\n")
        count += 1
    return count


def write_csv(trace: Trace, out: TextIO) -> int:
    """A header row, then one row per syscall; empty cells where a value does not apply."""
    columns = trace.event_columns()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(list(columns))
    count = 0
    for values in zip(*columns.values(), strict=True):
        writer.writerow(["" if v is None else v for v in values])
        count += 1
    return count


def export(trace: Trace, fmt: str, path: str | os.PathLike[str]) -> None:
    """Write ``trace``'s events to ``path`` in ``fmt`` (parquet, csv or jsonl)."""
    if fmt == "parquet":
        trace.to_parquet(path)
        return
    try:
        with open(os.fspath(path), "w", encoding="utf-8", newline="") as handle:
            (write_csv if fmt == "csv" else write_jsonl)(trace, handle)
    except OSError as exc:
        raise AlloctraceError(f"cannot write {os.fspath(path)}: {exc.strerror}") from exc
