"""``alloctrace record``: run a program and write its trace."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from alloctrace.commands import fail
from tracer.errors import AlloctraceError
from tracer.recording import record as record_program
from tracer.session import TraceOptions


def record(
    command: Annotated[list[str], typer.Argument(help="The program and its arguments.")],
    output: Annotated[
        Path, typer.Option("-o", "--output", help="Where to write the trace (JSON Lines).")
    ] = Path("alloctrace.jsonl"),
    no_stacks: Annotated[
        bool, typer.Option("--no-stacks", help="Do not record call stacks (faster).")
    ] = False,
    stack_depth: Annotated[
        int, typer.Option("--stack-depth", min=1, max=512, help="Frames to unwind per call.")
    ] = 64,
) -> None:
    """Run a program and record its memory syscalls into a trace file.

    Examples:

        alloctrace record -o ls.jsonl -- ls -l

        alloctrace record --no-stacks -o py.jsonl python3 -c "import json"
    """
    options = TraceOptions(stacks=not no_stacks, stack_depth=stack_depth)
    try:
        outcome = record_program(command, output, options)
    except AlloctraceError as exc:
        raise fail(str(exc)) from None
    typer.echo(f"alloctrace: trace written to {output}", err=True)
    raise typer.Exit(outcome.exit_code)
