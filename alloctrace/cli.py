"""The ``alloctrace`` command line (typer): one module per subcommand in alloctrace/commands/."""

from __future__ import annotations

import gc

from alloctrace.collector import freeze_and_resume, pause

# Off while typer and the CLI are imported, until the end of this module (alloctrace/collector.py).
_COLLECTING = pause()

import importlib
import sys
from collections.abc import Iterator, MutableMapping, Sequence
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from alloctrace import __version__
from alloctrace.commands import PROGRAM_CONTEXT
from tracer.errors import AlloctraceError

# click's base error class, reached through typer (recent typer vendors its own click).
_CLICK_ERROR: type[Exception] = next(
    c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException"
)


# A new subcommand is one module in alloctrace/commands/ and one line here: its name, then the
# module and function that implement it, then its context settings.
SUBCOMMANDS: dict[str, tuple[str, str, dict[str, Any] | None]] = {
    "run": ("alloctrace.commands.run", "run", PROGRAM_CONTEXT),
    "record": ("alloctrace.commands.record", "record", PROGRAM_CONTEXT),
    "report": ("alloctrace.commands.report", "report", None),
    "diff": ("alloctrace.commands.diff", "diff", PROGRAM_CONTEXT),
    "allocators": ("alloctrace.commands.allocators", "allocators", None),
    "export": ("alloctrace.commands.export", "export", None),
    "plot": ("alloctrace.commands.plot", "plot", None),
    "import-strace": ("alloctrace.commands.import_strace", "import_strace", None),
}


def _subcommand(name: str) -> Any:  # click's Command
    """The click command of subcommand ``name``, built by typer from its function."""
    module, function, context_settings = SUBCOMMANDS[name]
    single = typer.Typer(
        add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None
    )
    single.command(name, context_settings=context_settings)(
        getattr(importlib.import_module(module), function)
    )
    return typer.main.get_command(single)


class _LazyCommands(MutableMapping[str, Any]):
    """The subcommands by name, each loaded and built by typer when first looked up.

    typer builds every registered command's click command at each start (signature, type
    hints, parameters: 1.5-3 ms each, 15 ms for all eight, measured) and the commands import
    their modules (diff: ctypes, tempfile); a run needs one of them. The names are known
    without building: ``--help`` and shell completion build what they list.
    """

    def __init__(self, built: MutableMapping[str, Any]) -> None:
        self._built = dict(built)
        self._names = [*SUBCOMMANDS, *(n for n in built if n not in SUBCOMMANDS)]

    def __getitem__(self, name: str) -> Any:
        if name not in self._names:
            raise KeyError(name)
        if name not in self._built:
            self._built[name] = _subcommand(name)
        return self._built[name]

    def __setitem__(self, name: str, command: Any) -> None:
        if name not in self._names:
            self._names.append(name)
        self._built[name] = command

    def __delitem__(self, name: str) -> None:
        if name not in self._names:
            raise KeyError(name)
        self._names.remove(name)
        self._built.pop(name, None)

    def __contains__(self, name: object) -> bool:
        return name in self._names

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._names))

    def __len__(self) -> int:
        return len(self._names)


class _RunByDefault(TyperGroup):
    """``alloctrace ./prog`` is ``alloctrace run ./prog``: a first word that is neither a
    subcommand nor an option of alloctrace itself starts the default command, and so does ``--``
    (``alloctrace -- record`` runs a program named ``record``). A bad argument is one line
    ``alloctrace: ...`` on stderr and exit status 2, like every other error.
    """

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        self.commands = _LazyCommands(self.commands)

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


def main() -> None:
    """Entry point of the ``alloctrace`` console script."""
    try:
        app()
    except AlloctraceError as exc:
        print(f"alloctrace: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
    finally:
        # The process ends here. The interpreter's exit runs full collections that walk every
        # object still alive (the modules' above all: 9 ms after a record, measured) to find
        # unreachable cycles, which the exit frees anyway; frozen objects are not walked.
        gc.freeze()


freeze_and_resume(_COLLECTING)
