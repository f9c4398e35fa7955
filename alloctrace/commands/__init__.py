"""One module per subcommand; shared bits (errors, the program-argument context, ``--color``)
live here."""

from __future__ import annotations

import enum
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TextIO

import typer

if TYPE_CHECKING:
    from analyzers.rules import RuleSet

# Options end at the program's name: everything after it belongs to the program.
PROGRAM_CONTEXT = {"allow_interspersed_args": False, "ignore_unknown_options": True}


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print one ``alloctrace: ...`` line on stderr; raise the returned Exit."""
    typer.echo(f"alloctrace: {message}", err=True)
    return typer.Exit(code)


class ColorMode(enum.StrEnum):
    """The choices of ``--color``."""

    AUTO = "auto"
    ALWAYS = "always"
    NEVER = "never"


ColorOption = Annotated[
    ColorMode,
    typer.Option(
        "--color",
        case_sensitive=False,
        help="Colour the text report's categories: auto (only on a terminal, and not when "
        "NO_COLOR is set or TERM=dumb), always, never.",
    ),
]


def use_color(mode: ColorMode | str, stream: TextIO | None) -> bool:
    """Whether a text report written to ``stream`` (None: a file) gets colours.

    ``always`` and ``never`` are obeyed as said (the command line overrides NO_COLOR, as
    https://no-color.org asks); ``auto`` colours a terminal only, unless NO_COLOR is set to
    anything non-empty or TERM is ``dumb``.
    """
    chosen = ColorMode(mode)
    if chosen is not ColorMode.AUTO:
        return chosen is ColorMode.ALWAYS
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    if stream is None:
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or unusual stream
        return False


def report_color(mode: ColorMode | str, report: Path | None, to_stderr: bool) -> bool:
    """``use_color`` for a report written to ``report`` (a file), else to stderr or stdout."""
    if report is not None:
        return use_color(mode, None)
    return use_color(mode, sys.stderr if to_stderr else sys.stdout)


QuietOption = Annotated[
    bool,
    typer.Option(
        "--quiet",
        "-q",
        help="No live status line (it is shown only while stderr is a terminal).",
    ),
]


RulesOption = Annotated[
    list[Path] | None,
    typer.Option(
        "--rules",
        metavar="FILE",
        help="Extra classification rules (TOML, in the form of analyzers/rules/default.toml), "
        "tried before the built-in ones. Repeatable.",
    ),
]


def ruleset(paths: list[Path] | None) -> RuleSet | None:
    """The rules ``--rules`` names, extending the defaults (None: the defaults alone)."""
    if not paths:
        return None
    from analyzers.rules import load_rules

    return load_rules(paths)
