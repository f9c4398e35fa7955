"""``alloctrace export``: a trace's analyzed events as Parquet, CSV or JSON Lines."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from alloctrace.commands import RulesOption, fail
from tracer.errors import AlloctraceError


def export(
    trace: Annotated[
        Path, typer.Argument(help="A trace file (from record or run, or import-strace).")
    ],
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format",
            "-f",
            metavar="parquet|csv|jsonl",
            help="Output format (default: from the output's extension, else jsonl).",
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option("-o", "--output", help="Where to write (default: stdout; not for parquet)."),
    ] = None,
    rules: RulesOption = None,
) -> None:
    """Write a trace's calls as Parquet, CSV or JSON Lines rows.

    Each row has the call's classification (category, owner, role, phase...); the columns are
    those of the notebook API's Trace.events (docs/notebooks.md).

    Examples:

    \b
        alloctrace export seed.jsonl --format parquet -o seed.parquet
        alloctrace export seed.jsonl -o seed.csv
        # JSON Lines on stdout: the allocator's calls
        alloctrace export seed.jsonl | grep '"category":"allocator"'
    """
    from alloctrace.api import load
    from alloctrace.export import export as write
    from alloctrace.export import format_of, write_csv, write_jsonl

    try:
        kind = format_of(output, fmt)
        if output is None and kind == "parquet":
            raise AlloctraceError("--format parquet writes a file: give it with -o FILE")
        loaded = load(trace, rules or None)
        if output is None:
            (write_csv if kind == "csv" else write_jsonl)(loaded, sys.stdout)
            sys.stdout.flush()
        else:
            write(loaded, kind, output)
    except AlloctraceError as exc:
        raise fail(str(exc)) from None
    except BrokenPipeError:  # `alloctrace export ... | head`
        sys.stderr.close()
