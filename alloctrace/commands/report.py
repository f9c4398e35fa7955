"""``alloctrace report``: show a recorded trace (runs no program; writes to stdout)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from alloctrace.commands import fail
from tracer.errors import AlloctraceError


def report(
    trace: Annotated[Path, typer.Argument(help="A trace written by `alloctrace record`.")],
    stacks: Annotated[
        bool,
        typer.Option("--stacks", help="Print every event with its call stack (strace -k style)."),
    ] = False,
) -> None:
    """Show a recorded trace.

    Examples:

        alloctrace report --stacks ls.jsonl
    """
    from alloctrace.api import load
    from alloctrace.reporters.stacks import report_lines

    try:
        loaded = load(trace)
        for line in report_lines(loaded, stacks=stacks):
            typer.echo(line)
    except AlloctraceError as exc:
        raise fail(str(exc)) from None
    except BrokenPipeError:  # `alloctrace report ... | head`
        sys.stderr.close()
