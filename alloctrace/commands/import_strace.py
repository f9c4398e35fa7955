"""``alloctrace import-strace``: turn an strace text log into a trace file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from alloctrace.commands import fail
from tracer.errors import AlloctraceError


def import_strace(
    log: Annotated[
        Path,
        typer.Argument(help="What strace wrote (-o LOG), with or without -f, -tt, -T, -y, -k."),
    ],
    output: Annotated[Path, typer.Option("-o", "--output", help="The trace file to write.")],
    program: Annotated[
        str | None,
        typer.Option("--program", help="The traced executable, when the log has no execve."),
    ] = None,
    strict: Annotated[
        bool, typer.Option("--strict", help="Exit with status 1 if a line was not understood.")
    ] = False,
) -> None:
    """Convert an strace log into a trace file.

    The trace is one that report, diff, export and plot read, like those alloctrace records.

    Memory syscalls are kept (classified by stack with -k, else by their arguments); other
    calls are counted; every line that is not understood is reported.

    Examples:

    \b
        strace -f -k -y -o seed.log \\
            -e trace=mmap,munmap,brk,mprotect,mremap,madvise fixtures/build/seed
        alloctrace import-strace seed.log -o seed-strace.jsonl
        alloctrace report seed-strace.jsonl
    """
    from tracer.strace_import import import_strace as convert

    try:
        result = convert(log, output, program=program)
    except AlloctraceError as exc:
        raise fail(str(exc)) from None
    for line in result.lines():
        typer.echo(f"alloctrace: {line}", err=True)
    if strict and result.unparsed:
        raise typer.Exit(1)
