"""The ``alloctrace`` command line (typer): each command is a few lines over the library."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from tracer.errors import AlloctraceError
from tracer.recording import record as record_program
from tracer.session import TraceOptions

app = typer.Typer(
    name="alloctrace",
    help="Trace a program's memory system calls (mmap, munmap, brk, mprotect, mremap, madvise) "
    "and explain who made them.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

# Options end at the program's name: everything after it belongs to the program.
_PROGRAM_CONTEXT = {"allow_interspersed_args": False, "ignore_unknown_options": True}


@app.callback()
def _root() -> None:
    """Trace a program's memory syscalls and explain who made them."""


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"alloctrace: {message}", err=True)
    return typer.Exit(code)


@app.command(context_settings=_PROGRAM_CONTEXT)
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
        raise _fail(str(exc)) from None
    typer.echo(f"alloctrace: trace written to {output}", err=True)
    raise typer.Exit(outcome.exit_code)


@app.command()
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
        raise _fail(str(exc)) from None
    except BrokenPipeError:  # `alloctrace report ... | head`
        sys.stderr.close()


def main() -> None:
    """Entry point of the ``alloctrace`` console script."""
    try:
        app()
    except AlloctraceError as exc:
        print(f"alloctrace: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
