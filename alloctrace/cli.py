"""The ``alloctrace`` command line (typer): one module per subcommand in alloctrace/commands/."""

from __future__ import annotations

import sys

import typer

from alloctrace.commands import PROGRAM_CONTEXT
from alloctrace.commands.record import record
from alloctrace.commands.report import report
from tracer.errors import AlloctraceError

app = typer.Typer(
    name="alloctrace",
    help="Trace a program's memory system calls (mmap, munmap, brk, mprotect, mremap, madvise) "
    "and explain who made them.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


@app.callback()
def _root() -> None:
    """Trace a program's memory syscalls and explain who made them."""


# A new subcommand is one module in alloctrace/commands/ and one line here.
app.command(context_settings=PROGRAM_CONTEXT)(record)
app.command()(report)


def main() -> None:
    """Entry point of the ``alloctrace`` console script."""
    try:
        app()
    except AlloctraceError as exc:
        print(f"alloctrace: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
