"""``alloctrace report``: show a recorded trace (runs no program; writes to stdout)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from alloctrace.commands import ColorMode, ColorOption, RulesOption, fail, report_color, ruleset
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
    color: ColorOption = ColorMode.AUTO,
    rules: RulesOption = None,
) -> None:
    """Explain a recorded trace: who made each memory syscall.

    Runs no program: reads the trace and writes to stdout (or --report FILE) what each call
    cost (reserved, committed, resident) and why it was made. --stacks lists every call instead.

    Examples:

    \b
        alloctrace report seed.jsonl
        # As JSON (schema: alloctrace/reporters/report.schema.json)
        alloctrace report --format json seed.jsonl
        # Every call with its named call stack, like strace -k
        alloctrace report --stacks seed.jsonl
    """
    if stacks:
        _stacks(trace)
        return
    from alloctrace.reporters import reporter

    try:
        text = reporter(fmt, report_color(color, output, to_stderr=False)).render_report(
            summary_of(trace, ruleset(rules))
        )
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
