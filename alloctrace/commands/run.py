"""``alloctrace [OPTIONS] [--] PROG ARGS...`` (the default command): record, then report.

The trace is kept (``-o``; its path is printed). The report goes to stderr, as strace's output
does, so it never mixes with the program's stdout; ``--report FILE`` writes it to a file.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from alloctrace.collector import imports_frozen
from alloctrace.commands import (
    ColorMode,
    ColorOption,
    QuietOption,
    RulesOption,
    fail,
    report_color,
    ruleset,
)
from alloctrace.commands.allocators import AllocatorOption, check_allocator, environment
from alloctrace.commands.record import PidOption, trace_or_attach
from alloctrace.reporters import Format
from tracer.errors import AlloctraceError

if TYPE_CHECKING:
    from analyzers.rules import RuleSet
    from analyzers.summarize import Summary

FormatOption = Annotated[
    Format,
    typer.Option("--format", "-f", help="How to write the report.", case_sensitive=False),
]
ReportOption = Annotated[
    Path | None,
    typer.Option("--report", metavar="FILE", help="Write the report to FILE."),
]


def summary_of(trace: str | os.PathLike[str], rules: RuleSet | None = None) -> Summary:
    """Read, analyze (with ``rules``, else the defaults) and summarize a trace file."""
    from analyzers.analysis import analyze
    from analyzers.summarize import summarize
    from tracer.traceformat import read_trace

    return summarize(analyze(read_trace(trace), rules))


def emit(text: str, report: Path | None, to_stderr: bool) -> None:
    """Write a rendered report to ``report``, else to stderr or stdout."""
    if report is not None:
        try:
            report.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise fail(f"cannot write the report to {report}: {exc.strerror}") from None
        return
    stream = sys.stderr if to_stderr else sys.stdout
    try:
        stream.write(text)
        stream.flush()
    except BrokenPipeError:  # `alloctrace report ... | head`
        sys.stderr.close()


def run(
    command: Annotated[
        list[str] | None, typer.Argument(help="The program and its arguments.")
    ] = None,
    output: Annotated[
        Path, typer.Option("-o", "--output", help="Where to keep the trace (JSON Lines).")
    ] = Path("alloctrace.jsonl"),
    fmt: FormatOption = Format.TEXT,
    report: ReportOption = None,
    allocator: AllocatorOption = None,
    no_stacks: Annotated[
        bool, typer.Option("--no-stacks", help="Do not record call stacks (faster, coarser).")
    ] = False,
    pid: PidOption = None,
    color: ColorOption = ColorMode.AUTO,
    quiet: QuietOption = False,
    rules: RulesOption = None,
) -> None:
    """Trace a program and report who made its memory syscalls.

    `alloctrace PROG ARGS...` is `alloctrace run PROG ARGS...` (the default command). The
    report goes to standard error, like strace's, so it never mixes with the program's output;
    the trace is kept (-o). A program named like a subcommand is reachable after `--`.

    Examples:

    \b
        # The seed fixture: the report on stderr, the trace in alloctrace.jsonl
        alloctrace fixtures/build/seed
        # Under jemalloc, the report as markdown in a file
        alloctrace --allocator jemalloc --format markdown --report seed.md \\
            -- fixtures/build/seed
        # Everything after the program's name is the program's
        alloctrace --no-stacks -o ls.jsonl -- ls -l fixtures
    """
    with imports_frozen():
        from alloctrace.reporters import reporter
        from alloctrace.status import live_status
        from tracer.recording import record as record_program
        from tracer.session import TraceOptions

    chosen = check_allocator(allocator)
    env = environment(chosen, dict(os.environ))
    options = TraceOptions(stacks=not no_stacks)
    if pid is not None or not command:  # --pid: attach, as `record --pid` does
        if chosen is not None:
            raise fail("--allocator applies to a program alloctrace starts, not to --pid")
        outcome = trace_or_attach(command or [], pid, output, options, quiet)
    else:
        try:
            outcome = record_program(
                command,
                output,
                options,
                env=env,
                allocator=chosen.name if chosen else None,
                watch=live_status(not quiet),
            )
        except AlloctraceError as exc:
            raise fail(str(exc)) from None
        typer.echo(f"alloctrace: trace written to {output}", err=True)
    try:
        colored = report_color(color, report, to_stderr=True)
        text = reporter(fmt, colored).render_report(summary_of(output, ruleset(rules)))
    except AlloctraceError as exc:
        raise fail(str(exc)) from None
    emit(text, report, to_stderr=True)
    raise typer.Exit(outcome.exit_code)
