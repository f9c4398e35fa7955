"""``alloctrace record``: run a program (or attach to a running one) and write its trace."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from alloctrace.collector import imports_frozen
from alloctrace.commands import QuietOption, fail
from tracer.errors import AlloctraceError

if TYPE_CHECKING:
    from tracer.session import Outcome, TraceOptions

PidOption = Annotated[
    int | None,
    typer.Option(
        "--pid",
        "-p",
        metavar="PID",
        help="Attach to the running process PID (all its threads) instead of starting a "
        "program; Ctrl-C detaches and leaves it running.",
    ),
]


def record(
    command: Annotated[
        list[str] | None, typer.Argument(help="The program and its arguments.")
    ] = None,
    output: Annotated[
        Path, typer.Option("-o", "--output", help="Where to write the trace (JSON Lines).")
    ] = Path("alloctrace.jsonl"),
    no_stacks: Annotated[
        bool, typer.Option("--no-stacks", help="Do not record call stacks (faster).")
    ] = False,
    stack_depth: Annotated[
        int, typer.Option("--stack-depth", min=1, max=512, help="Frames to unwind per call.")
    ] = 64,
    pid: PidOption = None,
    quiet: QuietOption = False,
) -> None:
    """Trace a program (or attach to one) into a trace file.

    Records only: `alloctrace report` explains the trace afterwards. The program's output is
    untouched; one line on stderr says where the trace went.

    Examples:

    \b
        alloctrace record -o seed.jsonl -- fixtures/build/seed
        # Without call stacks: faster, classified by the calls' arguments only
        alloctrace record --no-stacks -o py.jsonl -- python3 -c "import json"
        # Attach to a running process; Ctrl-C detaches and leaves it running
        fixtures/build/longrun 3 & alloctrace record --pid $! -o longrun.jsonl
    """
    with imports_frozen():  # the tracer loads when a command needs it
        from tracer.session import TraceOptions

    options = TraceOptions(stacks=not no_stacks, stack_depth=stack_depth)
    outcome = trace_or_attach(command or [], pid, output, options, quiet)
    raise typer.Exit(outcome.exit_code)


def trace_or_attach(
    command: list[str], pid: int | None, output: Path, options: TraceOptions, quiet: bool
) -> Outcome:
    """Record ``command``, or attach to ``pid``; one ``alloctrace:`` line says how it ended."""
    if pid is not None and command:
        raise fail("give a program to run or --pid PID to attach to, not both")
    if pid is None and not command:
        raise fail("no program given to trace (give one, or --pid PID to attach to a process)")
    with imports_frozen():
        from alloctrace.status import live_status
        from tracer.recording import attach as attach_process
        from tracer.recording import record as record_program

    try:
        watch = live_status(not quiet)
        if pid is not None:
            outcome = attach_process(pid, output, options, watch=watch)
        else:
            outcome = record_program(command, output, options, watch=watch)
    except AlloctraceError as exc:
        raise fail(str(exc)) from None
    footer = outcome.footer
    if footer.outcome in ("interrupted", "detached") and footer.message:
        typer.echo(f"alloctrace: {footer.message}", err=True)
    typer.echo(f"alloctrace: trace written to {output}", err=True)
    return outcome
