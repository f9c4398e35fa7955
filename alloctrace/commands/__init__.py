"""One module per subcommand; shared bits (errors, the program-argument context) live here."""

from __future__ import annotations

import typer

# Options end at the program's name: everything after it belongs to the program.
PROGRAM_CONTEXT = {"allow_interspersed_args": False, "ignore_unknown_options": True}


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print one ``alloctrace: ...`` line on stderr; raise the returned Exit."""
    typer.echo(f"alloctrace: {message}", err=True)
    return typer.Exit(code)
