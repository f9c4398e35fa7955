"""The ``alloctrace`` command line (typer): one module per subcommand in alloctrace/commands/."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from alloctrace import __version__
from alloctrace.commands import PROGRAM_CONTEXT
from alloctrace.commands.allocators import allocators
from alloctrace.commands.diff import diff
from alloctrace.commands.export import export
from alloctrace.commands.import_strace import import_strace
from alloctrace.commands.plot import plot
from alloctrace.commands.record import record
from alloctrace.commands.report import report
from alloctrace.commands.run import run
from tracer.errors import AlloctraceError

# click's base error class, reached through typer (recent typer vendors its own click).
_CLICK_ERROR: type[Exception] = next(
    c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException"
)


class _RunByDefault(TyperGroup):
    """``alloctrace ./prog`` is ``alloctrace run ./prog``: a first word that is neither a
    subcommand nor an option of alloctrace itself starts the default command, and so does ``--``
    (``alloctrace -- record`` runs a program named ``record``). A bad argument is one line
    ``alloctrace: ...`` on stderr and exit status 2, like every other error.
    """

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, windows_expand_args, **extra)
        try:
            code = super().main(args, prog_name, complete_var, False, windows_expand_args, **extra)
        except _CLICK_ERROR as exc:
            message = exc.format_message()  # type: ignore[attr-defined]
            if type(exc).__name__ == "NoArgsIsHelpError":  # bare `alloctrace`: the help
                typer.echo(message, err=True)
            else:
                typer.echo(f"alloctrace: {' '.join(message.split())}", err=True)
            sys.exit(getattr(exc, "exit_code", 2))
        except typer.Abort:
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:  # click's Context
        if args and args[0] not in self.commands and self._starts_run(args[0]):
            args = ["run", *args]
        return super().parse_args(ctx, args)

    def _starts_run(self, word: str) -> bool:
        """A program name, ``--``, or an option of ``run`` (``alloctrace -o t.jsonl ./prog``)."""
        if word == "--" or not word.startswith("-"):
            return True
        name = word.split("=", 1)[0]
        run_command = self.commands.get("run")
        params = run_command.params if run_command is not None else []
        return any(name in p.opts or name in p.secondary_opts for p in params)


HELP = """Trace a program's memory syscalls and explain who made them.

The memory system calls are mmap, munmap, brk, mprotect, mremap and madvise.
`alloctrace [OPTIONS] [--] PROG ARGS...` records and reports in one go (it is `alloctrace run`:
see `alloctrace run --help`); the commands below do one step each. `alloctrace COMMAND --help`
says more, with examples. Docs: docs/how-it-works.md, docs/reading-the-report.md, docs/faq.md.

Examples:

\b
    # Trace the seed fixture: the report goes to stderr, the trace to alloctrace.jsonl
    alloctrace fixtures/build/seed
    # Report that trace again, on stdout
    alloctrace report alloctrace.jsonl
    # The same program under glibc's malloc and under jemalloc, side by side
    alloctrace diff --allocator glibc --allocator jemalloc -- fixtures/build/seed
"""

app = typer.Typer(
    name="alloctrace",
    help=HELP,
    no_args_is_help=True,
    cls=_RunByDefault,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"alloctrace {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            "-V",
            callback=_print_version,
            is_eager=True,
            help="Print alloctrace's version and exit.",
        ),
    ] = False,
) -> None:
    """The options of alloctrace itself (the help is HELP)."""


# A new subcommand is one module in alloctrace/commands/ and one line here.
app.command(context_settings=PROGRAM_CONTEXT)(run)
app.command(context_settings=PROGRAM_CONTEXT)(record)
app.command()(report)
app.command(context_settings=PROGRAM_CONTEXT)(diff)
app.command()(allocators)
app.command()(export)
app.command()(plot)
app.command("import-strace")(import_strace)


def main() -> None:
    """Entry point of the ``alloctrace`` console script."""
    try:
        app()
    except AlloctraceError as exc:
        print(f"alloctrace: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
