"""``alloctrace report``: show a recorded trace (runs no program; writes to stdout)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from alloctrace.commands import fail
from alloctrace.commands.run import FormatOption, ReportOption, emit, summary_of
from alloctrace.reporters import Format
from tracer.errors import AlloctraceError


def report(
    trace: Annotated[Path, typer.Argument(help="A trace written by `alloctrace record`.")],
    stacks: Annotated[
        bool,
        typer.Option("--stacks", help="Print every event with its call stack (strace -k style)."),
    ] = False,
    fmt: FormatOption = Format.TEXT,
    output: ReportOption = None,
) -> None:
    """Report a recorded trace: who made each memory syscall, and what it cost.

    Examples:

        alloctrace report ls.jsonl

        alloctrace report --format json ls.jsonl

        alloctrace report --stacks ls.jsonl
    """
    if stacks:
        _stacks(trace)
        return
    from alloctrace.reporters import reporter

    try:
        text = reporter(fmt).render_report(summary_of(trace))
    except AlloctraceError as exc:
        raise fail(str(exc)) from None
    emit(text, output, to_stderr=False)


def _stacks(trace: Path) -> None:
    from alloctrace.api import load
    from alloctrace.reporters.stacks import report_lines

    try:
        loaded = load(trace)
        for line in report_lines(loaded, stacks=True):
            typer.echo(line)
    except AlloctraceError as exc:
        raise fail(str(exc)) from None
    except BrokenPipeError:  # `alloctrace report ... | head`
        sys.stderr.close()
